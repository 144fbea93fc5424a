// Throughput of the CUDA kernels (kernels/) and of the cuda backend's training step (issue 3), beside cuDNN:
//   BM_conv_forward / BM_conv_backward   conv2 of ConvBase (C -> C, k3, L 19 -> 10), batch 100, args (S, C)
//   BM_cudnn_conv_forward / _backward    the same conv2 through cuDNN, /grouped (one grouped convolution over the
//                                        seeds) or /per_seed (a convolution per seed), as the cudnn backend runs it
//   BM_train_step                        forward + CE + backward + Adam of S seeds, C = 25 (or C), batch 100
//   BM_train_step_stream_per_seed        the same with one stream (and graph) per seed: what batching buys
//   BM_train_step_cudnn                  the same step on the cudnn backend (/grouped, /per_seed)
// (The cuDNN entries exist in builds with cuDNN.)
//   bench_kernels --benchmark_min_time=0.2 --benchmark_format=json
// GPU time is measured, not host time (UseManualTime): kernels with CUDA events around kLaunches launches, training
// steps by wall clock over kSteps steps ending in a device sync (train_step without a loss never waits, so the host
// runs ahead and the clock measures the device). Rates are counters: seed-steps/s, GFLOP/s.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/philox.h"
#include "cpu/convbase.h"
#include "cuda/backend_cuda.h"
#include "cuda/device_memory.h"
#include "kernels/conv1d.h"
#include "kernels/cuda_check.h"

#ifdef SB_HAVE_CUDNN
#include <cudnn.h>

#include "cuda/cudnn_conv.h"
#include "study/backends.h"
#endif

namespace {

constexpr int kBatch = 100, kLength = 40, kClasses = 10, kTrainRows = 1000, kBatches = 16;
constexpr int kLaunches = 20, kSteps = 20;
constexpr uint64_t kSeed = 1234;

bool have_device(benchmark::State& state) {
  if (sb::cuda_device_count() > 0) return true;
  state.SkipWithError("no CUDA device");
  return false;
}

std::vector<float> uniform_floats(size_t n, uint32_t stream) {
  sb::RngStream rng(kSeed, stream, sb::Purpose::spurious_sample_noise);
  std::vector<float> v(n);
  for (float& x : v) x = rng.uniform(-1.0f, 1.0f);
  return v;
}

// Device time of `launch` (kLaunches times per iteration, on the default stream), per launch.
template <class Launch>
void time_launches(benchmark::State& state, Launch launch, double flops_per_launch, int seeds) {
  cudaEvent_t start, stop;
  SB_CUDA_CHECK(cudaEventCreate(&start));
  SB_CUDA_CHECK(cudaEventCreate(&stop));
  launch();  // warm-up: module loading, caches
  SB_CUDA_CHECK(cudaDeviceSynchronize());
  double seconds = 0.0, launches = 0.0;
  for (auto _ : state) {
    SB_CUDA_CHECK(cudaEventRecord(start, nullptr));
    for (int i = 0; i < kLaunches; ++i) launch();
    SB_CUDA_CHECK(cudaEventRecord(stop, nullptr));
    SB_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.0f;
    SB_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    state.SetIterationTime(ms * 1e-3 / kLaunches);  // per launch
    seconds += ms * 1e-3, launches += kLaunches;
  }
  SB_CUDA_CHECK(cudaEventDestroy(start));
  SB_CUDA_CHECK(cudaEventDestroy(stop));
  if (seconds > 0) {
    state.counters["GFLOP_per_s"] = flops_per_launch * launches / seconds * 1e-9;
    state.counters["seed_launches_per_s"] = seeds * launches / seconds;
  }
}

// conv2 of ConvBase for S seeds: in (S, B, C, L1) -> out (S, B, C, L2).
struct Conv2Setup {
  Conv2Setup(int S, int C)
      : d{S, kBatch, C, C, sb::ConvBaseShape::k2, sb::ConvBaseShape{C, kLength, kClasses}.l1()},
        param_stride(size_t(C) * C * d.K + C),
        in(uniform_floats(size_t(S) * kBatch * C * d.lin, 1)),
        out(size_t(S) * kBatch * C * d.lout()),
        dout(uniform_floats(out.size(), 2)),
        din(in.size()),
        params(uniform_floats(S * param_stride, 3)),
        grads(params.size()) {}
  double flops() const { return 2.0 * d.S * d.B * d.cout * d.lout() * d.cin * d.K; }  // one GEMM
  sb::gpu::ConvDims d;
  size_t param_stride;
  sb::gpu::DeviceArray<float> in, out, dout, din, params, grads;
  // The weight gradient's split-R partials, as the cuda backend gives it (empty where the shape is not split).
  sb::gpu::DeviceArray<float> workspace{sb::gpu::conv1d_backward_weights_workspace(d)};
};

void BM_conv_forward(benchmark::State& state) {
  if (!have_device(state)) return;
  Conv2Setup c(int(state.range(0)), int(state.range(1)));
  const size_t w = size_t(c.d.cout) * c.d.cin * c.d.K;
  time_launches(
      state,
      [&] {
        sb::gpu::conv1d_forward(c.d, c.in.data(), size_t(c.d.B) * c.d.cin * c.d.lin, c.params.data(),
                                c.params.data() + w, c.param_stride, true, c.out.data(), nullptr);
      },
      c.flops(), c.d.S);
}

void BM_conv_backward(benchmark::State& state) {
  if (!have_device(state)) return;
  Conv2Setup c(int(state.range(0)), int(state.range(1)));
  const size_t w = size_t(c.d.cout) * c.d.cin * c.d.K;
  time_launches(
      state,
      [&] {
        sb::gpu::conv1d_backward_input(c.d, c.dout.data(), c.params.data(), c.param_stride, c.in.data(), false,
                                       c.din.data(), nullptr);
        sb::gpu::conv1d_backward_weights(c.d, c.dout.data(), c.in.data(), size_t(c.d.B) * c.d.cin * c.d.lin,
                                         c.grads.data(), c.grads.data() + w, c.param_stride, nullptr,
                                         c.workspace.data());
      },
      2.0 * c.flops(), c.d.S);
}

#ifdef SB_HAVE_CUDNN
// conv2 through cuDNN as the cudnn backend (host/cuda/cudnn_backend.cpp) runs it: a 2-D convolution with H = 1,
// padding (0, 1), stride (1, 2), fp32 FMA math (no TF32), the first deterministic algorithm of cuDNN's heuristics,
// and the workspace it needs. Grouped: one call over (B, S*C, 1, L) with the S filters as one grouped filter
// (S*C, C, 1, 3), group count S; per seed: S calls on (B, C, 1, L). Weights and biases tensor-major, w (S, C, C, 3)
// then bias (S, C), in Conv2Setup's params; the layouts differ from our kernels', the sizes do not. Failures throw
// (SB_CUDNN_CHECK of cuda_check.h). The layer is the backend's own (host/cuda/cudnn_conv.h).
struct CudnnConv2 {
  CudnnConv2(const Conv2Setup& c, bool grouped) : S(c.d.S) {
    // On the default stream, which time_launches records.
    layer.build(handle.get(), S, grouped, c.d.B, c.d.cin, c.d.cout, c.d.K, c.d.lin);
    sb::gpu::set_packed(x_all, S * c.d.B, c.d.cin, c.d.lin);
    SB_CUDNN_CHECK(cudnnSetActivationDescriptor(relu.get(), CUDNN_ACTIVATION_RELU, CUDNN_PROPAGATE_NAN, 0.0));
    workspace = sb::gpu::DeviceArray<unsigned char>(layer.workspace);
  }

  // out = ReLU(conv(in) + bias), as conv1d_forward with relu.
  void forward(Conv2Setup& c) {
    layer.forward(handle.get(), relu.get(), c.d.B, c.in.data(), in_seed(c), c.params.data(),
                  c.params.data() + w_all(), c.out.data(), workspace.data(), workspace.size());
  }

  // dw, dbias, and din with the ReLU mask of in: as conv1d_backward_weights and conv1d_backward_input (masked).
  void backward(Conv2Setup& c) {
    const float one = 1.0f, zero = 0.0f;
    layer.backward(handle.get(), c.d.B, c.in.data(), in_seed(c), c.dout.data(), c.params.data(), c.grads.data(),
                   c.grads.data() + w_all(), c.din.data(), workspace.data(), workspace.size());
    SB_CUDNN_CHECK(cudnnActivationBackward(handle.get(), relu.get(), &one, x_all.get(), c.in.data(), x_all.get(),
                                           c.din.data(), x_all.get(), c.in.data(), &zero, x_all.get(), c.din.data()));
  }

  size_t in_seed(const Conv2Setup& c) const { return size_t(c.d.B) * c.d.cin * c.d.lin; }
  size_t w_all() const { return size_t(S) * layer.weight_size(); }  // the biases follow every seed's weights

  int S;
  sb::gpu::CudnnHandle handle;
  sb::gpu::ActivationDesc relu;
  sb::gpu::TensorDesc x_all;  // every seed's input (S*B, C, 1, L): the ReLU mask, elementwise
  sb::gpu::ConvLayer layer;
  sb::gpu::DeviceArray<unsigned char> workspace;
};

void BM_cudnn_conv_forward(benchmark::State& state, bool grouped) {
  if (!have_device(state)) return;
  Conv2Setup c(int(state.range(0)), int(state.range(1)));
  CudnnConv2 cd(c, grouped);
  time_launches(state, [&] { cd.forward(c); }, c.flops(), c.d.S);
}

void BM_cudnn_conv_backward(benchmark::State& state, bool grouped) {
  if (!have_device(state)) return;
  Conv2Setup c(int(state.range(0)), int(state.range(1)));
  CudnnConv2 cd(c, grouped);
  time_launches(state, [&] { cd.backward(c); }, 2.0 * c.flops(), c.d.S);
}
#endif  // SB_HAVE_CUDNN

// A backend with S freshly initialised seeds and random training data, and kBatches batches of rows.
struct TrainSetup {
  TrainSetup(int S, int C, std::unique_ptr<sb::Backend> backend_)
      : shape{C, kLength, kClasses}, backend(std::move(backend_)) {
    const size_t P = shape.num_params();
    std::vector<float> params(size_t(S) * P);
    for (int s = 0; s < S; ++s) sb::convbase_init(shape, kSeed, uint32_t(s), params.data() + size_t(s) * P);
    backend->reset(shape, S, params.data(), sb::AdamConfig{});
    const std::vector<float> x = uniform_floats(size_t(S) * kTrainRows * kLength, 4);
    sb::RngStream rng(kSeed, 0, sb::Purpose::batch_order);
    std::vector<int32_t> labels(kTrainRows);
    for (int32_t& y : labels) y = int32_t(rng.below(kClasses));
    backend->set_train_data(x.data(), labels.data(), kTrainRows);
    batches.resize(kBatches);
    for (auto& rows : batches) {
      rows.resize(size_t(S) * kBatch);
      for (int32_t& r : rows) r = int32_t(rng.below(kTrainRows));
    }
  }
  sb::ConvBaseShape shape;
  std::unique_ptr<sb::Backend> backend;
  std::vector<std::vector<int32_t>> batches;
};

// make() builds the backend (after the device check).
template <class MakeBackend>
void run_train_steps(benchmark::State& state, int S, int C, MakeBackend make) {
  if (!have_device(state)) return;
  TrainSetup t(S, C, make());
  size_t step = 0;
  for (int i = 0; i < 3; ++i) t.backend->train_step(t.batches[step++ % kBatches].data(), kBatch, 1e-2f, nullptr);
  sb::gpu::device_synchronize();  // warm: buffers allocated, graphs captured
  double seconds = 0.0, steps = 0.0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kSteps; ++i) t.backend->train_step(t.batches[step++ % kBatches].data(), kBatch, 1e-2f, nullptr);
    sb::gpu::device_synchronize();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state.SetIterationTime(s / kSteps);  // per step
    seconds += s, steps += kSteps;
  }
  if (seconds > 0) {
    state.counters["seed_steps_per_s"] = S * steps / seconds;
    state.counters["samples_per_s"] = double(S) * kBatch * steps / seconds;
    state.counters["GFLOP_per_s"] = t.shape.train_step_flops() * S * kBatch * steps / seconds * 1e-9;
  }
  state.SetLabel(t.backend->device());
}

void BM_train_step(benchmark::State& state) {
  run_train_steps(state, int(state.range(0)), int(state.range(1)), [] { return sb::make_cuda_kernels_backend(0); });
}

void BM_train_step_stream_per_seed(benchmark::State& state) {
  sb::CudaBackendOptions options;
  options.stream_per_seed = true;
  run_train_steps(state, int(state.range(0)), int(state.range(1)),
                  [&] { return sb::make_cuda_kernels_backend(0, options); });
}

#ifdef SB_HAVE_CUDNN
void BM_train_step_cudnn(benchmark::State& state, const char* conv_mode) {
  sb::BackendOptions options;
  options.cudnn_conv = conv_mode;
  run_train_steps(state, int(state.range(0)), int(state.range(1)), [&] { return sb::make_cudnn_backend(options); });
}
#endif

}  // namespace

BENCHMARK(BM_conv_forward)->Args({100, 25})->Args({10, 256})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_conv_backward)->Args({100, 25})->Args({10, 256})->UseManualTime()->Unit(benchmark::kMicrosecond);
// Scaling over seeds 1..10000 at C = 25, and C = 256.
BENCHMARK(BM_train_step)
    ->Args({1, 25})
    ->Args({10, 25})
    ->Args({100, 25})
    ->Args({1000, 25})
    ->Args({10000, 25})
    ->Args({10, 256})
    ->Args({100, 256})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_train_step_stream_per_seed)
    ->Args({10, 25})
    ->Args({100, 25})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

#ifdef SB_HAVE_CUDNN
BENCHMARK_CAPTURE(BM_cudnn_conv_forward, grouped, true)
    ->Args({100, 25})
    ->Args({10, 256})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_cudnn_conv_forward, per_seed, false)
    ->Args({100, 25})
    ->Args({10, 256})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_cudnn_conv_backward, grouped, true)
    ->Args({100, 25})
    ->Args({10, 256})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_cudnn_conv_backward, per_seed, false)
    ->Args({100, 25})
    ->Args({10, 256})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_train_step_cudnn, grouped, "grouped")
    ->Args({1, 25})
    ->Args({10, 25})
    ->Args({100, 25})
    ->Args({1000, 25})
    ->Args({10000, 25})
    ->Args({10, 256})
    ->Args({100, 256})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
// A convolution call per seed per layer and pass: S = 10000 would take minutes.
BENCHMARK_CAPTURE(BM_train_step_cudnn, per_seed, "per-seed")
    ->Args({1, 25})
    ->Args({10, 25})
    ->Args({100, 25})
    ->Args({1000, 25})
    ->Args({10, 256})
    ->Args({100, 256})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
#endif

BENCHMARK_MAIN();
