// ConvBase on the CPU: every layer and the whole network against double-precision references and central
// finite differences (on every SIMD level this CPU has), cross-entropy, Adam, initialisation, and the CPU
// backend's seed independence and training.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/philox.h"
#include "cpu/adam.h"
#include "cpu/conv1d.h"
#include "cpu/convbase.h"
#include "cpu/linear.h"
#include "cpu/simd.h"
#include "cpu/softmax_ce.h"
#include "study/backends.h"

using namespace sb;

namespace {

// ---------------------------------------------------------------------------------------------------------
// Helpers

// Random values in [lo, hi), representable as float (so float and double code see the same inputs).
std::vector<double> random_values(size_t n, uint32_t stream, double lo = -1.0, double hi = 1.0) {
  RngStream rng(20240601, stream, Purpose::spurious_sample_noise);
  std::vector<double> v(n);
  for (double& x : v) x = rng.uniform(float(lo), float(hi));
  return v;
}

std::vector<float> to_float(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

// Compares an analytic gradient with a numeric one: relative error |a - n| / (|a| + |n| + floor), where the
// floor (1e-3 of the largest numeric entry) keeps near-zero entries from dominating. NaN or inf fails.
template <typename A>
void expect_grad_near(const std::string& what, const A& analytic, const std::vector<double>& numeric,
                      double tol = 2e-3) {
  ASSERT_EQ(analytic.size(), numeric.size()) << what;
  double scale = 0.0;
  for (double n : numeric) scale = std::max(scale, std::abs(n));
  const double floor = 1e-3 * scale + 1e-12;
  double worst = 0.0;
  size_t worst_i = 0;
  for (size_t i = 0; i < numeric.size(); ++i) {
    const double a = analytic[i], n = numeric[i];
    EXPECT_TRUE(std::isfinite(a)) << what << "[" << i << "] = " << a;
    const double rel = std::abs(a - n) / (std::abs(a) + std::abs(n) + floor);
    if (!(rel <= worst)) worst = rel, worst_i = i;  // NaN becomes the worst
  }
  EXPECT_LE(worst, tol) << what << ": worst relative error at [" << worst_i << "]: analytic "
                        << double(analytic[worst_i]) << ", numeric " << numeric[worst_i];
}

// Central difference of f at v[i] (restores v[i]).
double central_difference(std::vector<double>& v, size_t i, double h, const std::function<double()>& f) {
  const double saved = v[i];
  v[i] = saved + h;
  const double up = f();
  v[i] = saved - h;
  const double down = f();
  v[i] = saved;
  return (up - down) / (2 * h);
}

// Indices to check: all of them when few, else an evenly spread subset.
std::vector<size_t> sample_indices(size_t n, size_t max_checks = 160) {
  std::vector<size_t> idx;
  const size_t step = std::max<size_t>(1, n / max_checks);
  for (size_t i = 0; i < n; i += step) idx.push_back(i);
  return idx;
}

// Runs body once per SIMD level this CPU supports, restoring the level afterwards.
void for_each_simd_level(const std::function<void()>& body) {
  const SimdLevel saved = simd_level();
  for (SimdLevel level : {SimdLevel::sse2, SimdLevel::avx2, SimdLevel::avx512}) {
    if (!simd_level_supported(level)) continue;
    set_simd_level(level);
    SCOPED_TRACE(std::string("SIMD level ") + simd_level_name(level));
    body();
  }
  set_simd_level(saved);
}

// Activations of B samples in the CPU layout (host/cpu/simd.h), built from / read back to sample-major (B, C, L).
struct Packed {
  Packed(int C, int L, int pad, int B) : B(B), buf(size_t(C) * (L + 2 * pad) * padded_batch(B), 0.0f) {
    v = ActView{buf.data(), C, L, pad, padded_batch(B)};
  }
  void set(const std::vector<double>& sm) {  // sm is (B, C, L)
    for (int b = 0; b < B; ++b)
      for (int c = 0; c < v.channels; ++c)
        for (int p = 0; p < v.length; ++p) v.row(c, p)[b] = float(sm[(size_t(b) * v.channels + c) * v.length + p]);
  }
  std::vector<double> get() const {
    std::vector<double> sm(size_t(B) * v.channels * v.length);
    for (int b = 0; b < B; ++b)
      for (int c = 0; c < v.channels; ++c)
        for (int p = 0; p < v.length; ++p) sm[(size_t(b) * v.channels + c) * v.length + p] = v.row(c, p)[b];
    return sm;
  }
  // Pad rows and padding columns (b >= B) all zero.
  bool padding_is_zero() const {
    for (int c = 0; c < v.channels; ++c)
      for (int p = -v.pad; p < v.length + v.pad; ++p)
        for (int b = 0; b < v.ld; ++b) {
          const bool padding = p < 0 || p >= v.length || b >= B;
          if (padding && v.row(c, p)[b] != 0.0f) return false;
        }
    return true;
  }
  int B;
  std::vector<float> buf;
  ActView v;
};

// ---------------------------------------------------------------------------------------------------------
// Double-precision references, sample-major.

// y (Cout, Lout) = bias + conv(x (Cin, Lin)), stride 2, padding 1.
std::vector<double> conv_ref(const double* x, int cin, int lin, const double* w, const double* bias, int cout, int K) {
  const int lout = ConvBaseShape::out_len(lin, K);
  std::vector<double> y(size_t(cout) * lout);
  for (int co = 0; co < cout; ++co)
    for (int l = 0; l < lout; ++l) {
      double s = bias[co];
      for (int ci = 0; ci < cin; ++ci)
        for (int k = 0; k < K; ++k) {
          const int p = 2 * l + k - 1;
          if (p >= 0 && p < lin) s += w[(size_t(co) * cin + ci) * K + k] * x[size_t(ci) * lin + p];
        }
      y[size_t(co) * lout + l] = s;
    }
  return y;
}

void relu_ref(std::vector<double>& a) {
  for (double& x : a) x = std::max(0.0, x);
}

// Logits (classes) of one sample x (L); features (C*L3), if given, receives the head input.
std::vector<double> convbase_ref(const ConvBaseShape& s, const std::vector<double>& p, const double* x,
                                 std::vector<double>* features = nullptr) {
  const int C = s.channels;
  std::vector<double> a1 = conv_ref(x, 1, s.length, &p[s.off_w1()], &p[s.off_b1()], C, ConvBaseShape::k1);
  relu_ref(a1);
  std::vector<double> a2 = conv_ref(a1.data(), C, s.l1(), &p[s.off_w2()], &p[s.off_b2()], C, ConvBaseShape::k2);
  relu_ref(a2);
  std::vector<double> a3 = conv_ref(a2.data(), C, s.l2(), &p[s.off_w3()], &p[s.off_b3()], C, ConvBaseShape::k3);
  relu_ref(a3);
  if (features) *features = a3;
  std::vector<double> logits(s.classes);
  for (int j = 0; j < s.classes; ++j) {
    double z = p[s.off_bh() + j];
    for (int f = 0; f < s.feature_dim(); ++f) z += p[s.off_wh() + size_t(j) * s.feature_dim() + f] * a3[f];
    logits[j] = z;
  }
  return logits;
}

double cross_entropy_ref(const double* z, int K, int y) {
  double zmax = z[0];
  for (int j = 1; j < K; ++j) zmax = std::max(zmax, z[j]);
  double sum = 0.0;
  for (int j = 0; j < K; ++j) sum += std::exp(z[j] - zmax);
  return zmax + std::log(sum) - z[y];
}

// ---------------------------------------------------------------------------------------------------------
// Conv1d layer

struct ConvCase {
  int cin, cout, K, lin, B;
};

void check_conv_layer(const ConvCase& c) {
  SCOPED_TRACE("Cin " + std::to_string(c.cin) + " Cout " + std::to_string(c.cout) + " K " + std::to_string(c.K) +
               " Lin " + std::to_string(c.lin) + " B " + std::to_string(c.B));
  const int lout = ConvBaseShape::out_len(c.lin, c.K);
  std::vector<double> x = random_values(size_t(c.B) * c.cin * c.lin, 1);
  std::vector<double> w = random_values(size_t(c.cout) * c.cin * c.K, 2);
  std::vector<double> bias = random_values(c.cout, 3);
  const std::vector<double> r = random_values(size_t(c.B) * c.cout * lout, 4);  // upstream gradient
  const std::vector<float> wf = to_float(w), bf = to_float(bias);

  // Forward against the reference.
  Packed in(c.cin, c.lin, 1, c.B), out(c.cout, lout, 0, c.B);
  in.set(x);
  conv1d_forward(wf.data(), bf.data(), c.K, in.v, out.v);
  const std::vector<double> y = out.get();
  for (int b = 0; b < c.B; ++b) {
    const std::vector<double> yr = conv_ref(&x[size_t(b) * c.cin * c.lin], c.cin, c.lin, w.data(), bias.data(), c.cout, c.K);
    for (size_t i = 0; i < yr.size(); ++i)
      ASSERT_NEAR(y[size_t(b) * yr.size() + i], yr[i], 1e-5 * (1 + std::abs(yr[i]))) << "sample " << b << " out " << i;
  }

  // Backward: loss = sum(r * conv(x)).
  Packed dout(c.cout, lout, 0, c.B), din(c.cin, c.lin, 0, c.B);
  dout.set(r);
  std::vector<float> dw(w.size()), db(bias.size());
  conv1d_backward_weights(dout.v, in.v, c.K, dw.data(), db.data());
  conv1d_backward_input(wf.data(), c.K, dout.v, din.v);
  EXPECT_TRUE(din.padding_is_zero()) << "input-gradient padding columns must stay zero";
  const std::vector<double> dx = din.get();

  auto loss = [&] {
    double s = 0.0;
    for (int b = 0; b < c.B; ++b) {
      const std::vector<double> yr = conv_ref(&x[size_t(b) * c.cin * c.lin], c.cin, c.lin, w.data(), bias.data(), c.cout, c.K);
      for (size_t i = 0; i < yr.size(); ++i) s += r[size_t(b) * yr.size() + i] * yr[i];
    }
    return s;
  };
  const double h = 1e-2;  // the loss is linear in each variable: central differences are exact up to rounding
  std::vector<double> nw(w.size()), nb(bias.size());
  for (size_t i = 0; i < w.size(); ++i) nw[i] = central_difference(w, i, h, loss);
  for (size_t i = 0; i < bias.size(); ++i) nb[i] = central_difference(bias, i, h, loss);
  expect_grad_near("conv weight", dw, nw);
  expect_grad_near("conv bias", db, nb);
  std::vector<double> ax, nx;
  for (size_t i : sample_indices(x.size())) ax.push_back(dx[i]), nx.push_back(central_difference(x, i, h, loss));
  expect_grad_near("conv input", ax, nx);
}

// Multiply-adds per sample, layer by layer (lengths 40 -> 19 -> 10 -> 5, C = 25, 10 classes):
//   conv1 19*25*1*5 = 2375, conv2 10*25*25*3 = 18750, conv3 5*25*25*3 = 9375, head 125*10 = 1250.
// A step is forward + weight gradients + input gradients of all but conv1: 2 * (3 * 31750 - 2375) FLOPs.
TEST(ConvBase, StepCostCountsEveryLayer) {
  const ConvBaseShape s{25, 40, 10};
  EXPECT_DOUBLE_EQ(s.forward_flops(), 2.0 * 31750);
  EXPECT_DOUBLE_EQ(s.train_step_flops(), 2.0 * (3 * 31750 - 2375));
  // Bytes: per sample 2*40 (gather), forward 40+475 + 475+250 + 250+125 + 125+10, CE 20, head 10+125 + 10+250,
  // conv3 125+250 + 125+500, conv2 250+475 + 250+950, conv1 475+40: 5685 floats; per seed 10 * 5210 parameters.
  EXPECT_EQ(s.num_params(), 5210u);
  EXPECT_DOUBLE_EQ(s.train_step_bytes(100), 4.0 * (100 * 5685.0 + 10 * 5210.0));
}

TEST(CpuLayers, Conv1dForwardAndGradients) {
  const ConvCase cases[] = {
      {1, 3, 5, 40, 3},   // conv1 of ConvBase
      {3, 3, 3, 19, 5},   // C = 3
      {4, 2, 3, 10, 2},
      {3, 5, 3, 11, 17},  // odd length, two vectors of batch
      {2, 3, 5, 13, 1},   // one sample
      {7, 9, 3, 20, 33},  // several row and column blocks
      {5, 11, 3, 9, 70},  // more column blocks than one tile, odd length
  };
  for_each_simd_level([&] {
    for (const ConvCase& c : cases) check_conv_layer(c);
  });
}

TEST(CpuLayers, Conv1dRejectsInconsistentViews) {
  Packed in(2, 10, 1, 4), out(3, 4, 0, 4), unpadded(2, 10, 0, 4);
  std::vector<float> w(3 * 2 * 3), b(3);
  EXPECT_THROW(conv1d_forward(w.data(), b.data(), 3, in.v, out.v), std::invalid_argument);  // Lout is 5
  Packed out5(3, 5, 0, 4);
  EXPECT_NO_THROW(conv1d_forward(w.data(), b.data(), 3, in.v, out5.v));
  EXPECT_THROW(conv1d_forward(w.data(), b.data(), 3, unpadded.v, out5.v), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------------------
// ReLU

TEST(CpuLayers, ReluForwardAndGradient) {
  for_each_simd_level([] {
    const int C = 3, L = 7, B = 21;
    std::vector<double> x = random_values(size_t(B) * C * L, 5);
    for (double& v : x)
      if (std::abs(v) < 0.05) v = 0.05;  // keep away from the kink for the finite differences
    const std::vector<double> r = random_values(x.size(), 6);
    Packed a(C, L, 1, B), d(C, L, 0, B);
    a.set(x);
    relu_forward(a.v);
    EXPECT_TRUE(a.padding_is_zero());
    const std::vector<double> y = a.get();
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(y[i], std::max(0.0, double(float(x[i]))));
    d.set(r);
    relu_backward(a.v, d.v);
    const std::vector<double> dx = d.get();
    auto loss = [&] {
      double s = 0;
      for (size_t i = 0; i < x.size(); ++i) s += r[i] * std::max(0.0, x[i]);
      return s;
    };
    std::vector<double> ax, nx;
    for (size_t i : sample_indices(x.size())) ax.push_back(dx[i]), nx.push_back(central_difference(x, i, 1e-3, loss));
    expect_grad_near("relu input", ax, nx, 1e-6);
  });
}

TEST(CpuLayers, ReluPropagatesNaN) {
  Packed a(1, 1, 0, 3);
  a.v.row(0, 0)[0] = std::nanf("");
  a.v.row(0, 0)[1] = -2.0f;
  a.v.row(0, 0)[2] = 3.0f;
  relu_forward(a.v);
  EXPECT_TRUE(std::isnan(a.v.row(0, 0)[0]));
  EXPECT_EQ(a.v.row(0, 0)[1], 0.0f);
  EXPECT_EQ(a.v.row(0, 0)[2], 3.0f);
}

// ---------------------------------------------------------------------------------------------------------
// Linear head

TEST(CpuLayers, LinearForwardAndGradients) {
  for_each_simd_level([] {
    for (const std::array<int, 3>& mfb : {std::array<int, 3>{10, 125, 100}, std::array<int, 3>{3, 7, 5},
                                          std::array<int, 3>{13, 20, 40}}) {
      const int M = mfb[0], F = mfb[1], B = mfb[2];
      SCOPED_TRACE("M " + std::to_string(M) + " F " + std::to_string(F) + " B " + std::to_string(B));
      const int ld = padded_batch(B);
      std::vector<double> x = random_values(size_t(B) * F, 7), w = random_values(size_t(M) * F, 8),
                          bias = random_values(M, 9);
      const std::vector<double> r = random_values(size_t(B) * M, 10);
      const std::vector<float> wf = to_float(w), bf = to_float(bias);
      std::vector<float> in(size_t(F) * ld, 0.0f), out(size_t(M) * ld), dout(size_t(M) * ld, 0.0f), din(size_t(F) * ld);
      for (int b = 0; b < B; ++b)
        for (int f = 0; f < F; ++f) in[size_t(f) * ld + b] = float(x[size_t(b) * F + f]);
      for (int b = 0; b < B; ++b)
        for (int j = 0; j < M; ++j) dout[size_t(j) * ld + b] = float(r[size_t(b) * M + j]);
      linear_forward(wf.data(), bf.data(), M, F, in.data(), ld, out.data());
      auto ref = [&](int b, int j) {
        double z = bias[j];
        for (int f = 0; f < F; ++f) z += w[size_t(j) * F + f] * x[size_t(b) * F + f];
        return z;
      };
      for (int b = 0; b < B; ++b)
        for (int j = 0; j < M; ++j) ASSERT_NEAR(out[size_t(j) * ld + b], ref(b, j), 1e-5 * (1 + std::abs(ref(b, j))));

      std::vector<float> dw(w.size()), db(M);
      linear_backward_weights(dout.data(), in.data(), M, F, ld, dw.data(), db.data());
      linear_backward_input(wf.data(), dout.data(), M, F, ld, din.data());
      auto loss = [&] {
        double s = 0;
        for (int b = 0; b < B; ++b)
          for (int j = 0; j < M; ++j) s += r[size_t(b) * M + j] * ref(b, j);
        return s;
      };
      std::vector<double> nw, aw, nb(M), nx, ax;
      for (size_t i : sample_indices(w.size())) aw.push_back(dw[i]), nw.push_back(central_difference(w, i, 1e-2, loss));
      for (int j = 0; j < M; ++j) nb[j] = central_difference(bias, j, 1e-2, loss);
      for (size_t i : sample_indices(x.size())) {
        const size_t b = i / F, f = i % F;
        ax.push_back(din[f * ld + b]), nx.push_back(central_difference(x, i, 1e-2, loss));
      }
      expect_grad_near("linear weight", aw, nw);
      expect_grad_near("linear bias", db, nb);
      expect_grad_near("linear input", ax, nx);
      for (int f = 0; f < F; ++f)
        for (int b = B; b < ld; ++b) ASSERT_EQ(din[size_t(f) * ld + b], 0.0f) << "padding column of the input gradient";
    }
  });
}

// ---------------------------------------------------------------------------------------------------------
// Softmax cross-entropy

TEST(ConvBaseLoss, SoftmaxCrossEntropyValueAndGradient) {
  const int B = 6, K = 5;
  std::vector<double> z = random_values(size_t(B) * K, 11, -3.0, 3.0);
  const int32_t labels[B] = {0, 4, 2, 2, 1, 3};
  std::vector<float> mu_raw = to_float(random_values(B, 12, 0.1, 1.0));
  const float mu_sum = std::accumulate(mu_raw.begin(), mu_raw.end(), 0.0f);
  std::vector<float> mu(B);
  for (int i = 0; i < B; ++i) mu[i] = mu_raw[i] / mu_sum;  // positive weights summing to 1

  for (const bool weighted : {false, true}) {
    SCOPED_TRACE(weighted ? "with mu" : "mean");
    auto loss_ref = [&] {
      double s = 0;
      for (int i = 0; i < B; ++i) s += (weighted ? mu[i] : 1.0 / B) * cross_entropy_ref(&z[size_t(i) * K], K, labels[i]);
      return s;
    };
    const std::vector<float> zf = to_float(z);
    std::vector<float> dz(zf.size()), per_sample(B);
    const float loss = softmax_cross_entropy(zf.data(), labels, weighted ? mu.data() : nullptr, B, K, dz.data(),
                                             per_sample.data());
    EXPECT_TRUE(std::isfinite(loss));
    EXPECT_NEAR(loss, loss_ref(), 1e-6 * (1 + loss_ref()));
    for (int i = 0; i < B; ++i) EXPECT_NEAR(per_sample[i], cross_entropy_ref(&z[size_t(i) * K], K, labels[i]), 1e-5);
    std::vector<double> nz(z.size());
    for (size_t i = 0; i < z.size(); ++i) nz[i] = central_difference(z, i, 1e-4, loss_ref);
    expect_grad_near("dlogits", dz, nz, 1e-4);
  }
}

TEST(ConvBaseLoss, SoftmaxCrossEntropyIsStableForHugeLogits) {
  const float z[] = {1000.0f, -1000.0f, 0.0f, 88.0f, 89.0f, -500.0f};
  const int32_t labels[] = {1, 0};
  float dz[6], per[2];
  const float loss = softmax_cross_entropy(z, labels, nullptr, 2, 3, dz, per);
  EXPECT_TRUE(std::isfinite(loss));
  EXPECT_FLOAT_EQ(per[0], 2000.0f);
  EXPECT_NEAR(per[1], 1.0 + std::log1p(std::exp(-1.0) + std::exp(-589.0)), 1e-5);
  for (float d : dz) EXPECT_TRUE(std::isfinite(d));
  EXPECT_FLOAT_EQ(dz[0], 0.5f);   // (softmax 1 - onehot 0) / B
  EXPECT_FLOAT_EQ(dz[1], -0.5f);  // (0 - 1) / B
  const int32_t bad[] = {3, 0};
  EXPECT_THROW(softmax_cross_entropy(z, bad, nullptr, 2, 3, dz, nullptr), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------------------
// The whole network

ConvBaseShape small_shape() { return ConvBaseShape{4, 40, 10}; }

TEST(ConvBaseNet, ForwardMatchesReferenceAndIsPerSample) {
  for_each_simd_level([] {
    for (const int C : {4, 25}) {
      const ConvBaseShape s{C, 40, 10};
      std::vector<float> params(s.num_params());
      convbase_init(s, 7, 0, params.data());
      const std::vector<double> pd(params.begin(), params.end());
      const int B = 37;
      const std::vector<double> x = random_values(size_t(B) * s.length, 13, -2.0, 2.0);
      const std::vector<float> xf = to_float(x);
      ConvBaseWorkspace ws(s, B);
      std::vector<float> logits(size_t(B) * s.classes), features(size_t(B) * s.feature_dim());
      convbase_forward(s, params.data(), xf.data(), B, logits.data(), ws, features.data());
      for (int b = 0; b < B; ++b) {
        std::vector<double> fr;
        const std::vector<double> zr = convbase_ref(s, pd, &x[size_t(b) * s.length], &fr);
        for (int j = 0; j < s.classes; ++j) ASSERT_NEAR(logits[size_t(b) * s.classes + j], zr[j], 1e-5 * (1 + std::abs(zr[j])));
        for (int f = 0; f < s.feature_dim(); ++f) ASSERT_NEAR(features[size_t(b) * s.feature_dim() + f], fr[f], 1e-5 * (1 + fr[f]));
      }
      // A sample's logits are the same bits whatever batch it is computed in.
      ConvBaseWorkspace ws1(s, 1);
      std::vector<float> one(s.classes);
      for (int b : {0, 17, 36}) {
        convbase_forward(s, params.data(), &xf[size_t(b) * s.length], 1, one.data(), ws1);
        EXPECT_EQ(0, std::memcmp(one.data(), &logits[size_t(b) * s.classes], sizeof(float) * s.classes)) << b;
      }
    }
  });
}

TEST(ConvBaseNet, ForwardBitsEqualOnAvx2AndAvx512) {
  // Both levels run each output column through the same chain of FMAs; only SSE2 (no FMA) rounds differently.
  if (!simd_level_supported(SimdLevel::avx512) || !simd_level_supported(SimdLevel::avx2))
    GTEST_SKIP() << "needs a CPU with AVX-512";
  const ConvBaseShape s{25, 40, 10};
  std::vector<float> params(s.num_params());
  convbase_init(s, 9, 1, params.data());
  const int B = 50;
  const std::vector<float> x = to_float(random_values(size_t(B) * s.length, 19, -2.0, 2.0));
  std::vector<float> logits[2];
  const SimdLevel saved = simd_level();
  int i = 0;
  for (SimdLevel level : {SimdLevel::avx2, SimdLevel::avx512}) {
    set_simd_level(level);
    ConvBaseWorkspace ws(s, B);
    logits[i].resize(size_t(B) * s.classes);
    convbase_forward(s, params.data(), x.data(), B, logits[i++].data(), ws);
  }
  set_simd_level(saved);
  EXPECT_EQ(0, std::memcmp(logits[0].data(), logits[1].data(), logits[0].size() * sizeof(float)));
}

TEST(ConvBaseNet, BackwardMatchesFiniteDifferences) {
  for_each_simd_level([] {
    const ConvBaseShape s = small_shape();
    const int B = 3, L = s.length, K = s.classes;
    std::vector<float> params(s.num_params());
    convbase_init(s, 11, 2, params.data());
    std::vector<double> p(params.begin(), params.end());
    std::vector<double> x = random_values(size_t(B) * L, 14, -2.0, 2.0);
    const std::vector<float> xf = to_float(x);
    const int32_t labels[B] = {3, 7, 0};

    ConvBaseWorkspace ws(s, B);
    std::vector<float> logits(size_t(B) * K), dlogits(size_t(B) * K), grads(s.num_params()), dx(size_t(B) * L);
    convbase_forward(s, params.data(), xf.data(), B, logits.data(), ws);
    softmax_cross_entropy(logits.data(), labels, nullptr, B, K, dlogits.data());
    convbase_backward(s, params.data(), xf.data(), dlogits.data(), B, grads.data(), ws, dx.data());

    auto loss = [&] {  // mean cross-entropy of the double-precision network
      double sum = 0;
      for (int b = 0; b < B; ++b) sum += cross_entropy_ref(convbase_ref(s, p, &x[size_t(b) * L]).data(), K, labels[b]);
      return sum / B;
    };
    const double h = 1e-5;
    std::vector<double> np(p.size()), nx(x.size());
    for (size_t i = 0; i < p.size(); ++i) np[i] = central_difference(p, i, h, loss);
    for (size_t i = 0; i < x.size(); ++i) nx[i] = central_difference(x, i, h, loss);
    struct Part { const char* name; size_t off, n; };
    const Part parts[] = {{"conv1.weight", s.off_w1(), s.off_b1() - s.off_w1()}, {"conv1.bias", s.off_b1(), 4},
                          {"conv2.weight", s.off_w2(), s.off_b2() - s.off_w2()}, {"conv2.bias", s.off_b2(), 4},
                          {"conv3.weight", s.off_w3(), s.off_b3() - s.off_w3()}, {"conv3.bias", s.off_b3(), 4},
                          {"head.weight", s.off_wh(), s.off_bh() - s.off_wh()}, {"head.bias", s.off_bh(), 10}};
    for (const Part& part : parts)
      expect_grad_near(part.name, std::vector<float>(grads.begin() + part.off, grads.begin() + part.off + part.n),
                       std::vector<double>(np.begin() + part.off, np.begin() + part.off + part.n));
    expect_grad_near("dx", dx, nx);
  });
}

TEST(ConvBaseNet, WorkspaceChecks) {
  const ConvBaseShape s = small_shape();
  ConvBaseWorkspace ws(s, 4);
  std::vector<float> params(s.num_params()), x(5 * 40), logits(50), grads(s.num_params());
  EXPECT_THROW(convbase_forward(s, params.data(), x.data(), 5, logits.data(), ws), std::invalid_argument);
  convbase_forward(s, params.data(), x.data(), 4, logits.data(), ws);
  EXPECT_THROW(convbase_backward(s, params.data(), x.data(), logits.data(), 3, grads.data(), ws), std::invalid_argument);
  EXPECT_THROW(convbase_forward(ConvBaseShape{5, 40, 10}, params.data(), x.data(), 4, logits.data(), ws),
               std::invalid_argument);
}

TEST(ConvBaseNet, ParameterCounts) {
  EXPECT_EQ(ConvBaseShape{}.num_params(), 5210u);
  EXPECT_EQ((ConvBaseShape{256, 40, 10}.num_params()), 408074u);
}

// ---------------------------------------------------------------------------------------------------------
// Initialisation

TEST(ConvBaseInit, BoundsDeterminismAndStreams) {
  const ConvBaseShape s{256, 40, 10};
  std::vector<float> a(s.num_params()), b(s.num_params()), c(s.num_params());
  convbase_init(s, 42, 3, a.data());
  convbase_init(s, 42, 3, b.data());
  convbase_init(s, 42, 4, c.data());
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << "same seed, same parameters";
  size_t same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == c[i];
  EXPECT_LT(same, a.size() / 1000) << "another seed index must give other parameters";

  struct Part { size_t off, n; int fan_in; };
  const int C = s.channels;
  const Part parts[] = {{s.off_w1(), size_t(C) * 5, 5},          {s.off_b1(), size_t(C), 5},
                        {s.off_w2(), size_t(C) * C * 3, C * 3},  {s.off_b2(), size_t(C), C * 3},
                        {s.off_w3(), size_t(C) * C * 3, C * 3},  {s.off_b3(), size_t(C), C * 3},
                        {s.off_wh(), size_t(10) * C * 5, C * 5}, {s.off_bh(), 10, C * 5}};
  for (const Part& part : parts) {
    const double bound = 1.0 / std::sqrt(double(part.fan_in));
    double lo = 1e9, hi = -1e9, sum = 0, sum2 = 0;
    for (size_t i = part.off; i < part.off + part.n; ++i) {
      lo = std::min(lo, double(a[i])), hi = std::max(hi, double(a[i]));
      sum += a[i], sum2 += double(a[i]) * a[i];
    }
    EXPECT_GE(lo, -bound * (1 + 1e-6)) << "offset " << part.off;
    EXPECT_LT(hi, bound * (1 + 1e-6)) << "offset " << part.off;
    if (part.n >= 200) {  // spread over the whole interval: U(-b, b) has variance b^2 / 3
      EXPECT_GT(hi, 0.9 * bound);
      EXPECT_LT(lo, -0.9 * bound);
      EXPECT_NEAR(sum2 / part.n, bound * bound / 3, 0.15 * bound * bound / 3) << "offset " << part.off;
    }
  }
  // The bias bound is 1/sqrt(fan_in) (not the weight's kaiming bound of another fan): conv2.bias with fan_in 768.
  double bmax = 0;
  for (int i = 0; i < C; ++i) bmax = std::max(bmax, double(std::abs(a[s.off_b2() + i])));
  EXPECT_GT(bmax, 0.8 / std::sqrt(768.0));
  EXPECT_LE(bmax, 1.0 / std::sqrt(768.0));

  // Draws come in parameter order from the init stream: the first is conv1.weight[0].
  RngStream rng(42, 3, Purpose::init_weights);
  const float b1 = 1.0f / std::sqrt(5.0f);
  EXPECT_EQ(a[0], rng.uniform(-b1, b1));
  EXPECT_EQ(a[1], rng.uniform(-b1, b1));
}

// ---------------------------------------------------------------------------------------------------------
// Adam

TEST(Adam, TwoStepsByHand) {
  // lr 0.01, betas (0.9, 0.999), eps 1e-8. Worked in double (python), e.g. element 0 (p = 0.5):
  //   t=1, g=0.2:  m = 0.1*0.2 = 0.02, v = 0.001*0.04 = 4e-5, step = 0.01/(1-0.9) = 0.1,
  //                denom = sqrt(4e-5)/sqrt(1-0.999) + 1e-8 = 0.2 + 1e-8, p = 0.5 - 0.1*0.02/denom = 0.4900000005
  //   t=2, g=-0.1: m = 0.9*0.02 - 0.01 = 0.008, v = 0.999*4e-5 + 0.001*0.01 = 4.996e-5,
  //                step = 0.01/0.19, denom = sqrt(4.996e-5)/sqrt(0.001999) + 1e-8 = 0.158091...,
  //                p = 0.49 - 0.0526316*0.008/0.158091 = 0.4873366302718676
  // The others likewise (a constant gradient moves p by lr per step; a zero first gradient leaves p).
  float p[4] = {0.5f, -1.0f, 2.0f, 0.0f}, m[4] = {}, v[4] = {};
  const float g1[4] = {0.2f, -0.5f, 0.0f, 3.0f}, g2[4] = {-0.1f, -0.5f, 1e-3f, 3.0f};
  adam_step(p, g1, m, v, 4, 0.01f, 0.9f, 0.999f, 1e-8f, 1);
  const double p1[4] = {0.4900000005, -0.9900000002, 2.0, -0.009999999966666673};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(p[i], p1[i], 2e-7) << i;
  adam_step(p, g2, m, v, 4, 0.01f, 0.9f, 0.999f, 1e-8f, 2);
  const double p2[4] = {0.4873366302718676, -0.9800000004, 1.992558736973364, -0.019999999933333276};
  const double m2[4] = {0.008, -0.095, 1e-4, 0.57}, v2[4] = {4.996e-5, 4.9975e-4, 1e-9, 0.017991};
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(p[i], p2[i], 2e-7) << i;
    EXPECT_NEAR(m[i], m2[i], 1e-5 * std::abs(m2[i])) << i;
    EXPECT_NEAR(v[i], v2[i], 3e-5 * std::abs(v2[i])) << i;  // 1 - 0.999f is 0.00099999 in float
  }
  EXPECT_THROW(adam_step(p, g2, m, v, 4, 0.01f, 0.9f, 0.999f, 1e-8f, 0), std::invalid_argument);
}

TEST(Adam, SameBitsOnEverySimdLevelAndTail) {
  const size_t n = 37;  // not a multiple of any width: the tail path too
  const std::vector<float> g = to_float(random_values(n, 15)), p0 = to_float(random_values(n, 16));
  std::vector<float> first;
  for_each_simd_level([&] {
    std::vector<float> p = p0, m(n), v(n);
    for (int t = 1; t <= 3; ++t) adam_step(p.data(), g.data(), m.data(), v.data(), n, 1e-2f, 0.9f, 0.999f, 1e-8f, t);
    if (first.empty()) first = p;
    EXPECT_EQ(0, std::memcmp(first.data(), p.data(), n * sizeof(float)));
  });
}

// ---------------------------------------------------------------------------------------------------------
// CPU backend

TEST(CpuBackend, NamesAndErrors) {
  auto cpu = make_backend("cpu", 0);
  EXPECT_EQ(cpu->name(), "cpu");
  EXPECT_GE(cpu->threads(), 1);
  EXPECT_FALSE(cpu->device().empty());
  EXPECT_EQ(make_backend("cpu", 3)->threads(), 3);
  try {
    make_backend("tpu", 1);
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("unknown backend 'tpu' (known: cpu, cuda, cudnn)"), std::string::npos) << e.what();
  }
#ifndef SB_HAVE_CUDA
  for (const char* name : {"cuda", "cudnn"}) {
    try {
      make_backend(name, 1);
      ADD_FAILURE() << "no exception";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("no CUDA support"), std::string::npos) << e.what();
    }
  }
#endif
  const std::vector<std::string> known = known_backends();
  EXPECT_NE(std::find(known.begin(), known.end(), "cpu"), known.end());

  const ConvBaseShape s = small_shape();
  std::vector<float> params(s.num_params());
  int32_t rows[2] = {0, 5};
  float loss;
  EXPECT_THROW(cpu->train_step(rows, 2, 0.01f, &loss), std::logic_error);  // no reset
  cpu->reset(s, 1, params.data(), AdamConfig{});
  EXPECT_THROW(cpu->train_step(rows, 2, 0.01f, &loss), std::logic_error);  // no data
  std::vector<float> x(4 * 40);
  std::vector<int32_t> y = {0, 1, 2, 3};
  cpu->set_train_data(x.data(), y.data(), 4);
  EXPECT_THROW(cpu->train_step(rows, 2, 0.01f, &loss), std::out_of_range);  // row 5 of 4
  y[2] = 10;
  EXPECT_THROW(cpu->set_train_data(x.data(), y.data(), 4), std::invalid_argument);
}

// Per-seed data for the independence test: seed index i always gets the same x slice and batches.
struct SeedRun {
  std::vector<float> params;
  std::vector<float> loss;  // (steps)
};

std::vector<SeedRun> run_seeds(const std::vector<uint32_t>& seed_ids, int threads, int steps) {
  const ConvBaseShape s{6, 40, 10};
  const int S = int(seed_ids.size()), N = 64, B = 20, L = s.length;
  const size_t P = s.num_params();
  std::vector<float> params(S * P), x(size_t(S) * N * L);
  std::vector<int32_t> labels(N), batch(size_t(S) * B);
  for (int i = 0; i < N; ++i) labels[i] = i % s.classes;
  for (int k = 0; k < S; ++k) {
    convbase_init(s, 99, seed_ids[k], params.data() + k * P);
    const std::vector<float> xi = to_float(random_values(size_t(N) * L, 1000 + seed_ids[k]));
    std::copy(xi.begin(), xi.end(), x.begin() + size_t(k) * N * L);
  }
  auto backend = make_backend("cpu", threads);
  backend->reset(s, S, params.data(), AdamConfig{});
  backend->set_train_data(x.data(), labels.data(), N);
  std::vector<SeedRun> runs(S);
  std::vector<float> loss(S);
  for (int step = 0; step < steps; ++step) {
    for (int k = 0; k < S; ++k) {
      RngStream rng(99, seed_ids[k], Purpose::batch_order, uint64_t(step) * 1000);
      for (int i = 0; i < B; ++i) batch[size_t(k) * B + i] = int32_t(rng.below(N));
    }
    backend->train_step(batch.data(), B, 1e-2f, loss.data());
    for (int k = 0; k < S; ++k) runs[k].loss.push_back(loss[k]);
  }
  backend->get_params(params.data());
  for (int k = 0; k < S; ++k) runs[k].params.assign(params.begin() + k * P, params.begin() + (k + 1) * P);
  return runs;
}

TEST(CpuBackend, SeedResultsIndependentOfThreadsAndOtherSeeds) {
  const std::vector<SeedRun> two = run_seeds({5, 2}, 1, 5);
  const std::vector<SeedRun> eight = run_seeds({0, 1, 2, 3, 4, 5, 6, 7}, 2, 5);
  for (const auto& [k2, k8] : {std::pair<int, int>{0, 5}, std::pair<int, int>{1, 2}}) {
    ASSERT_EQ(two[k2].params.size(), eight[k8].params.size());
    EXPECT_EQ(0, std::memcmp(two[k2].params.data(), eight[k8].params.data(), two[k2].params.size() * sizeof(float)))
        << "seed " << k8 << ": parameters differ";
    EXPECT_EQ(0, std::memcmp(two[k2].loss.data(), eight[k8].loss.data(), two[k2].loss.size() * sizeof(float)))
        << "seed " << k8 << ": losses differ";
  }
  // And the seeds really trained (the parameters moved).
  std::vector<float> init(two[0].params.size());
  convbase_init(ConvBaseShape{6, 40, 10}, 99, 5, init.data());
  EXPECT_NE(0, std::memcmp(init.data(), two[0].params.data(), init.size() * sizeof(float)));
}

TEST(CpuBackend, TrainStepIsForwardLossBackwardAdam) {
  // Two backend steps equal the same steps done by hand with the convbase functions, bit for bit.
  const ConvBaseShape s{5, 40, 10};
  const int S = 3, N = 30, B = 7, L = s.length, K = s.classes;
  const size_t P = s.num_params();
  std::vector<float> params(S * P), x = to_float(random_values(size_t(S) * N * L, 18));
  std::vector<int32_t> labels(N), batch(size_t(S) * B);
  for (int i = 0; i < N; ++i) labels[i] = (i * 7) % K;
  for (int k = 0; k < S; ++k) convbase_init(s, 4, uint32_t(k), params.data() + k * P);
  const AdamConfig adam{0.8f, 0.99f, 1e-6f};
  auto backend = make_backend("cpu", 2);
  backend->reset(s, S, params.data(), adam);
  backend->set_train_data(x.data(), labels.data(), N);

  std::vector<float> m(S * P, 0.0f), v(S * P, 0.0f), loss(S), xb(size_t(B) * L), logits(size_t(B) * K),
      dlogits(size_t(B) * K), grads(P);
  std::vector<int32_t> yb(B);
  ConvBaseWorkspace ws(s, B);
  for (int t = 1; t <= 2; ++t) {
    for (size_t i = 0; i < batch.size(); ++i) batch[i] = int32_t((i * 11 + t * 5) % N);
    const float lr = 0.01f * t;
    backend->train_step(batch.data(), B, lr, loss.data());
    for (int k = 0; k < S; ++k) {
      for (int i = 0; i < B; ++i) {
        const int row = batch[size_t(k) * B + i];
        std::copy(&x[(size_t(k) * N + row) * L], &x[(size_t(k) * N + row + 1) * L], &xb[size_t(i) * L]);
        yb[i] = labels[row];
      }
      float* p = params.data() + k * P;
      convbase_forward(s, p, xb.data(), B, logits.data(), ws);
      const float l = softmax_cross_entropy(logits.data(), yb.data(), nullptr, B, K, dlogits.data());
      convbase_backward(s, p, xb.data(), dlogits.data(), B, grads.data(), ws);
      adam_step(p, grads.data(), m.data() + k * P, v.data() + k * P, P, lr, adam.beta1, adam.beta2, adam.eps, t);
      EXPECT_EQ(l, loss[k]) << "step " << t << " seed " << k;
    }
  }
  std::vector<float> got(S * P);
  backend->get_params(got.data());
  EXPECT_EQ(0, std::memcmp(got.data(), params.data(), got.size() * sizeof(float)));
}

TEST(CpuBackend, TrainsASeparableProblemAndPredicts) {
  // Three classes, each a bump at its own place on a noisy line: separable, easy for the CNN.
  const ConvBaseShape s{8, 40, 3};
  const int S = 2, N = 300, B = 32, L = s.length, K = s.classes;
  std::vector<float> x(size_t(S) * N * L);
  std::vector<int32_t> labels(N);
  RngStream rng(5, 0, Purpose::spurious_sample_noise);
  for (int i = 0; i < N; ++i) {
    labels[i] = i % K;
    for (int p = 0; p < L; ++p) {
      const float bump = std::abs(p - (8 + 12 * labels[i])) <= 2 ? 1.5f : 0.0f;
      for (int k = 0; k < S; ++k) x[(size_t(k) * N + i) * L + p] = bump + 0.3f * rng.normal();
    }
  }
  const size_t P = s.num_params();
  std::vector<float> params(S * P);
  for (int k = 0; k < S; ++k) convbase_init(s, 8, uint32_t(k), params.data() + k * P);
  auto backend = make_backend("cpu", 2);
  backend->reset(s, S, params.data(), AdamConfig{});
  backend->set_train_data(x.data(), labels.data(), N);
  std::vector<int32_t> batch(size_t(S) * B);
  std::vector<float> loss(S), first(S), last(S, 0.0f);
  const int steps = 200;
  for (int step = 0; step < steps; ++step) {
    for (int32_t& r : batch) r = int32_t(rng.below(N));
    backend->train_step(batch.data(), B, 1e-2f, loss.data());
    if (step == 0) first = loss;
    if (step >= steps - 10)
      for (int k = 0; k < S; ++k) last[k] += loss[k] / 10;
  }
  for (int k = 0; k < S; ++k) {
    EXPECT_TRUE(std::isfinite(last[k]));
    EXPECT_GT(first[k], 0.7) << "chance is ln 3";
    EXPECT_LT(last[k], 0.1 * first[k]) << "seed " << k << ": loss " << first[k] << " -> " << last[k];
  }

  // predict: per-seed inputs, several chunks, the same bits as a one-sample forward pass.
  std::vector<float> logits(size_t(S) * N * K);
  backend->predict(x.data(), N, true, logits.data());
  backend->get_params(params.data());
  ConvBaseWorkspace ws(s, 1);
  int correct = 0;
  for (int k = 0; k < S; ++k)
    for (int i = 0; i < N; ++i) {
      const float* z = &logits[(size_t(k) * N + i) * K];
      correct += int(std::max_element(z, z + K) - z) == labels[i];
      if (i % 37 == 0) {
        float one[3];
        convbase_forward(s, params.data() + k * P, &x[(size_t(k) * N + i) * L], 1, one, ws);
        EXPECT_EQ(0, std::memcmp(one, z, sizeof(one))) << "seed " << k << " sample " << i;
      }
    }
  EXPECT_GT(correct, int(0.95 * S * N));
  // Shared inputs: every seed sees seed 0's x.
  std::vector<float> shared(size_t(S) * N * K);
  backend->predict(x.data(), N, false, shared.data());
  EXPECT_EQ(0, std::memcmp(shared.data(), logits.data(), sizeof(float) * N * K));  // seed 0 matches per-seed
}

TEST(CpuBackend, PredictChunksMatchForC256) {
  // Big channel counts use small predict chunks; the logits must not depend on the chunking.
  const ConvBaseShape s{256, 40, 10};
  std::vector<float> params(s.num_params());
  convbase_init(s, 3, 0, params.data());
  const int N = 70;
  const std::vector<float> x = to_float(random_values(size_t(N) * s.length, 17));
  auto backend = make_backend("cpu", 2);
  backend->reset(s, 1, params.data(), AdamConfig{});
  std::vector<float> logits(size_t(N) * s.classes), direct(size_t(N) * s.classes);
  backend->predict(x.data(), N, false, logits.data());
  ConvBaseWorkspace ws(s, N);
  convbase_forward(s, params.data(), x.data(), N, direct.data(), ws);
  EXPECT_EQ(0, std::memcmp(logits.data(), direct.data(), sizeof(float) * logits.size()));
  for (float z : logits) ASSERT_TRUE(std::isfinite(z));
}

}  // namespace
