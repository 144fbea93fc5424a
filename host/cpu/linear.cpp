// The linear head on the CPU (cpu/linear.h), twin of kernels/linear.cu: the same GEMM kernels as conv1d.cpp.
#include "cpu/linear.h"

#include "cpu/simd_kernels.h"

namespace sb {
using namespace simd;

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

}  // namespace sb
