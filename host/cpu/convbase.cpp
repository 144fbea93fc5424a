// ConvBase on the CPU for one seed: the forward and backward passes chain the layer twins (cpu/conv1d.h,
// cpu/linear.h) on activations in the
// channel-major, batch-innermost layout; only the edges (x, logits, dlogits, features, dx) use the
// sample-major layouts of convbase.h.
#include "cpu/convbase.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cpu/conv1d.h"
#include "cpu/linear.h"
#include "cpu/simd.h"

namespace sb {
namespace {

constexpr size_t kAlignFloats = 16;  // 64 bytes: a vector load never splits a cache line

// A vector of n floats, plus slack so that a 64-byte aligned run of n floats fits inside.
void resize_aligned(std::vector<float>& v, size_t n) { v.assign(n + kAlignFloats, 0.0f); }
float* aligned_data(std::vector<float>& v) {
  const uintptr_t p = reinterpret_cast<uintptr_t>(v.data());
  const uintptr_t a = (p + 63) & ~uintptr_t(63);
  return v.data() + (a - p) / sizeof(float);
}

// The activation views of one forward pass of B samples (ld = padded_batch(B)). Inputs of a conv carry one
// pad row each side; the head input a3 and all gradients have none.
struct Views {
  ActView x, a1, a2, a3, d1, d2, d3, dx;
  float* logits_t;  // (classes, B)
  float* dlogits_t;  // (classes, B)
};

Views views(const ConvBaseShape& s, ConvBaseWorkspace& ws, int ld) {
  const int C = s.channels;
  float* scratch = aligned_data(ws.scratch);
  Views v;
  v.x = {scratch, 1, s.length, 1, ld};
  v.dx = {v.x.data + v.x.size(), 1, s.length, 0, ld};
  v.logits_t = v.dx.data + v.dx.size();
  v.dlogits_t = v.logits_t + size_t(s.classes) * ld;
  v.a1 = {aligned_data(ws.a1), C, s.l1(), 1, ld};
  v.a2 = {aligned_data(ws.a2), C, s.l2(), 1, ld};
  v.a3 = {aligned_data(ws.a3), C, s.l3(), 0, ld};
  v.d1 = {aligned_data(ws.d1), C, s.l1(), 0, ld};
  v.d2 = {aligned_data(ws.d2), C, s.l2(), 0, ld};
  v.d3 = {aligned_data(ws.d3), C, s.l3(), 0, ld};
  return v;
}

void zero_pad_rows(const ActView& a) {
  for (int c = 0; c < a.channels; ++c) {
    std::fill(a.row(c, -a.pad), a.row(c, 0), 0.0f);
    std::fill(a.row(c, a.length), a.row(c, a.length + a.pad), 0.0f);
  }
}

void check_same_shape(const ConvBaseShape& a, const ConvBaseShape& b) {
  if (a.channels != b.channels || a.length != b.length || a.classes != b.classes)
    throw std::invalid_argument("ConvBase: the workspace was made for another shape");
}

}  // namespace

ConvBaseWorkspace::ConvBaseWorkspace(const ConvBaseShape& shape_, int max_batch_) : max_batch(max_batch_), shape(shape_) {
  check_convbase_shape(shape);
  if (max_batch < 1) throw std::invalid_argument("ConvBaseWorkspace: max_batch must be positive");
  const size_t ld = size_t(max_batch + kMaxSimdWidth - 1) / kMaxSimdWidth * kMaxSimdWidth;  // any SIMD level
  const size_t C = shape.channels;
  resize_aligned(a1, C * (shape.l1() + 2) * ld);
  resize_aligned(a2, C * (shape.l2() + 2) * ld);
  resize_aligned(a3, C * shape.l3() * ld);
  resize_aligned(d1, C * shape.l1() * ld);
  resize_aligned(d2, C * shape.l2() * ld);
  resize_aligned(d3, C * shape.l3() * ld);
  // x with pad rows, dx, logits and dlogits, all (rows, ld).
  resize_aligned(scratch, (size_t(shape.length) + 2 + shape.length + 2 * shape.classes) * ld);
}

void convbase_forward(const ConvBaseShape& shape, const float* params, const float* x, int B, float* logits,
                      ConvBaseWorkspace& ws, float* features) {
  const FlushDenormals flush;
  check_same_shape(shape, ws.shape);
  if (B < 1 || B > ws.max_batch)
    throw std::invalid_argument("convbase_forward: batch of " + std::to_string(B) + " samples, workspace holds " +
                                std::to_string(ws.max_batch));
  const int L = shape.length, K = shape.classes, F = shape.feature_dim();
  const int ld = padded_batch(B);
  ws.batch = B, ws.ld = ld;
  const Views v = views(shape, ws, ld);

  // x (B, L) -> (1, L, B) with zero pad rows and zero padding columns.
  std::fill(v.x.data, v.x.data + v.x.size(), 0.0f);
  for (int b = 0; b < B; ++b)
    for (int p = 0; p < L; ++p) v.x.row(0, p)[b] = x[size_t(b) * L + p];
  zero_pad_rows(v.a1);
  zero_pad_rows(v.a2);

  const float* w = params;
  conv1d_forward(w + shape.off_w1(), w + shape.off_b1(), ConvBaseShape::k1, v.x, v.a1);  // a1 is (C, L1, B)
  relu_forward(v.a1);
  conv1d_forward(w + shape.off_w2(), w + shape.off_b2(), ConvBaseShape::k2, v.a1, v.a2);  // a2 is (C, L2, B)
  relu_forward(v.a2);
  conv1d_forward(w + shape.off_w3(), w + shape.off_b3(), ConvBaseShape::k3, v.a2, v.a3);  // a3 is (C, L3, B)
  relu_forward(v.a3);
  linear_forward(w + shape.off_wh(), w + shape.off_bh(), K, F, v.a3.data, ld, v.logits_t);  // (K, B)

  for (int b = 0; b < B; ++b)
    for (int j = 0; j < K; ++j) logits[size_t(b) * K + j] = v.logits_t[size_t(j) * ld + b];
  if (features)
    for (int b = 0; b < B; ++b)
      for (int f = 0; f < F; ++f) features[size_t(b) * F + f] = v.a3.data[size_t(f) * ld + b];
}

void convbase_backward(const ConvBaseShape& shape, const float* params, const float* /*x: ws keeps its copy*/,
                       const float* dlogits, int B, float* grads, ConvBaseWorkspace& ws, float* dx) {
  const FlushDenormals flush;
  check_same_shape(shape, ws.shape);
  if (B != ws.batch || ws.ld != padded_batch(B))
    throw std::invalid_argument("convbase_backward: B differs from the last convbase_forward on this workspace");
  const int L = shape.length, K = shape.classes, F = shape.feature_dim();
  const int ld = ws.ld;
  const Views v = views(shape, ws, ld);

  // dlogits (B, K) -> (K, B); the padding columns must be zero so they add nothing to weight gradients.
  std::fill(v.dlogits_t, v.dlogits_t + size_t(K) * ld, 0.0f);
  for (int b = 0; b < B; ++b)
    for (int j = 0; j < K; ++j) v.dlogits_t[size_t(j) * ld + b] = dlogits[size_t(b) * K + j];

  const float* w = params;
  float* g = grads;
  linear_backward_weights(v.dlogits_t, v.a3.data, K, F, ld, g + shape.off_wh(), g + shape.off_bh());
  linear_backward_input(w + shape.off_wh(), v.dlogits_t, K, F, ld, v.d3.data);  // d3 is (C, L3, B)
  relu_backward(v.a3, v.d3);
  conv1d_backward_weights(v.d3, v.a2, ConvBaseShape::k3, g + shape.off_w3(), g + shape.off_b3());
  conv1d_backward_input(w + shape.off_w3(), ConvBaseShape::k3, v.d3, v.d2);  // d2 is (C, L2, B)
  relu_backward(v.a2, v.d2);
  conv1d_backward_weights(v.d2, v.a1, ConvBaseShape::k2, g + shape.off_w2(), g + shape.off_b2());
  conv1d_backward_input(w + shape.off_w2(), ConvBaseShape::k2, v.d2, v.d1);  // d1 is (C, L1, B)
  relu_backward(v.a1, v.d1);
  conv1d_backward_weights(v.d1, v.x, ConvBaseShape::k1, g + shape.off_w1(), g + shape.off_b1());
  if (dx) {
    conv1d_backward_input(w + shape.off_w1(), ConvBaseShape::k1, v.d1, v.dx);  // (1, L, B)
    for (int b = 0; b < B; ++b)
      for (int p = 0; p < L; ++p) dx[size_t(b) * L + p] = v.dx.row(0, p)[b];
  }
}

}  // namespace sb
