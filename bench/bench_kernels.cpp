// Throughput of the CUDA kernels (kernels/) and of the cuda backend's training step (issue 3):
//   BM_conv_forward / BM_conv_backward   conv2 of ConvBase (C -> C, k3, L 19 -> 10), batch 100, args (S, C)
//   BM_train_step                        forward + CE + backward + Adam of S seeds, C = 25 (or C), batch 100
//   BM_train_step_stream_per_seed        the same with one stream (and graph) per seed: what batching buys
//   bench_kernels --benchmark_min_time=0.2 --benchmark_format=json
// GPU time is measured, not host time (UseManualTime): kernels with CUDA events around kLaunches launches, training
// steps by wall clock over kSteps steps ending in a device sync (train_step without a loss never waits, so the host
// runs ahead and the clock measures the device). Rates are counters: seed-steps/s, GFLOP/s.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend.h"
#include "backend_cuda.h"
#include "conv1d.h"
#include "convbase.h"
#include "cuda_check.h"
#include "device_memory.h"
#include "philox.h"

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
                                         c.grads.data(), c.grads.data() + w, c.param_stride, nullptr);
      },
      2.0 * c.flops(), c.d.S);
}

// A cuda backend with S freshly initialised seeds and random training data, and kBatches batches of rows.
struct TrainSetup {
  TrainSetup(int S, int C, const sb::CudaBackendOptions& options) : shape{C, kLength, kClasses} {
    backend = sb::make_cuda_kernels_backend(0, options);
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

void run_train_steps(benchmark::State& state, int S, int C, const sb::CudaBackendOptions& options) {
  if (!have_device(state)) return;
  TrainSetup t(S, C, options);
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
    state.counters["GFLOP_per_s"] = 3.0 * t.shape.forward_flops() * S * kBatch * steps / seconds * 1e-9;
  }
  state.SetLabel(t.backend->device());
}

void BM_train_step(benchmark::State& state) {
  run_train_steps(state, int(state.range(0)), int(state.range(1)), sb::CudaBackendOptions{});
}

void BM_train_step_stream_per_seed(benchmark::State& state) {
  sb::CudaBackendOptions options;
  options.stream_per_seed = true;
  run_train_steps(state, int(state.range(0)), int(state.range(1)), options);
}

}  // namespace

BENCHMARK(BM_conv_forward)->Args({100, 25})->Args({10, 256})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_conv_backward)->Args({100, 25})->Args({10, 256})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_train_step)
    ->Args({1, 25})
    ->Args({10, 25})
    ->Args({100, 25})
    ->Args({1000, 25})
    ->Args({10, 256})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_train_step_stream_per_seed)->Args({10, 25})->Args({100, 25})->UseManualTime()->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
