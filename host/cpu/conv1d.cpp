// Conv1d and ReLU on the CPU (cpu/conv1d.h), twin of kernels/conv1d.cu: each layer describes its GEMM as a table of
// row pointers and weight offsets and hands it to the SIMD kernels of the level in use (simd_kernels.h).
#include "cpu/conv1d.h"

#include <stdexcept>
#include <string>

#include "core/model.h"
#include "cpu/simd_kernels.h"

namespace sb {
using namespace simd;
namespace {

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

}  // namespace sb
