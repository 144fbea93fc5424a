// Inside the CPU floor: the two register-blocked GEMM kernels and the elementwise loops that the layer twins
// (conv1d.cpp, linear.cpp, adam.cpp) describe their work to, one table per instruction-set level (simd_kernels.inc,
// compiled three times in simd.cpp). Not for use outside host/cpu/.
#pragma once
#include <cstddef>
#include <vector>

#include "cpu/simd.h"

namespace sb::simd {

// out[m][:] = bias[m] + sum_{r < nr} w[m*wm + wofs[r]] * rows[r][:], over ld columns (a multiple of the width).
// Output row m starts at out + m*outm. bias may be null (zero).
struct GatherGemm {
  int M = 0, nr = 0, ld = 0;
  const float* const* rows = nullptr;
  const int* wofs = nullptr;
  const float* w = nullptr;
  size_t wm = 0;
  const float* bias = nullptr;
  float* out = nullptr;
  size_t outm = 0;
};

// out[m*outm + n] = sum_{l < nl} sum_{c < ld} a(m, l)[c] * b(n, l)[c],
// with a(m, l) = a + m*am + l*al and b(n, l) = b[n] + l*bl, for m < M, n < N.
struct DotGemm {
  int M = 0, N = 0, nl = 0, ld = 0;
  const float* a = nullptr;
  size_t am = 0, al = 0;
  const float* const* b = nullptr;
  size_t bl = 0;
  float* out = nullptr;
  size_t outm = 0;
};

struct AdamScalars {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, bc2_sqrt, eps;
};

// One instruction-set level's kernels.
struct SimdKernels {
  SimdLevel level;
  int width;
  void (*gather_gemm)(const GatherGemm&);
  void (*dot_gemm)(const DotGemm&);
  void (*row_sums)(int M, int nl, const float* a, size_t am, size_t al, int ld, float* out);
  void (*relu_forward)(float* a, size_t n);
  void (*relu_backward)(const float* a, float* d, size_t n);
  void (*adam_update)(float* p, const float* g, float* m, float* v, size_t n, const AdamScalars& s);
};

// The kernels of the level in use (cpu/simd.h: SB_SIMD, set_simd_level).
const SimdKernels& kernels();

// Per-thread scratch for the pointer tables, reused across calls (no allocation in the steady state).
struct RowTables {
  std::vector<const float*> rows;
  std::vector<int> wofs;
  void resize(size_t n) {
    if (rows.size() < n) rows.resize(n), wofs.resize(n);
  }
};
RowTables& row_tables();

// fn(i) for i < n, split over layer_threads() when called outside a parallel region. Every i is an
// independent set of output rows computed by the same operations on any thread, so results never change.
void parallel_rows(int n, void (*fn)(int, const void*), const void* ctx);
template <class Fn>
void parallel_rows(int n, Fn fn) {
  parallel_rows(n, [](int i, const void* f) { (*static_cast<const Fn*>(f))(i); }, &fn);
}

// dot_gemm with its output rows split into blocks over the layer threads (a row's sums do not change).
void dot_gemm_split(const DotGemm& d);

}  // namespace sb::simd
