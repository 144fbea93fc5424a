// Conv1d forward and backward as batched GEMMs over seeds (see conv1d.h and batched_gemm.cuh). Each Op maps
// GEMM coordinates (m, n, r) to tensor elements; the comments give the mapping and the CPU twin's sum order.
// The divisions by the lengths and K are by gemm::FastDivisor (exact for 0 <= n < 2^31, and m, r, n are ints >= 0):
// the elements read, hence the bits, are those of plain integer division.
#include "kernels/conv1d.h"

#include <algorithm>
#include <climits>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "kernels/batched_gemm.cuh"

namespace sb::gpu {
namespace {

// out[s][b][co][l] = bias[co] + sum_{ci, k} w[co][ci][k] * in[s][b][ci][2l+k-1]
//   m = b*Lout + l,  n = co,  r = ci*K + k (w's own order, the order of conv1d_forward's row table)
struct ConvForwardOp {
  static constexpr bool kLoadAAlongR = false;  // consecutive m: neighbouring output positions of one sample
  static constexpr bool kLoadBAlongR = true;   // b(r, n) = w[n][r], contiguous in r
  int M, N, R;
  int B, cin, K, lin, lout;
  gemm::FastDivisor div_lout, div_K;
  const float* in;
  size_t in_seed_stride;
  const float* w;
  const float* bias;
  size_t param_stride;
  float* out;
  bool relu;

  __device__ float init(int s, int, int n) const { return bias[s * param_stride + n]; }
  __device__ float a(int s, int m, int r) const {
    const int b = div_lout.div(m), l = m - b * lout, ci = div_K.div(r), k = r - ci * K;
    const int p = 2 * l + k - 1;
    return (p >= 0 && p < lin) ? in[s * in_seed_stride + (size_t(b) * cin + ci) * lin + p] : 0.0f;
  }
  __device__ float b(int s, int r, int n) const { return w[s * param_stride + size_t(n) * R + r]; }
  __device__ void store(int s, int m, int n, float v) const {
    const int b = div_lout.div(m), l = m - b * lout;
    if (relu && 0.0f > v) v = 0.0f;  // as relu_forward: NaN stays NaN
    out[((size_t(s) * B + b) * N + n) * lout + l] = v;
  }
};

// din[s][b][ci][p] = sum_{co, k} w[co][ci][k] * dout[s][b][co][(p+1-k)/2]  over the taps with p+1-k even and
// 0 <= (p+1-k)/2 < Lout; the other taps give exact zeros.
//   m = b*Lin + p,  n = ci,  r = co*K + k (the order of conv1d_backward_input's row table)
struct ConvBackwardInputOp {
  static constexpr bool kLoadAAlongR = false;  // consecutive m: neighbouring input positions
  static constexpr bool kLoadBAlongR = false;  // b(r, n) = w[co][n][k]: stride K in n
  int M, N, R;
  int B, cout, K, lin, lout;
  gemm::FastDivisor div_lin, div_K;
  const float* dout;
  const float* w;
  size_t param_stride;
  const float* mask;
  bool absolute;
  float* din;

  __device__ float init(int, int, int) const { return 0.0f; }
  __device__ float a(int s, int m, int r) const {
    const int b = div_lin.div(m), p = m - b * lin, co = div_K.div(r), k = r - co * K;
    const int twice_l = p + 1 - k;
    if (twice_l < 0 || (twice_l & 1) != 0 || (twice_l >> 1) >= lout) return 0.0f;
    return dout[((size_t(s) * B + b) * cout + co) * lout + (twice_l >> 1)];  // twice_l >= 0: >> 1 is / 2
  }
  __device__ float b(int s, int r, int n) const {
    const int co = div_K.div(r), k = r - co * K;
    return w[s * param_stride + (size_t(co) * N + n) * K + k];
  }
  __device__ void store(int s, int m, int n, float v) const {
    const int b = div_lin.div(m), p = m - b * lin;
    const size_t i = ((size_t(s) * B + b) * N + n) * lin + p;
    if (mask && mask[i] <= 0.0f) v = 0.0f;  // as relu_backward: passes where !(mask <= 0)
    if (absolute) v = fabsf(v);
    din[i] = v;
  }
};

// dw[s][co][ci][k] = sum_{b, l} dout[s][b][co][l] * in[s][b][ci][2l+k-1]; column n = Cin*K is the bias, whose
// "input" is 1: dbias[s][co] = sum_{b, l} dout[s][b][co][l] (fmaf(x, 1, acc) rounds as x + acc).
//   m = co,  n = ci*K + k (or Cin*K),  r = b*Lout + l
// M x N is small and R long: the caller's workspace lets launch_batched_gemm split R (split_plan).
struct ConvBackwardWeightsOp {
  static constexpr bool kLoadAAlongR = true;   // a(m, r) = dout[b][m][l]: contiguous in l
  static constexpr bool kLoadBAlongR = false;  // b(r, n) = in[b][ci][2l+k-1]: contiguous in k
  int M, N, R;
  int B, cin, K, lin, lout;
  gemm::FastDivisor div_lout, div_K;
  const float* dout;
  const float* in;
  size_t in_seed_stride;
  float* dw;
  float* dbias;
  size_t param_stride;

  __device__ float init(int, int, int) const { return 0.0f; }
  __device__ float a(int s, int m, int r) const {
    const int b = div_lout.div(r), l = r - b * lout;
    return dout[((size_t(s) * B + b) * M + m) * lout + l];
  }
  __device__ float b(int s, int r, int n) const {
    if (n == N - 1) return 1.0f;  // the bias column
    const int b = div_lout.div(r), l = r - b * lout, ci = div_K.div(n), k = n - ci * K;
    const int p = 2 * l + k - 1;
    return (p >= 0 && p < lin) ? in[s * in_seed_stride + (size_t(b) * cin + ci) * lin + p] : 0.0f;
  }
  __device__ void store(int s, int m, int n, float v) const {
    if (n == N - 1)
      dbias[s * param_stride + m] = v;
    else
      dw[s * param_stride + size_t(m) * (N - 1) + n] = v;  // (Cout, Cin, K): m*Cin*K + ci*K + k
  }
};

void check_dims(const ConvDims& d, const char* what) {
  // lin + 2 >= K: the kernel fits the padded input at least once (C++ division truncates, so lout() alone
  // would read 1 for a kernel longer than the padded input).
  if (d.S < 1 || d.B < 1 || d.cin < 1 || d.cout < 1 || d.K < 1 || d.lin < 1 || d.lin + 2 < d.K)
    throw std::invalid_argument(std::string(what) + ": S, B, channels, kernel and lengths must be positive (S=" +
                                std::to_string(d.S) + " B=" + std::to_string(d.B) + " Cin=" + std::to_string(d.cin) +
                                " Cout=" + std::to_string(d.cout) + " K=" + std::to_string(d.K) +
                                " Lin=" + std::to_string(d.lin) + ")");
  // GEMM coordinates are ints: B*Lin, Cin*K, Cout*K must fit.
  const long long biggest = std::max({(long long)d.B * d.lin, (long long)d.cin * d.K + 1, (long long)d.cout * d.K});
  if (biggest >= INT_MAX) throw std::invalid_argument(std::string(what) + ": tensor too large for one launch");
}

void check_pointers(std::initializer_list<const void*> ptrs, const char* what) {
  for (const void* p : ptrs)
    if (!p) throw std::invalid_argument(std::string(what) + ": null tensor");
}

}  // namespace

void conv1d_forward(const ConvDims& d, const float* in, size_t in_seed_stride, const float* w, const float* bias,
                    size_t param_stride, bool relu, float* out, Stream stream) {
  check_dims(d, "conv1d_forward");
  check_pointers({in, w, bias, out}, "conv1d_forward");
  ConvForwardOp op;
  op.M = d.B * d.lout(), op.N = d.cout, op.R = d.cin * d.K;
  op.B = d.B, op.cin = d.cin, op.K = d.K, op.lin = d.lin, op.lout = d.lout();
  op.div_lout = gemm::FastDivisor(op.lout), op.div_K = gemm::FastDivisor(d.K);
  op.in = in, op.in_seed_stride = in_seed_stride;
  op.w = w, op.bias = bias, op.param_stride = param_stride;
  op.out = out, op.relu = relu;
  gemm::launch_batched_gemm(op, d.S, stream, "conv1d_forward");
}

void conv1d_backward_input(const ConvDims& d, const float* dout, const float* w, size_t param_stride,
                           const float* mask, bool absolute, float* din, Stream stream) {
  check_dims(d, "conv1d_backward_input");
  check_pointers({dout, w, din}, "conv1d_backward_input");
  ConvBackwardInputOp op;
  op.M = d.B * d.lin, op.N = d.cin, op.R = d.cout * d.K;
  op.B = d.B, op.cout = d.cout, op.K = d.K, op.lin = d.lin, op.lout = d.lout();
  op.div_lin = gemm::FastDivisor(d.lin), op.div_K = gemm::FastDivisor(d.K);
  op.dout = dout, op.w = w, op.param_stride = param_stride;
  op.mask = mask, op.absolute = absolute, op.din = din;
  gemm::launch_batched_gemm(op, d.S, stream, "conv1d_backward_input");
}

void conv1d_backward_weights(const ConvDims& d, const float* dout, const float* in, size_t in_seed_stride, float* dw,
                             float* dbias, size_t param_stride, Stream stream, float* workspace) {
  check_dims(d, "conv1d_backward_weights");
  check_pointers({dout, in, dw, dbias}, "conv1d_backward_weights");
  if ((long long)d.B * d.lout() >= INT_MAX) throw std::invalid_argument("conv1d_backward_weights: batch too large");
  ConvBackwardWeightsOp op;
  op.M = d.cout, op.N = d.cin * d.K + 1, op.R = d.B * d.lout();
  op.B = d.B, op.cin = d.cin, op.K = d.K, op.lin = d.lin, op.lout = d.lout();
  op.div_lout = gemm::FastDivisor(op.lout), op.div_K = gemm::FastDivisor(d.K);
  op.dout = dout, op.in = in, op.in_seed_stride = in_seed_stride;
  op.dw = dw, op.dbias = dbias, op.param_stride = param_stride;
  gemm::launch_batched_gemm(op, d.S, stream, "conv1d_backward_weights", workspace);
}

void conv1d_backward_weights(const ConvDims& d, const float* dout, const float* in, size_t in_seed_stride, float* dw,
                             float* dbias, size_t param_stride, Stream stream) {
  conv1d_backward_weights(d, dout, in, in_seed_stride, dw, dbias, param_stride, stream, nullptr);
}

std::string split_rule_note() {
  const gemm::SplitRule& r = gemm::split_rule();
  if (r.chunk_r == gemm::kSplitChunkR && r.min_tiles == gemm::kSplitMinTiles) return "";
  return "split rule " + std::to_string(r.chunk_r) + "/" + std::to_string(r.min_tiles) +
         " from SB_SPLIT_CHUNK_R / SB_SPLIT_MIN_TILES";
}

size_t conv1d_backward_weights_workspace(const ConvDims& d) {
  check_dims(d, "conv1d_backward_weights_workspace");
  if ((long long)d.B * d.lout() >= INT_MAX)
    throw std::invalid_argument("conv1d_backward_weights_workspace: batch too large");
  return size_t(d.S) * gemm::split_workspace_per_seed(d.cout, d.cin * d.K + 1, d.B * d.lout());
}

}  // namespace sb::gpu
