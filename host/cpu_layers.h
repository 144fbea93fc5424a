// The layers of ConvBase on the CPU, one function per layer and direction. The CUDA kernels mirror them one
// by one; convbase.cpp chains them into the forward and backward pass of one seed.
//
// Activation layout: channel-major with the batch innermost. A batch of activations (C, L, B) is stored as
// C blocks of L + 2*pad rows of `ld` floats; element (c, p, b) is at data[(c*(L + 2*pad) + pad + p)*ld + b].
//   * Batch innermost makes every inner loop a long contiguous run over the samples of the batch, and a
//     stride-2 convolution needs no im2col: output row (co, l) is a sum of whole input rows (ci, 2l+k-1).
//   * ld >= B is the batch padded to a multiple of the SIMD width (padded_batch); columns B..ld-1 carry
//     finite junk in forward activations and must be zero in every gradient (so they add nothing to
//     weight gradients). Forward inputs should have zero padding columns.
//   * pad rows (one each side) hold zeros: they are the convolution's zero padding, so no loop tests bounds.
//
// Every output element is summed in a fixed order that depends only on the shapes and on the SIMD level,
// never on threads: results are bitwise reproducible. A sample's forward values are also independent of
// the other samples in the batch and of B (each column is computed by the same sequence of operations).
//
// The hot loops exist in three instruction-set versions (AVX-512F, AVX2+FMA, SSE2), chosen once at start-up
// from the CPU (override with the environment variable SB_SIMD=avx512|avx2|sse2, or set_simd_level in tests).
// AVX-512 and AVX2 both use FMA and give identical forward values; weight gradients differ in the last bits
// between levels because their lanes sum in a different grouping.
#pragma once
#include <cstddef>
#include <cstdint>

namespace sb {

enum class SimdLevel { sse2 = 0, avx2 = 1, avx512 = 2 };

SimdLevel simd_level();                       // the level in use
const char* simd_level_name(SimdLevel level);  // "sse2", "avx2", "avx512"
bool simd_level_supported(SimdLevel level);   // by this CPU
// Switches the level for the whole process (throws std::invalid_argument if the CPU lacks it). For tests and
// benchmarks: not thread-safe, and buffers laid out with the old padded_batch must not be reused.
void set_simd_level(SimdLevel level);

constexpr int kMaxSimdWidth = 16;  // floats per vector at the widest level
int simd_width();                  // floats per vector at the current level: 16, 8 or 4
int padded_batch(int B);           // B rounded up to a multiple of simd_width()

// Threads one layer call may use when called outside an OpenMP parallel region (default 1). The CPU backend
// raises it when it has fewer seeds than threads. Output rows are split between threads and each is computed
// by the same operations on any thread, so results do not depend on the count.
void set_layer_threads(int n);
int layer_threads();

// A view of activations (C, L, B) in the layout above.
struct ActView {
  float* data = nullptr;
  int channels = 0, length = 0, pad = 0, ld = 0;

  int rows() const { return length + 2 * pad; }  // rows per channel, padding included
  size_t size() const { return size_t(channels) * rows() * ld; }
  // Row p of channel c, p in [-pad, length + pad).
  float* row(int c, int p) const { return data + (size_t(c) * rows() + size_t(pad + p)) * ld; }
};

// ---- Denormal floats (below 1.2e-38) flushed to zero (MXCSR FTZ + DAZ) for the calling thread while in scope.
// A network that has learned its training set produces tiny gradients, and Adam's moments of dead units decay
// geometrically: without flushing, their denormal values take microcode assists and slow training ~4x.
// convbase_forward, convbase_backward, softmax_cross_entropy and adam_step each hold one.
class FlushDenormals {
 public:
  FlushDenormals();
  ~FlushDenormals();
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
  unsigned saved_mxcsr_;
};

// ---- Conv1d with stride 2 and padding 1 (ConvBaseShape::stride, ::pad), any Cin, Cout, K and length.
// in is (Cin, Lin, B) with pad >= 1 and zero pad rows; out is (Cout, Lout, B), Lout = (Lin + 2 - K)/2 + 1.
// w is (Cout, Cin, K), bias (Cout), in PyTorch's order.

// out = bias + conv(in): the pre-activation; out's interior rows are written, its pad rows left alone.
void conv1d_forward(const float* w, const float* bias, int K, const ActView& in, const ActView& out);

// dw (Cout, Cin, K) and dbias (Cout) of dout (Cout, Lout, B), the gradient of the pre-activation:
//   dw[co][ci][k] = sum_{l,b} dout[co][l][b] * in[ci][2l+k-1][b],  dbias[co] = sum_{l,b} dout[co][l][b].
// Overwritten, not accumulated.
void conv1d_backward_weights(const ActView& dout, const ActView& in, int K, float* dw, float* dbias);

// din (Cin, Lin, B) = the transposed convolution of dout (Cout, Lout, B):
//   din[ci][p][b] = sum_{co} sum_{k, l: 2l+k-1 = p} w[co][ci][k] * dout[co][l][b].
// Each din row is gathered from the dout rows that read it (no scatter, no zeroing). Interior rows written.
void conv1d_backward_input(const float* w, int K, const ActView& dout, const ActView& din);

// ---- ReLU, in place on the activations of a forward pass. a is (C, L, B); pad rows stay zero.
void relu_forward(const ActView& a);
// d *= (a > 0) elementwise: a is the ReLU output (C, L, B), d its gradient (C, L, B); paddings may differ.
void relu_backward(const ActView& a, const ActView& d);

// ---- Linear head, out = W in + bias, on feature-major matrices: in is (F, B) (row f holds feature f of
// every sample, ld floats), out is (M, B); w is (M, F), bias (M). The flattened conv3 output (C, L3, B)
// with no pad rows is exactly the head input (F = C*L3, row c*L3 + l: PyTorch's flatten order).
void linear_forward(const float* w, const float* bias, int M, int F, const float* in, int ld, float* out);
// dw (M, F) = dout in^T, dbias (M) = dout summed over the batch; dout is (M, B). Overwritten.
void linear_backward_weights(const float* dout, const float* in, int M, int F, int ld, float* dw, float* dbias);
// din (F, B) = w^T dout.
void linear_backward_input(const float* w, const float* dout, int M, int F, int ld, float* din);

// ---- Adam's elementwise update over n parameters, with the bias corrections already folded into
// step_size = lr / (1 - beta1^t) and bc2_sqrt = sqrt(1 - beta2^t):
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g g;  p -= step_size m / (sqrt(v) / bc2_sqrt + eps).
// Only correctly rounded operations (no FMA), so every SIMD level gives the same bits.
void adam_update(float* p, const float* g, float* m, float* v, size_t n, float beta1, float beta2, float step_size,
                 float bc2_sqrt, float eps);

}  // namespace sb
