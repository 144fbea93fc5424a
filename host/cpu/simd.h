// The CPU reference's common ground: its activation layout, its instruction-set levels and its threads. The layers
// themselves are one file per CUDA kernel's twin, named like the kernel (kernels/conv1d.cu <-> cpu/conv1d.h, linear,
// softmax_ce, adam, gather, spurious); convbase.cpp chains them into the forward and backward pass of one seed, and
// the SIMD loops they share are in simd_kernels.h / simd_kernels.inc.
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

}  // namespace sb
