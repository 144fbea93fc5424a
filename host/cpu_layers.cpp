// The layers of ConvBase on the CPU (see cpu_layers.h): each layer function describes its GEMM as a table of
// row pointers and weight offsets and hands it to the SIMD kernels of the level in use (cpu_layers_simd.inc).
#include "cpu_layers.h"

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

#include "convbase.h"

namespace sb {
namespace {

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

#pragma GCC push_options
#pragma GCC target("avx512f")
#define SB_SIMD_LEVEL 512
#define SB_SIMD_NS simd_avx512
#include "cpu_layers_simd.inc"
#undef SB_SIMD_NS
#undef SB_SIMD_LEVEL
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define SB_SIMD_LEVEL 256
#define SB_SIMD_NS simd_avx2
#include "cpu_layers_simd.inc"
#undef SB_SIMD_NS
#undef SB_SIMD_LEVEL
#pragma GCC pop_options

#define SB_SIMD_LEVEL 128
#define SB_SIMD_NS simd_sse2
#include "cpu_layers_simd.inc"
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

const SimdKernels& kernels() {
  const SimdKernels* k = g_kernels.load(std::memory_order_acquire);
  if (!k) {  // a race here is harmless: every thread computes the same answer
    k = detect_kernels();
    g_kernels.store(k, std::memory_order_release);
  }
  return *k;
}

// Per-thread scratch for the pointer tables, reused across calls (no allocation in the steady state).
struct RowTables {
  std::vector<const float*> rows;
  std::vector<int> wofs;
  void resize(size_t n) {
    if (rows.size() < n) rows.resize(n), wofs.resize(n);
  }
};
RowTables& row_tables() {
  thread_local RowTables t;
  return t;
}

std::atomic<int> g_layer_threads{1};

// fn(i) for i < n, split over layer_threads() when called outside a parallel region. Every i is an
// independent set of output rows computed by the same operations on any thread, so results never change.
template <class Fn>
void parallel_rows(int n, Fn fn) {
  const int nt = omp_in_parallel() ? 1 : std::min(n, g_layer_threads.load(std::memory_order_relaxed));
  if (nt <= 1) {
    for (int i = 0; i < n; ++i) fn(i);
    return;
  }
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int i = 0; i < n; ++i) fn(i);
}

// in has the conv input's shape, out the output's; in must carry zero pad rows when the layer reads it.
void check_conv_views(const ActView& in, const ActView& out, int K, const char* what, bool reads_in = true) {
  constexpr int stride = ConvBaseShape::stride, pad = ConvBaseShape::pad;
  if (reads_in && in.pad < pad) throw std::invalid_argument(std::string(what) + ": the input needs zero padding rows");
  if (out.length != ConvBaseShape::out_len(in.length, K) || out.length < 1)
    throw std::invalid_argument(std::string(what) + ": output length does not match input length and kernel");
  if (in.ld != out.ld || in.ld % kernels().width != 0)
    throw std::invalid_argument(std::string(what) + ": ld must agree and be a multiple of the SIMD width");
  static_assert(stride == 2 && pad == 1, "the row arithmetic below assumes stride 2, padding 1");
}

}  // namespace

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

void conv1d_forward(const float* w, const float* bias, int K, const ActView& in, const ActView& out) {
  check_conv_views(in, out, K, "conv1d_forward");
  const int cin = in.channels, cout = out.channels;
  parallel_rows(out.length, [&](int l) {
    RowTables& t = row_tables();
    t.resize(size_t(cin) * K);
    GatherGemm g;
    g.M = cout, g.nr = cin * K, g.ld = in.ld;
    g.rows = t.rows.data(), g.wofs = t.wofs.data();
    g.w = w, g.wm = size_t(cin) * K;  // w[co][ci][k] at co*Cin*K + ci*K + k
    g.bias = bias;
    g.outm = size_t(out.rows()) * out.ld;
    // Output row l reads input rows 2l + k - 1 (the pad rows give the zero padding).
    for (int ci = 0; ci < cin; ++ci)
      for (int k = 0; k < K; ++k) {
        t.rows[size_t(ci) * K + k] = in.row(ci, 2 * l + k - 1);
        t.wofs[size_t(ci) * K + k] = ci * K + k;
      }
    g.out = out.row(0, l);
    kernels().gather_gemm(g);
  });
}

// dot_gemm with its output rows split into blocks over the layer threads (a row's sums do not change).
static void dot_gemm_split(const DotGemm& d) {
  const int blocks = layer_threads() > 1 && !omp_in_parallel() ? std::min(d.M, 4 * layer_threads()) : 1;
  parallel_rows(blocks, [&](int i) {
    const int m0 = int(long(d.M) * i / blocks), m1 = int(long(d.M) * (i + 1) / blocks);
    DotGemm part = d;
    part.M = m1 - m0, part.a = d.a + size_t(m0) * d.am, part.out = d.out + size_t(m0) * d.outm;
    if (part.M > 0) kernels().dot_gemm(part);
  });
}

void conv1d_backward_weights(const ActView& dout, const ActView& in, int K, float* dw, float* dbias) {
  check_conv_views(in, dout, K, "conv1d_backward_weights");
  const int cin = in.channels, cout = dout.channels;
  RowTables& t = row_tables();
  t.resize(size_t(cin) * K);
  for (int ci = 0; ci < cin; ++ci)
    for (int k = 0; k < K; ++k) t.rows[size_t(ci) * K + k] = in.row(ci, k - 1);  // tap k of output row 0
  DotGemm d;
  d.M = cout, d.N = cin * K, d.nl = dout.length, d.ld = dout.ld;
  d.a = dout.row(0, 0), d.am = size_t(dout.rows()) * dout.ld, d.al = dout.ld;
  d.b = t.rows.data(), d.bl = 2 * size_t(in.ld);  // output row l + 1 reads two input rows further
  d.out = dw, d.outm = size_t(cin) * K;
  dot_gemm_split(d);
  kernels().row_sums(cout, dout.length, dout.row(0, 0), d.am, d.al, dout.ld, dbias);
}

void conv1d_backward_input(const float* w, int K, const ActView& dout, const ActView& din) {
  check_conv_views(din, dout, K, "conv1d_backward_input", false);  // din has the input's shape
  const int cin = din.channels, cout = dout.channels;
  parallel_rows(din.length, [&](int p) {
    RowTables& t = row_tables();
    t.resize(size_t(cout) * K);
    GatherGemm g;
    g.M = cin, g.ld = din.ld;
    g.rows = t.rows.data(), g.wofs = t.wofs.data();
    g.w = w, g.wm = K;  // row m = ci of w^T: w[co][ci][k] at ci*K + (co*Cin*K + k)
    g.outm = size_t(din.rows()) * din.ld;
    // Input row p is read by output row l through tap k when 2l + k - 1 = p.
    int nr = 0;
    for (int co = 0; co < cout; ++co)
      for (int k = 0; k < K; ++k) {
        const int twice_l = p + 1 - k;
        if (twice_l < 0 || twice_l % 2 != 0 || twice_l / 2 >= dout.length) continue;
        t.rows[nr] = dout.row(co, twice_l / 2);
        t.wofs[nr] = co * cin * K + k;
        ++nr;
      }
    g.nr = nr;
    g.out = din.row(0, p);
    kernels().gather_gemm(g);
  });
}

void relu_forward(const ActView& a) {
  kernels().relu_forward(a.data, a.size());  // the zero pad rows stay zero
}

void relu_backward(const ActView& a, const ActView& d) {
  if (a.channels != d.channels || a.length != d.length || a.ld != d.ld)
    throw std::invalid_argument("relu_backward: activation and gradient shapes differ");
  const size_t n = size_t(a.length) * a.ld;
  for (int c = 0; c < a.channels; ++c) kernels().relu_backward(a.row(c, 0), d.row(c, 0), n);
}

void linear_forward(const float* w, const float* bias, int M, int F, const float* in, int ld, float* out) {
  RowTables& t = row_tables();
  t.resize(F);
  for (int f = 0; f < F; ++f) t.rows[f] = in + size_t(f) * ld, t.wofs[f] = f;
  GatherGemm g;
  g.M = M, g.nr = F, g.ld = ld;
  g.rows = t.rows.data(), g.wofs = t.wofs.data();
  g.w = w, g.wm = F;
  g.bias = bias;
  g.out = out, g.outm = ld;
  kernels().gather_gemm(g);
}

void linear_backward_weights(const float* dout, const float* in, int M, int F, int ld, float* dw, float* dbias) {
  RowTables& t = row_tables();
  t.resize(F);
  for (int f = 0; f < F; ++f) t.rows[f] = in + size_t(f) * ld;
  DotGemm d;
  d.M = M, d.N = F, d.nl = 1, d.ld = ld;
  d.a = dout, d.am = ld, d.al = 0;
  d.b = t.rows.data(), d.bl = 0;
  d.out = dw, d.outm = F;
  dot_gemm_split(d);
  kernels().row_sums(M, 1, dout, ld, 0, ld, dbias);
}

void linear_backward_input(const float* w, const float* dout, int M, int F, int ld, float* din) {
  RowTables& t = row_tables();
  t.resize(M);
  for (int j = 0; j < M; ++j) t.rows[j] = dout + size_t(j) * ld, t.wofs[j] = j * F;
  GatherGemm g;
  g.M = F, g.nr = M, g.ld = ld;
  g.rows = t.rows.data(), g.wofs = t.wofs.data();
  g.w = w, g.wm = 1;  // row f of w^T: w[j][f] at f + j*F
  g.out = din, g.outm = ld;
  kernels().gather_gemm(g);
}

void adam_update(float* p, const float* g, float* m, float* v, size_t n, float beta1, float beta2, float step_size,
                 float bc2_sqrt, float eps) {
  const AdamScalars s{beta1, 1.0f - beta1, beta2, 1.0f - beta2, step_size, bc2_sqrt, eps};
  kernels().adam_update(p, g, m, v, n, s);
}

}  // namespace sb
