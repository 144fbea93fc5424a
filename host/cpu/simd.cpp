// The CPU floor's instruction-set levels (cpu/simd.h) and the kernel tables the layer twins call (simd_kernels.h):
// simd_kernels.inc compiled once per level.
#include "cpu/simd.h"

// GCC 12's AVX-512 intrinsics (_mm512_max_ps, _mm512_sqrt_ps, ...) self-initialise a dummy operand and warn
// about it wherever they are inlined (GCC bug 105593, fixed in 12.3); the warning is about the header only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop

#include <omp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "cpu/simd_kernels.h"

namespace sb {
namespace simd {
namespace {

#pragma GCC push_options
#pragma GCC target("avx512f")
#define SB_SIMD_LEVEL 512
#define SB_SIMD_NS simd_avx512
#include "cpu/simd_kernels.inc"
#undef SB_SIMD_NS
#undef SB_SIMD_LEVEL
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define SB_SIMD_LEVEL 256
#define SB_SIMD_NS simd_avx2
#include "cpu/simd_kernels.inc"
#undef SB_SIMD_NS
#undef SB_SIMD_LEVEL
#pragma GCC pop_options

#define SB_SIMD_LEVEL 128
#define SB_SIMD_NS simd_sse2
#include "cpu/simd_kernels.inc"
#undef SB_SIMD_NS
#undef SB_SIMD_LEVEL

const SimdKernels* kernels_for(SimdLevel level) {
  switch (level) {
    case SimdLevel::avx512: return &simd_avx512::kernels;
    case SimdLevel::avx2: return &simd_avx2::kernels;
    case SimdLevel::sse2: return &simd_sse2::kernels;
  }
  return &simd_sse2::kernels;
}

// The best level of this CPU, unless SB_SIMD names a supported lower one.
const SimdKernels* detect_kernels() {
  SimdLevel level = SimdLevel::sse2;
  for (SimdLevel l : {SimdLevel::avx512, SimdLevel::avx2})
    if (simd_level_supported(l)) {
      level = l;
      break;
    }
  if (const char* env = std::getenv("SB_SIMD")) {
    for (SimdLevel l : {SimdLevel::avx512, SimdLevel::avx2, SimdLevel::sse2})
      if (std::string(env) == simd_level_name(l) && simd_level_supported(l) && int(l) <= int(level)) level = l;
  }
  return kernels_for(level);
}

std::atomic<const SimdKernels*> g_kernels{nullptr};
std::atomic<int> g_layer_threads{1};

}  // namespace

const SimdKernels& kernels() {
  const SimdKernels* k = g_kernels.load(std::memory_order_acquire);
  if (!k) {  // a race here is harmless: every thread computes the same answer
    k = detect_kernels();
    g_kernels.store(k, std::memory_order_release);
  }
  return *k;
}

RowTables& row_tables() {
  thread_local RowTables t;
  return t;
}

void parallel_rows(int n, void (*fn)(int, const void*), const void* ctx) {
  const int nt = omp_in_parallel() ? 1 : std::min(n, g_layer_threads.load(std::memory_order_relaxed));
  if (nt <= 1) {
    for (int i = 0; i < n; ++i) fn(i, ctx);
    return;
  }
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int i = 0; i < n; ++i) fn(i, ctx);
}

void dot_gemm_split(const DotGemm& d) {
  const int blocks = layer_threads() > 1 && !omp_in_parallel() ? std::min(d.M, 4 * layer_threads()) : 1;
  parallel_rows(blocks, [&](int i) {
    const int m0 = int(long(d.M) * i / blocks), m1 = int(long(d.M) * (i + 1) / blocks);
    DotGemm part = d;
    part.M = m1 - m0, part.a = d.a + size_t(m0) * d.am, part.out = d.out + size_t(m0) * d.outm;
    if (part.M > 0) kernels().dot_gemm(part);
  });
}

}  // namespace simd

using namespace simd;

FlushDenormals::FlushDenormals() : saved_mxcsr_(_mm_getcsr()) { _mm_setcsr(saved_mxcsr_ | 0x8040u); }  // FTZ | DAZ
FlushDenormals::~FlushDenormals() { _mm_setcsr(saved_mxcsr_); }

SimdLevel simd_level() { return kernels().level; }

const char* simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::avx512: return "avx512";
    case SimdLevel::avx2: return "avx2";
    case SimdLevel::sse2: return "sse2";
  }
  return "unknown";
}

bool simd_level_supported(SimdLevel level) {
  __builtin_cpu_init();
  switch (level) {
    case SimdLevel::avx512: return __builtin_cpu_supports("avx512f");
    case SimdLevel::avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case SimdLevel::sse2: return true;
  }
  return false;
}

void set_simd_level(SimdLevel level) {
  if (!simd_level_supported(level))
    throw std::invalid_argument(std::string("SIMD level ") + simd_level_name(level) + " is not supported by this CPU");
  g_kernels.store(kernels_for(level), std::memory_order_release);
}

int simd_width() { return kernels().width; }

void set_layer_threads(int n) { g_layer_threads.store(std::max(1, n), std::memory_order_relaxed); }
int layer_threads() { return g_layer_threads.load(std::memory_order_relaxed); }

int padded_batch(int B) {
  const int w = simd_width();
  return (B + w - 1) / w * w;
}

}  // namespace sb
