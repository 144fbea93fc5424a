// Helpers shared by the device backends' tests (test_cuda.cpp, test_cudnn.cpp): error measures, a small training
// problem, training it on any backend, and the ten-step comparison with the CPU. Host code only (no CUDA headers).
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <vector>

#include "core/backend.h"
#include "core/philox.h"
#include "cpu/convbase.h"
#include "cpu/act_buffer.h"
#include "cpu/simd.h"
#include "cpu/spurious.h"
#include "study/backends.h"

// Skips a GPU test, with the reason, on a machine without a CUDA device: `what` ("the cudnn backend is") is only
// compared with the CPU where a GPU runs it (CI runs it on the CPU emulation, tests/emu/).
#define SB_SKIP_WITHOUT_CUDA(what) \
  if (sb::cuda_device_count() == 0)  \
  GTEST_SKIP() << "no CUDA device on this machine: " << (what) << " only compared with the CPU on a GPU"

namespace sb::test_util {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

inline std::vector<float> random_floats(size_t n, uint64_t key, float lo = -1.0f, float hi = 1.0f) {
  RngStream rng(key, 0, Purpose::init_weights, 4242);
  std::vector<float> v(n);
  for (float& x : v) x = rng.uniform(lo, hi);
  return v;
}

inline std::vector<int32_t> random_ints(size_t n, uint64_t key, int below) {
  RngStream rng(key, 1, Purpose::init_weights, 4242);
  std::vector<int32_t> v(n);
  for (int32_t& x : v) x = int32_t(rng.below(uint32_t(below)));
  return v;
}

inline size_t count_nan(const std::vector<float>& v) {
  return size_t(std::count_if(v.begin(), v.end(), [](float x) { return std::isnan(x); }));
}

// Normwise relative error max_i |got_i - want_i| / max_i |want_i|; any NaN in got gives infinity.
inline double rel_error(const float* got, const float* want, size_t n) {
  double diff = 0.0, scale = 0.0;
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(got[i])) return std::numeric_limits<double>::infinity();
    diff = std::max(diff, std::fabs(double(got[i]) - double(want[i])));
    scale = std::max(scale, std::fabs(double(want[i])));
  }
  return scale > 0.0 ? diff / scale : diff;
}
inline double rel_error(const std::vector<float>& got, const std::vector<float>& want) {
  EXPECT_EQ(got.size(), want.size());
  return rel_error(got.data(), want.data(), std::min(got.size(), want.size()));
}

// Rows (one seed's one sample each) of a gradient through ReLUs, computed by a library that sums in another order
// than the CPU (cuDNN): where a pre-activation lies within rounding of 0 the two can take different sides of a ReLU,
// and that one sample's gradient moves by a few percent (seen: 2.3% for one of 46 rows at C = 256). So every row must
// match to `tol` except at most `max_flips` rows, which must still match to 10%. A layout or indexing bug moves
// every row, or one row by far more; a NaN fails.
inline void expect_rows_close_up_to_relu_flips(const float* got, const float* want, int rows, int width, double tol,
                                               int max_flips) {
  int flips = 0;
  for (int r = 0; r < rows; ++r) {
    const double e = rel_error(got + size_t(r) * width, want + size_t(r) * width, size_t(width));
    if (e <= tol) continue;
    ++flips;
    EXPECT_LE(e, 0.1) << "row " << r << " is off by more than a ReLU flip moves it";
  }
  EXPECT_LE(flips, max_flips) << flips << " of " << rows << " rows off by more than " << tol
                              << ": more than rare ReLU flips";
}

inline size_t count_unequal(const std::vector<float>& a, const std::vector<float>& b) {
  size_t n = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) n += !(a[i] == b[i]);
  return n + std::max(a.size(), b.size()) - std::min(a.size(), b.size());
}

// A training problem for up to S seeds: initial parameters, per-seed inputs, shared labels, and the batch rows
// of every step. first(S') is the same problem restricted to its first S' seeds.
struct Problem {
  Problem(const ConvBaseShape& shape_, int S_, int N_, int B_, int steps) : shape(shape_), S(S_), N(N_), B(B_) {
    const size_t P = shape.num_params();
    params.resize(size_t(S) * P);
    for (int s = 0; s < S; ++s) convbase_init(shape, 11, uint32_t(s), params.data() + s * P);
    RngStream rng(5, 0, Purpose::spurious_sample_noise, 17);
    x.resize(size_t(S) * N * shape.length);
    for (float& v : x) v = rng.normal();
    for (int i = 0; i < N; ++i) labels.push_back(int32_t(rng.below(uint32_t(shape.classes))));
    for (int t = 0; t < steps; ++t) {
      std::vector<int32_t> rows(size_t(S) * B);
      for (int32_t& r : rows) r = int32_t(rng.below(uint32_t(N)));
      batches.push_back(rows);
    }
  }
  Problem first(int S2) const {
    Problem q = *this;
    const size_t P = shape.num_params(), L = shape.length;
    q.S = S2;
    q.params.resize(S2 * P);
    q.x.resize(S2 * N * L);
    for (auto& rows : q.batches) rows.resize(size_t(S2) * B);
    return q;
  }
  ConvBaseShape shape;
  int S, N, B;
  std::vector<float> params, x;
  std::vector<int32_t> labels;
  std::vector<std::vector<int32_t>> batches;
};

struct Trained {
  std::vector<float> params;  // (S, P) after the steps
  std::vector<float> losses;  // (steps, S): each step's loss (NaN where the step did not ask for it)
};

// Trains with the problem's batches; the loss is asked for on every step with (t % loss_every == 0).
inline Trained train(Backend& be, const Problem& pr, float lr, const AdamConfig& adam = {}, int loss_every = 1) {
  be.reset(pr.shape, pr.S, pr.params.data(), adam);
  be.set_train_data(pr.x.data(), pr.labels.data(), pr.N);
  Trained out;
  out.losses.assign(pr.batches.size() * pr.S, kNaN);
  for (size_t t = 0; t < pr.batches.size(); ++t)
    be.train_step(pr.batches[t].data(), pr.B, lr, t % loss_every == 0 ? out.losses.data() + t * pr.S : nullptr);
  out.params.resize(pr.params.size());
  be.get_params(out.params.data());
  return out;
}

// Per parameter tensor of every seed: the normwise relative error of a against b, and of the updates (a - p0)
// against (b - p0).
inline void expect_params_close(const ConvBaseShape& shape, int S, const std::vector<float>& p0,
                                const std::vector<float>& a, const std::vector<float>& b, double tol_params,
                                double tol_updates) {
  struct Tensor {
    const char* name;
    size_t off, size;
  };
  const size_t C = shape.channels;
  const Tensor tensors[] = {{"conv1.weight", shape.off_w1(), C * ConvBaseShape::k1},
                            {"conv1.bias", shape.off_b1(), C},
                            {"conv2.weight", shape.off_w2(), C * C * ConvBaseShape::k2},
                            {"conv2.bias", shape.off_b2(), C},
                            {"conv3.weight", shape.off_w3(), C * C * ConvBaseShape::k3},
                            {"conv3.bias", shape.off_b3(), C},
                            {"head.weight", shape.off_wh(), size_t(shape.classes) * shape.feature_dim()},
                            {"head.bias", shape.off_bh(), size_t(shape.classes)}};
  const size_t P = shape.num_params();
  for (int s = 0; s < S; ++s)
    for (const Tensor& t : tensors) {
      const size_t o = s * P + t.off;
      EXPECT_LE(rel_error(a.data() + o, b.data() + o, t.size), tol_params) << "seed " << s << " " << t.name;
      std::vector<float> da(t.size), db(t.size);
      for (size_t i = 0; i < t.size; ++i) da[i] = a[o + i] - p0[o + i], db[i] = b[o + i] - p0[o + i];
      EXPECT_LE(rel_error(da, db), tol_updates) << "seed " << s << " " << t.name << " (updates)";
    }
}

// The ten-step comparison of a device backend with the CPU. The learning rate is small and Adam's eps larger than
// the default so that the comparison is not at the mercy of two float-rounding effects that have nothing to do with
// correctness: Adam's first step moves every parameter by about +-lr whatever the gradient's size, so a gradient
// within rounding of zero can move the parameter either way; and a pre-activation within rounding of zero can pass
// its gradient on one side and not the other. Both are rare (about one element in 10^6 per step), but either one
// moves a few parameters by a good fraction of lr, far beyond 1e-4.
constexpr float kTenStepLr = 1e-4f;
inline AdamConfig ten_step_adam() { return AdamConfig{0.9f, 0.999f, 1e-6f}; }
constexpr int kTenStepLossEvery = 2;  // the device is asked for the loss on even steps only: nullptr must work too

inline Trained train_ten_steps(Backend& be, const Problem& pr, int loss_every) {
  return train(be, pr, kTenStepLr, ten_step_adam(), loss_every);
}

// The CPU side of a ten-step comparison. The tolerances below hold because on an FMA level (AVX2, AVX-512) the CPU's
// forward pass and input gradients round exactly as our device kernels do, so no pre-activation can flip. Under
// SB_SIMD=sse2 (two roundings per term) one can: forced to SSE2 on an AVX-512 Xeon, TenStepsMatchCpuC256's seed moved
// a parameter 1.35e-4 (more than lr) away from the AVX-512 run in ten steps, 3.3e-3 of the update norm, where the
// AVX2 run was bitwise equal. So the reference trains on an FMA level whenever the CPU has one; the SSE2 kernels
// themselves are checked against double sums in test_convbase.cpp.
inline Trained train_ten_steps_on_cpu(const Problem& pr) {
  const SimdLevel level = simd_level();
  if (level == SimdLevel::sse2 && simd_level_supported(SimdLevel::avx2)) set_simd_level(SimdLevel::avx2);
  auto cpu = make_backend("cpu", 2);
  Trained want = train_ten_steps(*cpu, pr, 1);
  set_simd_level(level);
  return want;
}

// got (trained with loss_every) against want: parameters within 1e-4 and updates within 1e-3 relative per tensor,
// no NaN, and the losses of the steps both asked for.
inline void expect_trained_close(const Problem& pr, const Trained& got, const Trained& want, int loss_every) {
  EXPECT_EQ(count_nan(got.params), 0u);
  expect_params_close(pr.shape, pr.S, pr.params, got.params, want.params, 1e-4, 1e-3);
  for (size_t t = 0; t < pr.batches.size(); t += size_t(loss_every))
    for (int s = 0; s < pr.S; ++s) {
      const float w = want.losses[t * pr.S + s];
      EXPECT_NEAR(got.losses[t * pr.S + s], w, 1e-5 * (1.0 + std::fabs(w))) << "step " << t << " seed " << s;
    }
}

// Ten steps on the CPU and on `device` agree.
inline void expect_ten_steps_match_cpu(Backend& device, const ConvBaseShape& shape, int S, int N, int B) {
  const Problem pr(shape, S, N, B, 10);
  const Trained want = train_ten_steps_on_cpu(pr);
  const Trained got = train_ten_steps(device, pr, kTenStepLossEvery);
  expect_trained_close(pr, got, want, kTenStepLossEvery);
}

// The calls every backend must refuse, in order: get_params before reset, a step before training data, a label
// out of range, a batch row out of range, a batch larger than the training set, an evaluation set with a bad label
// or none at all, an evaluation set id not handed out since the last reset, the training set scored before there is
// one, S = 0 (after which the backend still works); and one good step.
inline void expect_rejects_bad_calls(Backend& be) {
  const ConvBaseShape shape{4, 40, 10};
  std::vector<float> params(2 * shape.num_params(), 0.01f), out(1000);
  EXPECT_THROW(be.get_params(params.data()), std::logic_error);  // before reset
  EXPECT_THROW(be.predict(params.data(), 1, false, out.data()), std::logic_error);
  be.reset(shape, 2, params.data(), AdamConfig{});
  std::vector<SetMetrics> metrics(2);
  EXPECT_THROW(be.evaluate_set(Backend::kTrainingSet, metrics.data()), std::logic_error);
  const std::vector<int32_t> rows(2 * 3, 0);
  EXPECT_THROW(be.train_step(rows.data(), 3, 1e-2f, nullptr), std::logic_error);  // before set_train_data
  const std::vector<float> x(2 * 5 * 40, 0.5f);
  std::vector<int32_t> labels(5, 1);
  labels[3] = 10;
  EXPECT_THROW(be.set_train_data(x.data(), labels.data(), 5), std::invalid_argument);
  labels[3] = 2;
  be.set_train_data(x.data(), labels.data(), 5);
  std::vector<int32_t> bad = rows;
  bad[4] = 5;
  EXPECT_THROW(be.train_step(bad.data(), 3, 1e-2f, nullptr), std::out_of_range);
  EXPECT_THROW(be.train_step(rows.data(), 6, 1e-2f, nullptr), std::invalid_argument);  // B > N
  float loss[2] = {kNaN, kNaN};
  be.train_step(rows.data(), 3, 1e-2f, loss);
  EXPECT_FALSE(std::isnan(loss[0]) || std::isnan(loss[1]));
  be.evaluate_set(Backend::kTrainingSet, metrics.data());
  EXPECT_EQ(metrics[1].per_group_accuracy.size(), size_t(shape.classes));
  const int id = be.add_set(x.data(), labels.data(), 5, true);
  EXPECT_EQ(id, 1) << "the training set of set_train_data is kept set 0";
  be.evaluate_set(id, metrics.data());
  EXPECT_THROW(be.evaluate_set(id + 1, metrics.data()), std::out_of_range);
  EXPECT_THROW(be.add_set(x.data(), labels.data(), 0, true), std::invalid_argument);
  labels[0] = -1;
  EXPECT_THROW(be.saliency(x.data(), labels.data(), 5, false, out.data()), std::invalid_argument);
  EXPECT_THROW(be.add_set(x.data(), labels.data(), 5, false), std::invalid_argument);
  be.reset(shape, 2, params.data(), AdamConfig{});
  EXPECT_THROW(be.evaluate_set(id, metrics.data()), std::out_of_range) << "reset() drops the kept sets";
  EXPECT_THROW(be.reset(shape, 0, params.data(), AdamConfig{}), std::invalid_argument);
  EXPECT_THROW(be.reset(shape, 2, nullptr, AdamConfig{}), std::invalid_argument);
  be.predict(x.data(), 5, false, out.data());  // a rejected reset leaves the model as it was
  std::vector<float> back(params.size(), kNaN);
  be.get_params(back.data());
  EXPECT_EQ(count_unequal(back, params), 0u);
}

// Kept sets (core/backend.h) on `be`, any backend: add_spurious_set's three sets, made from a shared kept set, hold
// what cpu/spurious.h makes for seed indices seed0 + s (planted classes exactly; the inputs seen through set_features
// against features of the host-made inputs on the same backend, to `tol`: 0 on the CPU, a device's logf/cosf may
// move a noise value by an ulp); evaluate_set's predictions are the first maximum of predict's logits; training on a
// shared set gives the bits of training on per-seed copies of it; load_params keeps the sets and restarts Adam as
// reset does.
inline void expect_kept_sets_work(Backend& be, double tol) {
  const ConvBaseShape shape{8, 40, 10};
  const int S = 3, N = 60, B = 12, L = shape.length, K = shape.classes, F = shape.feature_dim();
  const uint32_t seed0 = 5;
  const uint64_t base_seed = 77;
  const size_t P = shape.num_params();
  std::vector<float> params(size_t(S) * P);
  for (int s = 0; s < S; ++s) convbase_init(shape, 3, seed0 + uint32_t(s), params.data() + size_t(s) * P);
  const std::vector<float> x = random_floats(size_t(N) * L, 901, -1.0f, 2.0f);
  const std::vector<int32_t> y = random_ints(size_t(N), 902, K);
  SpuriousConfig cfg;
  be.reset(shape, S, params.data(), AdamConfig{});
  const int clean = be.add_set(x.data(), y.data(), N, false);
  for (const NoiseDraw draw : {NoiseDraw::per_class, NoiseDraw::per_sample})
  for (const SpuriousSetKind kind : {SpuriousSetKind::train, SpuriousSetKind::aligned, SpuriousSetKind::conflicting}) {
    SCOPED_TRACE("noise " + to_string(draw) + ", set kind " + std::to_string(int(kind)));
    cfg.draw = draw;  // per class: the study's default; per sample: each row its own sub-stream
    std::vector<int32_t> planted(size_t(S) * N, -7), want_planted(planted.size());
    const int id = be.add_spurious_set(kind, cfg, clean, base_seed, seed0, planted.data());
    std::vector<float> xs(size_t(S) * N * L);
    for (int s = 0; s < S; ++s) {
      const SpuriousSet one = make_spurious_set(kind, cfg, x.data(), y.data(), N, L, base_seed, seed0 + uint32_t(s));
      std::copy(one.x.begin(), one.x.end(), xs.begin() + size_t(s) * N * L);
      std::copy(one.planted_class.begin(), one.planted_class.end(), want_planted.begin() + size_t(s) * N);
    }
    EXPECT_EQ(planted, want_planted);
    EXPECT_GT(std::count_if(want_planted.begin(), want_planted.end(), [](int32_t k) { return k >= 0; }), S * N / 2);
    std::vector<float> got(size_t(S) * N * F, kNaN), want(got.size());
    be.set_features(id, got.data());
    be.features(xs.data(), N, true, want.data());
    EXPECT_LE(rel_error(got, want), tol);
    std::vector<SetMetrics> m(static_cast<size_t>(S));
    std::vector<int8_t> pred(size_t(S) * N, -1);
    be.evaluate_set(id, m.data(), pred.data());
    std::vector<float> logits(size_t(S) * N * K);
    be.predict(xs.data(), N, true, logits.data());
    for (size_t i = 0; i < pred.size(); ++i)
      ASSERT_EQ(pred[i], predicted_class(logits.data() + i * K, K)) << "seed " << i / N << " sample " << i % N;
  }
  EXPECT_THROW(be.add_spurious_set(SpuriousSetKind::train, cfg, clean + 1, base_seed, seed0, nullptr),
               std::invalid_argument) << "a per-seed set is no clean source";

  // Training on the shared set equals training on S copies of it; load_params restarts from other parameters on the
  // kept training set, as a reset with the same sets would.
  std::vector<int32_t> rows(size_t(S) * B);
  RngStream rng(9, 0, Purpose::batch_order, 0);
  for (int32_t& r : rows) r = int32_t(rng.below(uint32_t(N)));
  auto three_steps = [&] {
    for (int t = 0; t < 3; ++t) be.train_step(rows.data(), B, 1e-2f, nullptr);
    std::vector<float> out(params.size(), kNaN);
    be.get_params(out.data());
    return out;
  };
  be.reset(shape, S, params.data(), AdamConfig{});
  be.train_on(be.add_set(x.data(), y.data(), N, false));
  const std::vector<float> shared = three_steps();
  std::vector<float> copies(size_t(S) * N * L);
  for (int s = 0; s < S; ++s) std::copy(x.begin(), x.end(), copies.begin() + size_t(s) * N * L);
  be.reset(shape, S, params.data(), AdamConfig{});
  be.set_train_data(copies.data(), y.data(), N);
  EXPECT_EQ(count_unequal(three_steps(), shared), 0u) << "shared training set";
  EXPECT_GT(count_unequal(shared, params), 0u) << "the steps changed nothing";
  be.load_params(params.data());
  EXPECT_EQ(count_unequal(three_steps(), shared), 0u) << "after load_params";
  std::vector<SetMetrics> m(static_cast<size_t>(S));
  be.evaluate_set(Backend::kTrainingSet, m.data());  // still there
  EXPECT_THROW(be.load_params(nullptr), std::invalid_argument);
}

// Evaluation right after training steps that did not wait for the device sees their parameters, in two rounds of
// steps: predict (31 samples per seed, to 1e-5 relative) after the first, evaluate_set on the training set after
// the second (accuracies up to `max_flips` samples per seed, losses to 1e-5), each against the CPU backend given
// the parameters the device reports then.
inline void expect_evaluation_sees_trained_params(Backend& device, int max_flips) {
  const Problem pr(ConvBaseShape{25, 40, 10}, 3, 120, 40, 5);
  device.reset(pr.shape, pr.S, pr.params.data(), AdamConfig{});
  device.set_train_data(pr.x.data(), pr.labels.data(), pr.N);
  auto cpu = make_backend("cpu", 2);
  std::vector<float> before = pr.params, trained(pr.params.size());
  for (const bool scores : {false, true}) {
    SCOPED_TRACE(scores ? "evaluate_set" : "predict");
    for (const auto& rows : pr.batches) device.train_step(rows.data(), pr.B, 1e-2f, nullptr);
    const int N = 31, K = pr.shape.classes;
    std::vector<float> got(size_t(pr.S) * N * K, kNaN), want(got.size());
    std::vector<SetMetrics> got_m(size_t(pr.S)), want_m(size_t(pr.S));
    if (scores)
      device.evaluate_set(Backend::kTrainingSet, got_m.data());
    else
      device.predict(pr.x.data(), N, true, got.data());
    device.get_params(trained.data());
    EXPECT_GT(count_unequal(trained, before), 0u) << "the steps changed nothing";
    before = trained;
    cpu->reset(pr.shape, pr.S, trained.data(), AdamConfig{});
    if (!scores) {
      cpu->predict(pr.x.data(), N, true, want.data());
      EXPECT_LE(rel_error(got, want), 1e-5);
      continue;
    }
    cpu->set_train_data(pr.x.data(), pr.labels.data(), pr.N);
    cpu->evaluate_set(Backend::kTrainingSet, want_m.data());
    for (int s = 0; s < pr.S; ++s) {
      EXPECT_LE(std::fabs(got_m[s].accuracy - want_m[s].accuracy) * pr.N, max_flips + 1e-9) << "seed " << s;
      EXPECT_NEAR(got_m[s].loss, want_m[s].loss, 1e-5 * std::fabs(want_m[s].loss)) << "seed " << s;
    }
  }
}

// Two fresh backends, `a` and `b`, train the same seeds to the same bits (parameters and losses), and `a` again,
// having run before, too.
inline void expect_same_seed_twice_bitwise(Backend& a, Backend& b, const Problem& pr) {
  const Trained ta = train(a, pr, 1e-2f), tb = train(b, pr, 1e-2f);
  EXPECT_EQ(count_nan(ta.params), 0u);
  EXPECT_EQ(std::memcmp(ta.params.data(), tb.params.data(), ta.params.size() * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(ta.losses.data(), tb.losses.data(), ta.losses.size() * sizeof(float)), 0);
  const Trained tc = train(a, pr, 1e-2f);  // again on a backend that has run before (plans / graphs remade)
  EXPECT_EQ(std::memcmp(ta.params.data(), tc.params.data(), ta.params.size() * sizeof(float)), 0);
}

// evaluate_set on `device` against the CPU backend's, from the same parameters, on a per-seed and a shared set
// registered with both and on the training set (kTrainingSet). The CPU's is evaluate_logits of its predict (test_backend.cpp). Counts agree exactly up to
// `max_flips` samples per seed and set (0 where the device's logits are the CPU's bit for bit; a library that sums
// in another order can move a sample across a near-tie), the mean loss to 1e-5 relative.
inline void expect_eval_sets_match_cpu(Backend& device, const Problem& pr, int N, int max_flips) {
  auto cpu = make_backend("cpu", 2);
  cpu->reset(pr.shape, pr.S, pr.params.data(), AdamConfig{});
  device.reset(pr.shape, pr.S, pr.params.data(), AdamConfig{});
  cpu->set_train_data(pr.x.data(), pr.labels.data(), N);
  device.set_train_data(pr.x.data(), pr.labels.data(), N);
  for (const int set : {0, 1, 2}) {  // per seed, shared, the training set
    const bool per_seed = set != 1;
    SCOPED_TRACE(set == 0 ? "per seed" : set == 1 ? "shared" : "training set");
    const int a = set == 2 ? Backend::kTrainingSet : cpu->add_set(pr.x.data(), pr.labels.data(), N, per_seed);
    const int b = set == 2 ? Backend::kTrainingSet : device.add_set(pr.x.data(), pr.labels.data(), N, per_seed);
    std::vector<SetMetrics> want(size_t(pr.S)), got(size_t(pr.S));
    cpu->evaluate_set(a, want.data());
    device.evaluate_set(b, got.data());
    for (int s = 0; s < pr.S; ++s) {
      SCOPED_TRACE("seed " + std::to_string(s));
      EXPECT_LE(std::fabs(got[s].accuracy - want[s].accuracy) * N, max_flips + 1e-9);
      ASSERT_EQ(got[s].per_group_accuracy.size(), want[s].per_group_accuracy.size());
      for (size_t k = 0; k < want[s].per_group_accuracy.size(); ++k) {
        const double w = want[s].per_group_accuracy[k], g = got[s].per_group_accuracy[k];
        EXPECT_EQ(std::isnan(w), std::isnan(g)) << "class " << k;
        if (!std::isnan(w) && max_flips == 0) EXPECT_EQ(g, w) << "class " << k;
      }
      if (max_flips == 0) EXPECT_EQ(got[s].worst_group_accuracy, want[s].worst_group_accuracy);
      EXPECT_NEAR(got[s].loss, want[s].loss, 1e-5 * std::fabs(want[s].loss)) << "loss";
    }
  }
}

}  // namespace sb::test_util
