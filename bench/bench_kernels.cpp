// The kernel lab (issue 11, step 3; llm.c's dev/cuda): every CUDA kernel of kernels/ beside its CPU twin, cuDNN's
// convolutions, and the cuda backend's training step (issue 3). A kernel entry first runs the kernel once on random
// inputs, its outputs poisoned with NaN (an element it fails to write shows), and compares every seed's output with
// the CPU twin's (host/cpu/, named like the kernel) within the tolerance of the test comparing the two
// (bench/kernel_checks.h says which): normwise relative error, and NaN never passes. A failed check skips the entry
// with "<kernel> <output>, seed s: max rel err X > tol Y" and reports no time; a passed one is labelled with its
// worst error. "Same bits": tolerance 0 on AVX2 / AVX-512 CPUs (the twin's FMA chain is the GPU's), 1e-5 on SSE2.
//   BM_conv_forward (S, C)         conv2 of ConvBase + ReLU (C -> C, k3, L 19 -> 10), batch 100.  out: same bits
//   BM_conv_backward (S, C)        its input gradient, ReLU-masked by its input, and weight gradients (split-R
//                                  workspace), as the backend runs them.  din: same bits; dw, dbias: 5e-5
//   BM_cudnn_conv_forward/grouped|per_seed (S, C)    the same conv through cuDNN, one grouped call or a call per
//                                  seed.  out: 1e-5
//   BM_cudnn_conv_backward/grouped|per_seed (S, C)   its gradients, din ReLU-masked.  din: 1e-5; dw, dbias: 5e-5
//   BM_linear_forward (S, C)       the head, F = 5C -> 10, batch 100.  logits: same bits
//   BM_linear_backward (S, C)      dW, dbias, and din masked by the input.  dW, dbias: 5e-5; din: 1e-5
//   BM_softmax_ce/mean|mu (S)      softmax CE as in training (dlogits and the loss), B = 100, K = 10, without and
//                                  with weights mu.  dlogits: 1e-5; loss: 1e-5 of (1 + |loss|)
//   BM_adam (S, P)                 one Adam update of (S, P), P of C = 25 and of C = 256.  p, m, v: bit for bit
//   BM_gather (S)                  the batch gather, B = 100 of N = 4000 rows of L = 40.  xb, yb: bit for bit
//   BM_spurious_train/class|sample|element (S)       D_sp of the canonical training set (N = 4000, L = 40), per
//                                  noise draw (plant_spurious_feature_cuda).  planted classes and the features off
//                                  the planted block exact; noise 1e-5 of max(1, |x|)
//   BM_spurious_test_aligned/..., BM_spurious_test_conflicting/... (S)   the two test sets of the canonical test
//                                  set (N = 1000), per noise draw.  as D_sp
//   BM_train_step (S, C)           forward + CE + backward + Adam of S seeds, batch 100
//   BM_train_step_stream_per_seed (S, C)             the same with one stream (and graph) per seed: what batching buys
//   BM_train_step_cudnn/grouped|per_seed (S, C)      the same step on the cudnn backend
// The training steps are not checked here: the CudaBackend.* and CudnnBackend.* tests compare them with the CPU. The
// cuDNN entries exist in builds with cuDNN. One kernel: --benchmark_filter=BM_<kernel> (BM_spurious: every set).
//   bench_kernels --benchmark_min_time=0.2 --benchmark_format=json
// GPU time is measured, not host time (UseManualTime): kernels with CUDA events around kLaunches launches, training
// steps by wall clock over kSteps steps ending in a device sync (train_step without a loss never waits, so the host
// runs ahead and the clock measures the device). Rates are counters: GB_per_s of the bytes a launch must move (each
// entry states its count: every input read and every output written once, nothing a kernel keeps in scratch),
// GFLOP_per_s where FLOPs mean something (multiply-add = 2), seed_launches_per_s or seed_steps_per_s.
// Google Benchmark calls an entry several times while it sizes the iteration count; every call checks again.
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core/backend.h"
#include "core/philox.h"
#include "core/spurious_config.h"
#include "cpu/adam.h"
#include "cpu/conv1d.h"
#include "cpu/convbase.h"
#include "cpu/gather.h"
#include "cpu/linear.h"
#include "cpu/simd.h"
#include "cpu/softmax_ce.h"
#include "cpu/spurious.h"
#include "cuda/backend_cuda.h"
#include "cuda/device_memory.h"
#include "data/data.h"
#include "kernel_checks.h"
#include "kernels/adam.h"
#include "kernels/conv1d.h"
#include "kernels/cuda_check.h"
#include "kernels/gather.h"
#include "kernels/linear.h"
#include "kernels/softmax_ce.h"
#include "kernels/spurious_cuda.h"
#include "study/backends.h"

#ifdef SB_HAVE_CUDNN
#include <cudnn.h>

#include "cuda/cudnn_conv.h"
#endif

namespace {

using sb::ActBuffer;
using sb::bench::KernelCheck;
using sb::bench::rel_error;
using sb::bench::seed_samples;
using sb::gpu::DeviceArray;

constexpr int kBatch = 100, kLength = 40, kClasses = 10, kTrainRows = 1000, kBatches = 16;
constexpr int kGatherRows = 4000;  // the canonical training set's N
constexpr int kLaunches = 20, kSteps = 20;
constexpr uint64_t kSeed = 1234;

bool have_device(benchmark::State& state) {
  if (sb::cuda_device_count() > 0) return true;
  state.SkipWithError("no CUDA device");
  return false;
}

// Each input of each entry reads its own stream.
std::vector<float> uniform_floats(size_t n, uint32_t stream, float lo = -1.0f, float hi = 1.0f) {
  sb::RngStream rng(kSeed, stream, sb::Purpose::spurious_sample_noise);
  std::vector<float> v(n);
  for (float& x : v) x = rng.uniform(lo, hi);
  return v;
}

std::vector<int32_t> uniform_ints(size_t n, uint32_t stream, int below) {
  sb::RngStream rng(kSeed, stream, sb::Purpose::batch_order);
  std::vector<int32_t> v(n);
  for (int32_t& x : v) x = int32_t(rng.below(uint32_t(below)));
  return v;
}

std::string seed_name(int s) { return ", seed " + std::to_string(s); }

// Device time of `launch` (kLaunches times per iteration, on the default stream), per launch. flops_per_launch 0:
// no GFLOP_per_s.
template <class Launch>
void time_launches(benchmark::State& state, Launch launch, double flops_per_launch, double bytes_per_launch,
                   int seeds) {
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
    if (flops_per_launch > 0) state.counters["GFLOP_per_s"] = flops_per_launch * launches / seconds * 1e-9;
    state.counters["GB_per_s"] = bytes_per_launch * launches / seconds * 1e-9;
    state.counters["seed_launches_per_s"] = seeds * launches / seconds;
  }
}

// ---- Conv1d (kernels/conv1d.h <-> cpu/conv1d.h), and cuDNN's

// conv2 of ConvBase for S seeds: in (S, B, C, L1) -> out (S, B, C, L2). Our kernels read seed s's w (C, C, 3) and
// bias (C) at s*param_stride of params; cuDNN reads the same buffer tensor-major (CudnnConv2). The host copies are
// the checks' inputs.
struct Conv2Setup {
  Conv2Setup(int S, int C)
      : d{S, kBatch, C, C, sb::ConvBaseShape::k2, sb::ConvBaseShape{C, kLength, kClasses}.l1()},
        param_stride(size_t(C) * C * d.K + C),
        h_in(uniform_floats(size_t(S) * kBatch * C * d.lin, 1)),
        h_dout(uniform_floats(size_t(S) * kBatch * C * d.lout(), 2)),
        h_params(uniform_floats(S * param_stride, 3)),
        in(h_in),
        out(h_dout.size()),
        dout(h_dout),
        din(h_in.size()),
        params(h_params),
        grads(h_params.size()) {}
  double flops() const { return 2.0 * d.S * d.B * d.cout * d.lout() * d.cin * d.K; }  // one GEMM
  // Forward: in, w and bias read, out written. Backward: dout read twice (input and weight gradients), in twice (the
  // ReLU mask and the weight gradient's operand), w read, din, dw and dbias written.
  double forward_bytes() const { return 4.0 * (double(h_in.size()) + h_params.size() + h_dout.size()); }
  double backward_bytes() const {
    return 4.0 * (2.0 * h_dout.size() + 3.0 * h_in.size() + double(d.S) * w_size() + h_params.size());
  }
  size_t w_size() const { return size_t(d.cout) * d.cin * d.K; }
  size_t in_seed() const { return size_t(d.B) * d.cin * d.lin; }
  // Where seed s's w and bias are in params (and its dw and dbias in grads): ours at s*param_stride, or cuDNN's
  // tensor-major, every seed's w (S, C, C, 3) and then every bias (S, C).
  size_t w_offset(int s, bool cudnn) const { return cudnn ? s * w_size() : s * param_stride; }
  size_t bias_offset(int s, bool cudnn) const {
    return cudnn ? d.S * w_size() + size_t(s) * d.cout : s * param_stride + w_size();
  }

  sb::gpu::ConvDims d;
  size_t param_stride;
  std::vector<float> h_in, h_dout, h_params;
  DeviceArray<float> in, out, dout, din, params, grads;
  // The weight gradient's split-R partials, as the cuda backend gives it (empty where the shape is not split).
  DeviceArray<float> workspace{sb::gpu::conv1d_backward_weights_workspace(d)};
};

// One seed's conv2 on the CPU twin, sample-major: in (B, Cin, L1) -> out (B, Cout, L2) = ReLU(conv(in) + bias).
std::vector<float> cpu_conv_forward(const sb::gpu::ConvDims& d, const std::vector<float>& in, const float* w,
                                    const float* bias) {
  ActBuffer x(d.cin, d.lin, 1, d.B), y(d.cout, d.lout(), 0, d.B);
  x.set(in.data());
  sb::conv1d_forward(w, bias, d.K, x.v, y.v);
  sb::relu_forward(y.v);
  return y.get();
}

// One seed's conv2 gradients on the CPU twin from dout (B, Cout, L2) and in (B, Cin, L1): din (B, Cin, L1), zero where
// !(in > 0) (the ReLU backward of the layer whose output in is), dw (Cout, Cin, K), dbias (Cout).
struct ConvGrads {
  std::vector<float> din, dw, dbias;
};
ConvGrads cpu_conv_backward(const sb::gpu::ConvDims& d, const std::vector<float>& dout, const std::vector<float>& in,
                            const float* w) {
  ActBuffer g(d.cout, d.lout(), 0, d.B), x(d.cin, d.lin, 1, d.B), dx(d.cin, d.lin, 0, d.B);
  g.set(dout.data());
  x.set(in.data());
  sb::conv1d_backward_input(w, d.K, g.v, dx.v);
  sb::relu_backward(x.v, dx.v);
  ConvGrads r{dx.get(), std::vector<float>(size_t(d.cout) * d.cin * d.K), std::vector<float>(size_t(d.cout))};
  sb::conv1d_backward_weights(g.v, x.v, d.K, r.dw.data(), r.dbias.data());
  return r;
}

// c.out against the CPU twin, every seed. cudnn: parameters tensor-major; grouped: activations (B, S, C, L).
KernelCheck check_conv_forward(const Conv2Setup& c, const std::string& kernel, bool cudnn, bool grouped, double tol) {
  KernelCheck check(kernel);
  const std::vector<float> out = c.out.download();
  const int S = c.d.S, B = c.d.B;
  const size_t in_row = size_t(c.d.cin) * c.d.lin, out_row = size_t(c.d.cout) * c.d.lout();
  for (int s = 0; s < S; ++s) {
    const std::vector<float> want =
        cpu_conv_forward(c.d, seed_samples(c.h_in, S, B, in_row, s, grouped), c.h_params.data() + c.w_offset(s, cudnn),
                         c.h_params.data() + c.bias_offset(s, cudnn));
    check.expect("out" + seed_name(s), rel_error(seed_samples(out, S, B, out_row, s, grouped), want), tol);
  }
  return check;
}

// c.din (masked by in) and dw and dbias in c.grads against the CPU twin, every seed.
KernelCheck check_conv_backward(const Conv2Setup& c, const std::string& kernel, bool cudnn, bool grouped,
                                double din_tol) {
  KernelCheck check(kernel);
  const std::vector<float> din = c.din.download(), grads = c.grads.download();
  const int S = c.d.S, B = c.d.B;
  const size_t in_row = size_t(c.d.cin) * c.d.lin, out_row = size_t(c.d.cout) * c.d.lout();
  for (int s = 0; s < S; ++s) {
    const ConvGrads want =
        cpu_conv_backward(c.d, seed_samples(c.h_dout, S, B, out_row, s, grouped),
                          seed_samples(c.h_in, S, B, in_row, s, grouped), c.h_params.data() + c.w_offset(s, cudnn));
    check.expect("din" + seed_name(s), rel_error(seed_samples(din, S, B, in_row, s, grouped), want.din), din_tol);
    check.expect("dw" + seed_name(s), rel_error(grads.data() + c.w_offset(s, cudnn), want.dw.data(), want.dw.size()),
                 sb::bench::kWeightGradTol);
    check.expect("dbias" + seed_name(s),
                 rel_error(grads.data() + c.bias_offset(s, cudnn), want.dbias.data(), want.dbias.size()),
                 sb::bench::kWeightGradTol);
  }
  return check;
}

void BM_conv_forward(benchmark::State& state) {
  if (!have_device(state)) return;
  Conv2Setup c(int(state.range(0)), int(state.range(1)));
  const auto launch = [&] {
    sb::gpu::conv1d_forward(c.d, c.in.data(), c.in_seed(), c.params.data(), c.params.data() + c.w_size(),
                            c.param_stride, true, c.out.data(), nullptr);
  };
  c.out.poison();
  launch();
  if (!check_conv_forward(c, "conv1d_forward", false, false, sb::bench::fma_chain_tol()).passed(state)) return;
  time_launches(state, launch, c.flops(), c.forward_bytes(), c.d.S);
}

void BM_conv_backward(benchmark::State& state) {
  if (!have_device(state)) return;
  Conv2Setup c(int(state.range(0)), int(state.range(1)));
  const auto launch = [&] {
    sb::gpu::conv1d_backward_input(c.d, c.dout.data(), c.params.data(), c.param_stride, c.in.data(), false,
                                   c.din.data(), nullptr);
    sb::gpu::conv1d_backward_weights(c.d, c.dout.data(), c.in.data(), c.in_seed(), c.grads.data(),
                                     c.grads.data() + c.w_size(), c.param_stride, nullptr, c.workspace.data());
  };
  c.din.poison(), c.grads.poison();
  launch();
  if (!check_conv_backward(c, "conv1d_backward", false, false, sb::bench::fma_chain_tol()).passed(state)) return;
  time_launches(state, launch, 2.0 * c.flops(), c.backward_bytes(), c.d.S);
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
  c.out.poison();
  cd.forward(c);
  const std::string kernel = grouped ? "cudnn conv forward (grouped)" : "cudnn conv forward (per seed)";
  if (!check_conv_forward(c, kernel, true, grouped, sb::bench::kCudnnTol).passed(state)) return;
  time_launches(state, [&] { cd.forward(c); }, c.flops(), c.forward_bytes(), c.d.S);
}

void BM_cudnn_conv_backward(benchmark::State& state, bool grouped) {
  if (!have_device(state)) return;
  Conv2Setup c(int(state.range(0)), int(state.range(1)));
  CudnnConv2 cd(c, grouped);
  c.din.poison(), c.grads.poison();
  cd.backward(c);
  const std::string kernel = grouped ? "cudnn conv backward (grouped)" : "cudnn conv backward (per seed)";
  if (!check_conv_backward(c, kernel, true, grouped, sb::bench::kCudnnTol).passed(state)) return;
  time_launches(state, [&] { cd.backward(c); }, 2.0 * c.flops(), c.backward_bytes(), c.d.S);
}
#endif  // SB_HAVE_CUDNN

// ---- The linear head (kernels/linear.h <-> cpu/linear.h)

// The head of ConvBase for S seeds: in (S, B, F) -> logits (S, B, M), F = C*L3, M = 10; seed s's W (M, F) and bias
// (M) at s*param_stride of params (S, M*F + M). The input gradient is masked by in, as the backend masks it by the
// conv3 activation that is the head's input.
struct LinearSetup {
  LinearSetup(int S, int C)
      : d{S, kBatch, sb::ConvBaseShape{C, kLength, kClasses}.feature_dim(), kClasses},
        param_stride(size_t(d.M) * d.F + d.M),
        h_in(uniform_floats(size_t(S) * d.B * d.F, 10)),
        h_dout(uniform_floats(size_t(S) * d.B * d.M, 11)),
        h_params(uniform_floats(S * param_stride, 12)),
        in(h_in),
        out(h_dout.size()),
        dout(h_dout),
        din(h_in.size()),
        params(h_params),
        grads(h_params.size()) {}
  double flops() const { return 2.0 * d.S * d.B * d.M * d.F; }  // one GEMM
  // Forward: in, W and bias read, out written. Backward: dout read twice, in twice (the weight gradient's operand
  // and the mask), W read, dW, dbias and din written.
  double forward_bytes() const { return 4.0 * (double(h_in.size()) + h_params.size() + h_dout.size()); }
  double backward_bytes() const {
    return 4.0 * (2.0 * h_dout.size() + 3.0 * h_in.size() + double(d.S) * w_size() + h_params.size());
  }
  size_t w_size() const { return size_t(d.M) * d.F; }
  const float* w(int s) const { return h_params.data() + s * param_stride; }
  const float* seed_in(int s) const { return h_in.data() + size_t(s) * d.B * d.F; }

  sb::gpu::LinearDims d;
  size_t param_stride;
  std::vector<float> h_in, h_dout, h_params;
  DeviceArray<float> in, out, dout, din, params, grads;
};

void BM_linear_forward(benchmark::State& state) {
  if (!have_device(state)) return;
  LinearSetup l(int(state.range(0)), int(state.range(1)));
  const auto launch = [&] {
    sb::gpu::linear_forward(l.d, l.in.data(), size_t(l.d.B) * l.d.F, l.params.data(), l.params.data() + l.w_size(),
                            l.param_stride, l.out.data(), nullptr);
  };
  l.out.poison();
  launch();
  KernelCheck check("linear_forward");
  const std::vector<float> out = l.out.download();
  const int B = l.d.B, F = l.d.F, M = l.d.M, ld = sb::padded_batch(B);
  for (int s = 0; s < l.d.S; ++s) {
    const std::vector<float> x = sb::bench::to_feature_major(l.seed_in(s), B, F);
    std::vector<float> y(size_t(M) * ld);
    sb::linear_forward(l.w(s), l.w(s) + l.w_size(), M, F, x.data(), ld, y.data());
    check.expect(
        "out" + seed_name(s),
        rel_error(out.data() + size_t(s) * B * M, sb::bench::from_feature_major(y, B, M).data(), size_t(B) * M),
        sb::bench::fma_chain_tol());
  }
  if (!check.passed(state)) return;
  time_launches(state, launch, l.flops(), l.forward_bytes(), l.d.S);
}

void BM_linear_backward(benchmark::State& state) {
  if (!have_device(state)) return;
  LinearSetup l(int(state.range(0)), int(state.range(1)));
  const auto launch = [&] {
    sb::gpu::linear_backward_weights(l.d, l.dout.data(), l.in.data(), l.grads.data(), l.grads.data() + l.w_size(),
                                     l.param_stride, nullptr);
    sb::gpu::linear_backward_input(l.d, l.dout.data(), l.params.data(), l.param_stride, l.in.data(), l.din.data(),
                                   nullptr);
  };
  l.din.poison(), l.grads.poison();
  launch();
  KernelCheck check("linear_backward");
  const std::vector<float> din = l.din.download(), grads = l.grads.download();
  const int B = l.d.B, F = l.d.F, M = l.d.M, ld = sb::padded_batch(B);
  for (int s = 0; s < l.d.S; ++s) {
    const std::vector<float> x = sb::bench::to_feature_major(l.seed_in(s), B, F);
    const std::vector<float> g = sb::bench::to_feature_major(l.h_dout.data() + size_t(s) * B * M, B, M);
    std::vector<float> dw(l.w_size()), dbias(M), dx(size_t(F) * ld);
    sb::linear_backward_weights(g.data(), x.data(), M, F, ld, dw.data(), dbias.data());
    sb::linear_backward_input(l.w(s), g.data(), M, F, ld, dx.data());
    std::vector<float> want_din = sb::bench::from_feature_major(dx, B, F);
    for (size_t i = 0; i < want_din.size(); ++i)
      if (!(l.seed_in(s)[i] > 0.0f)) want_din[i] = 0.0f;
    const float* got = grads.data() + s * l.param_stride;
    check.expect("dW" + seed_name(s), rel_error(got, dw.data(), dw.size()), sb::bench::kWeightGradTol);
    check.expect("dbias" + seed_name(s), rel_error(got + l.w_size(), dbias.data(), dbias.size()),
                 sb::bench::kWeightGradTol);
    check.expect("din" + seed_name(s), rel_error(din.data() + size_t(s) * B * F, want_din.data(), want_din.size()),
                 sb::bench::kMaskedInputGradTol);
  }
  if (!check.passed(state)) return;
  time_launches(state, launch, 2.0 * l.flops(), l.backward_bytes(), l.d.S);
}

// ---- Softmax cross-entropy (kernels/softmax_ce.h <-> cpu/softmax_ce.h)

// As the training step runs it: logits (S, B, K) in [-4, 4), labels (S, B), with `weighted` mu (S, B) in [0, 2/B)
// -> dlogits (S, B, K) and the loss (S). Bytes: logits and labels (and mu) read, dlogits and the loss written.
void BM_softmax_ce(benchmark::State& state, bool weighted) {
  if (!have_device(state)) return;
  const int S = int(state.range(0)), B = kBatch, K = kClasses;
  const size_t SB = size_t(S) * B;
  const std::vector<float> logits = uniform_floats(SB * K, 13, -4.0f, 4.0f),
                           mu = uniform_floats(SB, 14, 0.0f, 2.0f / B);
  const std::vector<int32_t> labels = uniform_ints(SB, 15, K);
  DeviceArray<float> d_logits(logits), d_mu(mu), d_dlogits(SB * K), d_loss(S);
  DeviceArray<int32_t> d_labels(labels);
  sb::gpu::SoftmaxCrossEntropyArgs a;
  a.S = S, a.B = B, a.K = K, a.logits = d_logits.data(), a.labels = d_labels.data(), a.label_seed_stride = size_t(B);
  if (weighted) a.mu = d_mu.data(), a.mu_seed_stride = size_t(B);
  a.dlogits = d_dlogits.data(), a.loss = d_loss.data();
  const auto launch = [&] { sb::gpu::softmax_cross_entropy(a, nullptr); };
  d_dlogits.poison(), d_loss.poison();
  launch();
  KernelCheck check("softmax_cross_entropy");
  const std::vector<float> dlogits = d_dlogits.download(), loss = d_loss.download();
  std::vector<float> want(size_t(B) * K);
  for (int s = 0; s < S; ++s) {
    const double want_loss =
        sb::softmax_cross_entropy(logits.data() + size_t(s) * B * K, labels.data() + size_t(s) * B,
                                  weighted ? mu.data() + size_t(s) * B : nullptr, B, K, want.data());
    check.expect("dlogits" + seed_name(s), rel_error(dlogits.data() + size_t(s) * B * K, want.data(), want.size()),
                 sb::bench::kSoftmaxTol);
    check.expect("loss" + seed_name(s), std::fabs(loss[size_t(s)] - want_loss) / (1.0 + std::fabs(want_loss)),
                 sb::bench::kSoftmaxTol);
  }
  if (!check.passed(state)) return;
  time_launches(state, launch, 0.0, 4.0 * (2.0 * SB * K + SB + (weighted ? SB : 0) + S), S);
}

// ---- Adam (kernels/adam.h <-> cpu/adam.h)

// One step of Adam over the flat (S, P) parameter buffer, at t = 3 with moments under way: p in [-1, 1), g in
// [-0.1, 0.1), m in [-0.01, 0.01), v in [0, 1e-4). Bytes: p, g, m, v read, p, m, v written (7 floats a parameter).
void BM_adam(benchmark::State& state) {
  if (!have_device(state)) return;
  const int S = int(state.range(0));
  const size_t n = size_t(S) * size_t(state.range(1));
  const sb::AdamConfig cfg;
  const float lr = 1e-2f;
  const int t = 3;
  std::vector<float> p = uniform_floats(n, 16), g = uniform_floats(n, 17, -0.1f, 0.1f),
                     m = uniform_floats(n, 18, -0.01f, 0.01f), v = uniform_floats(n, 19, 0.0f, 1e-4f);
  DeviceArray<float> d_p(p), d_g(g), d_m(m), d_v(v);
  DeviceArray<sb::gpu::AdamStepScalars> d_scalars(
      std::vector<sb::gpu::AdamStepScalars>{sb::gpu::adam_step_scalars(lr, cfg.beta1, cfg.beta2, t)});
  const auto launch = [&] {
    sb::gpu::adam_update(d_p.data(), d_g.data(), d_m.data(), d_v.data(), n, cfg.beta1, cfg.beta2, cfg.eps,
                         d_scalars.data(), nullptr);
  };
  launch();
  sb::adam_step(p.data(), g.data(), m.data(), v.data(), n, lr, cfg.beta1, cfg.beta2, cfg.eps, t);
  KernelCheck check("adam_update");
  check.expect("p", rel_error(d_p.download(), p), sb::bench::kBitwise);
  check.expect("m", rel_error(d_m.download(), m), sb::bench::kBitwise);
  check.expect("v", rel_error(d_v.download(), v), sb::bench::kBitwise);
  if (!check.passed(state)) return;
  time_launches(state, launch, 0.0, 4.0 * 7.0 * n, S);
}

// ---- The batch gather (kernels/gather.h <-> cpu/gather.h)

// B = 100 rows of each seed's N = 4000: x (S, N, L), labels (N), index (S, B) -> xb (S, B, L), yb (S, B). Bytes:
// the index, the B rows and their labels read, xb and yb written: 4 S B (2L + 3).
void BM_gather(benchmark::State& state) {
  if (!have_device(state)) return;
  const int S = int(state.range(0)), B = kBatch, N = kGatherRows, L = kLength;
  const std::vector<float> x = uniform_floats(size_t(S) * N * L, 20);
  const std::vector<int32_t> labels = uniform_ints(size_t(N), 21, kClasses), index = uniform_ints(size_t(S) * B, 22, N);
  DeviceArray<float> d_x(x), d_xb(size_t(S) * B * L);
  DeviceArray<int32_t> d_labels(labels), d_index(index), d_yb(size_t(S) * B);
  const auto launch = [&] {
    sb::gpu::gather_batch(S, B, N, L, d_x.data(), size_t(N) * L, d_labels.data(), d_index.data(), d_xb.data(),
                          d_yb.data(), nullptr);
  };
  d_xb.poison(), d_yb.poison();  // yb: -1, never a label
  launch();
  KernelCheck check("gather_batch");
  const std::vector<float> xb = d_xb.download();
  const std::vector<int32_t> yb = d_yb.download();
  std::vector<float> want_x(size_t(B) * L);
  std::vector<int32_t> want_y(B);
  for (int s = 0; s < S; ++s) {
    sb::gather_batch(x.data() + size_t(s) * N * L, labels.data(), L, index.data() + size_t(s) * B, B, want_x.data(),
                     want_y.data());
    check.expect("xb" + seed_name(s), rel_error(xb.data() + size_t(s) * B * L, want_x.data(), want_x.size()),
                 sb::bench::kBitwise);
    if (!std::equal(want_y.begin(), want_y.end(), yb.begin() + size_t(s) * B))
      check.fail("yb" + seed_name(s) + ": labels differ from the CPU twin's");
  }
  if (!check.passed(state)) return;
  time_launches(state, launch, 0.0, 4.0 * S * B * (2.0 * L + 3.0), S);
}

// ---- The spurious sets (kernels/spurious_cuda.h <-> cpu/spurious.h)

using sb::SpuriousSetKind;

// One set of S seeds (indices 0 .. S-1) built on the device from the canonical MNIST-1D: D_sp from the training set
// (N = 4000), the aligned and conflicting test sets from the test set (N = 1000), L = 40; the default configuration
// (p = 0.9, noise N(2, 1) on [0, inf)) with the given noise draw. x (N, L) and labels (N), shared -> out (S, N, L)
// and planted (S, N). Bytes: x and labels read once, out and planted written: 4 (N + S N) (L + 1). (D_sp's scratch
// of about (S + 1) N floats, allocated on the stream by every launch, is not counted.)
void run_spurious(benchmark::State& state, SpuriousSetKind set, sb::NoiseDraw draw) {
  if (!have_device(state)) return;
  const int S = int(state.range(0));
  const sb::Dataset data = sb::load_embedded_mnist1d();
  const bool train = set == SpuriousSetKind::train;
  const int N = train ? data.n_train : data.n_test, L = data.length;
  const std::vector<float>& x = train ? data.x_train : data.x_test;
  const std::vector<int32_t>& y = train ? data.y_train : data.y_test;
  sb::SpuriousConfig cfg;
  cfg.draw = draw;
  DeviceArray<float> d_x(x), d_out(size_t(S) * N * L);
  DeviceArray<int32_t> d_y(y), d_planted(size_t(S) * N);
  const auto launch = [&] {
    sb::make_spurious_set_cuda(set, cfg, d_x.data(), d_y.data(), N, L, kSeed, 0, S, d_out.data(), d_planted.data(),
                               nullptr);
  };
  d_out.poison();
  sb::gpu::fill_device_bytes(d_planted.data(), 0x80, d_planted.size() * sizeof(int32_t));  // no class, not -1
  launch();
  KernelCheck check(train                             ? "plant_spurious_feature_cuda"
                    : set == SpuriousSetKind::aligned ? "make_test_aligned_cuda"
                                                      : "make_test_conflicting_cuda");
  const std::vector<float> out = d_out.download();
  const std::vector<int32_t> planted = d_planted.download();
  std::set<std::pair<uint32_t, int>> excused;
  for (int s = 0; s < S; ++s) {
    const sb::SpuriousSet want = sb::make_spurious_set(set, cfg, x.data(), y.data(), N, L, kSeed, uint32_t(s));
    sb::bench::expect_spurious_seed_matches(check, set, cfg, kSeed, uint32_t(s), N, L, out.data() + size_t(s) * N * L,
                                            planted.data() + size_t(s) * N, want, &excused);
  }
  if (excused.size() > 1)  // a flipped rejection is a ~1e-8 event per draw: two are a real difference
    check.fail(std::to_string(excused.size()) + " noise units off near the rejection boundary: more than one");
  if (!check.passed(state)) return;
  time_launches(state, launch, 0.0, 4.0 * (N + double(S) * N) * (L + 1), S);
}

// ---- Whole training steps

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

// Every kernel entry at ConvBase's C = 25 with 100 seeds and at C = 256 with 10 (where the shape depends on C).
BENCHMARK(BM_conv_forward)->Args({100, 25})->Args({10, 256})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_conv_backward)->Args({100, 25})->Args({10, 256})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_linear_forward)->Args({100, 25})->Args({10, 256})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_linear_backward)->Args({100, 25})->Args({10, 256})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_softmax_ce, mean, false)->Arg(100)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_softmax_ce, mu, true)->Arg(100)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_adam)  // (S, P): P = 5210 at C = 25, 408074 at C = 256
    ->Args({100, int64_t(sb::ConvBaseShape{25, kLength, kClasses}.num_params())})
    ->Args({10, int64_t(sb::ConvBaseShape{256, kLength, kClasses}.num_params())})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_gather)->Arg(100)->UseManualTime()->Unit(benchmark::kMicrosecond);
// The spurious sets, each with every noise draw: BM_spurious_train/class/100, ...,
// BM_spurious_test_conflicting/element/100.
const bool kSpuriousRegistered = [] {
  const std::pair<const char*, SpuriousSetKind> sets[] = {
      {"BM_spurious_train", SpuriousSetKind::train},
      {"BM_spurious_test_aligned", SpuriousSetKind::aligned},
      {"BM_spurious_test_conflicting", SpuriousSetKind::conflicting}};
  for (const auto& [name, set] : sets)
    for (const sb::NoiseDraw draw : {sb::NoiseDraw::per_class, sb::NoiseDraw::per_sample, sb::NoiseDraw::per_element})
      benchmark::RegisterBenchmark((std::string(name) + "/" + sb::to_string(draw)).c_str(),
                                   [set = set, draw](benchmark::State& state) { run_spurious(state, set, draw); })
          ->Arg(100)
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond);
  return true;
}();

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
