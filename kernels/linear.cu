// The linear head as batched GEMMs over seeds (see linear.h and batched_gemm.cuh). No workspace: R (F, B or M)
// is short, so every output is one chain, never split.
#include "kernels/linear.h"

#include <climits>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "kernels/batched_gemm.cuh"

namespace sb::gpu {
namespace {

// out[s][b][j] = bias[j] + sum_f w[j][f] in[s][b][f]:   m = b, n = j, r = f (linear_forward's order)
struct LinearForwardOp {
  static constexpr bool kLoadAAlongR = true;  // in[b][f]: contiguous in f
  static constexpr bool kLoadBAlongR = true;  // w[j][f]: contiguous in f
  int M, N, R;
  const float* in;
  size_t in_seed_stride;
  const float* w;
  const float* bias;
  size_t param_stride;
  float* out;

  __device__ float init(int s, int, int n) const { return bias[s * param_stride + n]; }
  __device__ float a(int s, int m, int r) const { return in[s * in_seed_stride + size_t(m) * R + r]; }
  __device__ float b(int s, int r, int n) const { return w[s * param_stride + size_t(n) * R + r]; }
  __device__ void store(int s, int m, int n, float v) const { out[(size_t(s) * M + m) * N + n] = v; }
};

// dw[s][j][f] = sum_b dout[s][b][j] in[s][b][f]; column n = F is the bias (input 1).   m = j, n = f, r = b
struct LinearBackwardWeightsOp {
  static constexpr bool kLoadAAlongR = false;  // dout[b][j]: contiguous in j
  static constexpr bool kLoadBAlongR = false;  // in[b][f]: contiguous in f
  int M, N, R;
  const float* dout;
  const float* in;
  float* dw;
  float* dbias;
  size_t param_stride;

  __device__ float init(int, int, int) const { return 0.0f; }
  __device__ float a(int s, int m, int r) const { return dout[(size_t(s) * R + r) * M + m]; }
  __device__ float b(int s, int r, int n) const {
    return n == N - 1 ? 1.0f : in[(size_t(s) * R + r) * (N - 1) + n];
  }
  __device__ void store(int s, int m, int n, float v) const {
    if (n == N - 1)
      dbias[s * param_stride + m] = v;
    else
      dw[s * param_stride + size_t(m) * (N - 1) + n] = v;
  }
};

// din[s][b][f] = sum_j w[j][f] dout[s][b][j], masked:   m = b, n = f, r = j (linear_backward_input's order)
struct LinearBackwardInputOp {
  static constexpr bool kLoadAAlongR = true;   // dout[b][j]: contiguous in j
  static constexpr bool kLoadBAlongR = false;  // w[j][f]: contiguous in f
  int M, N, R;
  const float* dout;
  const float* w;
  size_t param_stride;
  const float* mask;
  float* din;

  __device__ float init(int, int, int) const { return 0.0f; }
  __device__ float a(int s, int m, int r) const { return dout[(size_t(s) * M + m) * R + r]; }
  __device__ float b(int s, int r, int n) const { return w[s * param_stride + size_t(r) * N + n]; }
  __device__ void store(int s, int m, int n, float v) const {
    const size_t i = (size_t(s) * M + m) * N + n;
    if (mask && mask[i] <= 0.0f) v = 0.0f;  // as relu_backward
    din[i] = v;
  }
};

void check_dims(const LinearDims& d, std::initializer_list<const void*> ptrs, const char* what) {
  if (d.S < 1 || d.B < 1 || d.F < 1 || d.M < 1)
    throw std::invalid_argument(std::string(what) + ": S, B, F and M must be positive");
  if (d.F >= INT_MAX - 1) throw std::invalid_argument(std::string(what) + ": too many features");
  for (const void* p : ptrs)
    if (!p) throw std::invalid_argument(std::string(what) + ": null tensor");
}

}  // namespace

void linear_forward(const LinearDims& d, const float* in, size_t in_seed_stride, const float* w, const float* bias,
                    size_t param_stride, float* out, Stream stream) {
  check_dims(d, {in, w, bias, out}, "linear_forward");
  LinearForwardOp op;
  op.M = d.B, op.N = d.M, op.R = d.F;
  op.in = in, op.in_seed_stride = in_seed_stride;
  op.w = w, op.bias = bias, op.param_stride = param_stride, op.out = out;
  gemm::launch_batched_gemm(op, d.S, stream, "linear_forward");
}

void linear_backward_weights(const LinearDims& d, const float* dout, const float* in, float* dw, float* dbias,
                             size_t param_stride, Stream stream) {
  check_dims(d, {dout, in, dw, dbias}, "linear_backward_weights");
  LinearBackwardWeightsOp op;
  op.M = d.M, op.N = d.F + 1, op.R = d.B;
  op.dout = dout, op.in = in, op.dw = dw, op.dbias = dbias, op.param_stride = param_stride;
  gemm::launch_batched_gemm(op, d.S, stream, "linear_backward_weights");
}

void linear_backward_input(const LinearDims& d, const float* dout, const float* w, size_t param_stride,
                           const float* mask, float* din, Stream stream) {
  check_dims(d, {dout, w, din}, "linear_backward_input");
  LinearBackwardInputOp op;
  op.M = d.B, op.N = d.F, op.R = d.M;
  op.dout = dout, op.w = w, op.param_stride = param_stride, op.mask = mask, op.din = din;
  gemm::launch_batched_gemm(op, d.S, stream, "linear_backward_input");
}

}  // namespace sb::gpu
