// The backend's features and saliency against the model they come from.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "core/backend.h"
#include "core/metrics.h"
#include "core/philox.h"
#include "cpu/convbase.h"
#include "study/backends.h"
#include "cuda_test_util.h"

namespace {

using namespace sb;

struct Fixture {
  ConvBaseShape shape{6, 40, 10};
  int S = 3, N = 37;
  std::vector<float> params, x;
  std::vector<int32_t> y;
  Fixture() {
    const size_t P = shape.num_params();
    params.resize(S * P);
    for (int s = 0; s < S; ++s) convbase_init(shape, 11, s, params.data() + s * P);
    RngStream rng(5, 0, Purpose::init_weights, 99);
    x.resize(size_t(S) * N * shape.length);
    for (float& v : x) v = float(rng.normal());
    for (int i = 0; i < N; ++i) y.push_back(int32_t(rng.below(10)));
  }
};

TEST(Backend, FeaturesThroughTheHeadGiveTheLogits) {
  Fixture f;
  auto be = make_backend("cpu", 2);
  be->reset(f.shape, f.S, f.params.data(), AdamConfig{});
  const int F = f.shape.feature_dim(), K = f.shape.classes;
  std::vector<float> z(size_t(f.S) * f.N * F), logits(size_t(f.S) * f.N * K);
  be->features(f.x.data(), f.N, true, z.data());
  be->predict(f.x.data(), f.N, true, logits.data());
  const size_t P = f.shape.num_params();
  for (int s = 0; s < f.S; ++s) {
    const float* W = f.params.data() + s * P + f.shape.off_wh();
    const float* b = f.params.data() + s * P + f.shape.off_bh();
    for (int i = 0; i < f.N; ++i) {
      const float* zi = z.data() + (size_t(s) * f.N + i) * F;
      for (int k = 0; k < F; ++k) ASSERT_GE(zi[k], 0.0f);  // post-ReLU
      for (int j = 0; j < K; ++j) {
        double acc = b[j];
        for (int k = 0; k < F; ++k) acc += double(W[size_t(j) * F + k]) * zi[k];
        EXPECT_NEAR(acc, logits[(size_t(s) * f.N + i) * K + j], 1e-4 * (1 + std::fabs(acc)));
      }
    }
  }
}

TEST(Backend, SaliencyMatchesFiniteDifferencesOfTheTrueLogit) {
  Fixture f;
  auto be = make_backend("cpu", 2);
  be->reset(f.shape, f.S, f.params.data(), AdamConfig{});
  const int L = f.shape.length, K = f.shape.classes;
  std::vector<float> sal(size_t(f.S) * f.N * L);
  be->saliency(f.x.data(), f.y.data(), f.N, true, sal.data());
  ConvBaseWorkspace ws(f.shape, 1);
  std::vector<float> logit(K);
  const size_t P = f.shape.num_params();
  int checked = 0;
  for (int s = 0; s < f.S; ++s)
    for (int i = 0; i < f.N; i += 6)
      for (int p = 0; p < L; p += 3) {
        std::vector<float> xi(f.x.begin() + (size_t(s) * f.N + i) * L, f.x.begin() + (size_t(s) * f.N + i + 1) * L);
        auto logit_y = [&](float delta) {
          std::vector<float> xx = xi;
          xx[p] += delta;
          convbase_forward(f.shape, f.params.data() + s * P, xx.data(), 1, logit.data(), ws);
          return double(logit[f.y[i]]);
        };
        // Two step sizes: a ReLU kink inside one of them spoils that difference, rarely both.
        auto fd = [&](double h) { return std::fabs((logit_y(float(h)) - logit_y(float(-h))) / (2 * h)); };
        const double got = sal[(size_t(s) * f.N + i) * L + p], fd1 = fd(1e-2), fd2 = fd(2e-3);
        ASSERT_FALSE(std::isnan(got));
        const bool ok = std::fabs(got - fd1) <= 1e-3 + 2e-2 * fd1 || std::fabs(got - fd2) <= 3e-3 + 2e-2 * fd2;
        EXPECT_TRUE(ok) << "seed " << s << " sample " << i << " feature " << p << ": " << got << " vs " << fd1 << ", " << fd2;
        ++checked;
      }
  EXPECT_GT(checked, 100);
}

// evaluate_set is evaluate_logits of predict's logits, on a copy of the inputs taken when the set was added; ids
// count from 0 and reset() drops the sets.
TEST(Backend, EvalSetsScoreLikePredict) {
  Fixture f;
  auto be = make_backend("cpu", 2);
  be->reset(f.shape, f.S, f.params.data(), AdamConfig{});
  const int K = f.shape.classes;
  std::vector<float> x = f.x;
  const int per_seed = be->add_set(x.data(), f.y.data(), f.N, true);
  const int shared = be->add_set(x.data(), f.y.data(), f.N, false);
  EXPECT_EQ(per_seed, 0);
  EXPECT_EQ(shared, 1);
  std::fill(x.begin(), x.end(), 0.0f);  // the backend kept its own copy
  for (const bool ps : {true, false}) {
    std::vector<float> logits(size_t(f.S) * f.N * K);
    be->predict(f.x.data(), f.N, ps, logits.data());
    std::vector<SetMetrics> got(size_t(f.S));
    be->evaluate_set(ps ? per_seed : shared, got.data());
    for (int s = 0; s < f.S; ++s) {
      const SetMetrics want = evaluate_logits(logits.data() + size_t(s) * f.N * K, f.y.data(), f.N, K);
      EXPECT_EQ(got[s].accuracy, want.accuracy);
      EXPECT_EQ(got[s].loss, want.loss);
      EXPECT_EQ(got[s].worst_group_accuracy, want.worst_group_accuracy);
      ASSERT_EQ(got[s].per_group_accuracy.size(), size_t(K));
      for (int k = 0; k < K; ++k)
        EXPECT_TRUE(got[s].per_group_accuracy[k] == want.per_group_accuracy[k] ||
                    (std::isnan(got[s].per_group_accuracy[k]) && std::isnan(want.per_group_accuracy[k])));
    }
  }
  // kTrainingSet: the training data of set_train_data, per seed.
  be->set_train_data(f.x.data(), f.y.data(), f.N);
  std::vector<float> logits(size_t(f.S) * f.N * K);
  be->predict(f.x.data(), f.N, true, logits.data());
  std::vector<SetMetrics> train(size_t(f.S));
  be->evaluate_set(Backend::kTrainingSet, train.data());
  for (int s = 0; s < f.S; ++s) {
    const SetMetrics want = evaluate_logits(logits.data() + size_t(s) * f.N * K, f.y.data(), f.N, K);
    EXPECT_EQ(train[s].accuracy, want.accuracy);
    EXPECT_EQ(train[s].loss, want.loss);
  }
  be->reset(f.shape, f.S, f.params.data(), AdamConfig{});
  std::vector<SetMetrics> m(size_t(f.S));
  EXPECT_THROW(be->evaluate_set(per_seed, m.data()), std::out_of_range);
  EXPECT_THROW(be->evaluate_set(Backend::kTrainingSet, m.data()), std::logic_error);
}

TEST(Backend, KeptSetsMatchTheCpuTransform) {
  auto be = make_backend("cpu", 2);
  sb::test_util::expect_kept_sets_work(*be, 0.0);
}

TEST(Backend, SharedInputsEqualPerSeedCopies) {
  Fixture f;
  auto be = make_backend("cpu", 2);
  be->reset(f.shape, f.S, f.params.data(), AdamConfig{});
  const int L = f.shape.length;
  std::vector<float> copies(size_t(f.S) * f.N * L);
  for (int s = 0; s < f.S; ++s) std::copy(f.x.begin(), f.x.begin() + size_t(f.N) * L, copies.begin() + size_t(s) * f.N * L);
  std::vector<float> a(size_t(f.S) * f.N * L), b(a.size());
  be->saliency(f.x.data(), f.y.data(), f.N, false, a.data());
  be->saliency(copies.data(), f.y.data(), f.N, true, b.data());
  EXPECT_EQ(a, b);
}

}  // namespace

// Fewer seeds than threads splits every layer over the threads: the numbers must not change.
TEST(Backend, LayerThreadsGiveTheSameTraining) {
  for (int C : {6, 72}) {  // below and above the width where layers split over threads
    ConvBaseShape shape{C, 40, 10};
    const int S = 3, N = 64, B = 20;
    const size_t P = shape.num_params();
    std::vector<float> params(S * P), x(size_t(S) * N * 40);
    for (int s = 0; s < S; ++s) convbase_init(shape, 3, s, params.data() + s * P);
    RngStream rng(8, 0, Purpose::init_weights, 7);
    for (float& v : x) v = float(rng.normal());
    std::vector<int32_t> y(N), rows(size_t(S) * B);
    for (int& v : y) v = int(rng.below(10));
    for (int32_t& r : rows) r = int32_t(rng.below(N));
    auto train = [&](int seeds, int threads) {
      auto be = make_backend("cpu", threads);
      be->reset(shape, seeds, params.data(), AdamConfig{});
      be->set_train_data(x.data(), y.data(), N);
      std::vector<float> loss(seeds), out(seeds * P);
      for (int step = 0; step < 3; ++step) be->train_step(rows.data(), B, 1e-2f, loss.data());
      be->get_params(out.data());
      out.resize(P);  // seed 0
      return out;
    };
    const std::vector<float> split = train(1, 2), by_seed = train(3, 2), one = train(1, 1);
    EXPECT_EQ(split, by_seed) << "C " << C;
    EXPECT_EQ(split, one) << "C " << C;
    EXPECT_NE(split, std::vector<float>(params.begin(), params.begin() + P));  // it trained
  }
}

// With positive weights, biases and inputs every ReLU is active, so ConvBase is an affine map x -> A x + c:
// the saliency of sample i must be |A[y_i, :]| exactly (up to rounding), whatever the input.
TEST(Backend, SaliencyOfALinearModelIsTheAbsoluteWeightRow) {
  ConvBaseShape shape{4, 40, 10};
  const size_t P = shape.num_params();
  std::vector<float> params(P);
  RngStream rng(21, 0, Purpose::init_weights, 5);
  for (float& w : params) w = float(0.05 + 0.1 * rng.uniform());
  const int N = 5, L = 40, K = 10;
  std::vector<float> x(size_t(N) * L);
  for (float& v : x) v = float(0.1 + rng.uniform());
  std::vector<int32_t> y = {0, 3, 7, 9, 3};
  // Head weights of mixed sign: the map stays affine (no ReLU after the head) and |.| matters.
  for (size_t i = shape.off_wh(); i < shape.off_bh(); ++i) params[i] = float(rng.uniform() - 0.5);
  auto be = make_backend("cpu", 1);
  be->reset(shape, 1, params.data(), AdamConfig{});
  std::vector<float> sal(size_t(N) * L);
  be->saliency(x.data(), y.data(), N, false, sal.data());
  // A column by column in double: logits(x0 + e_p) - logits(x0), with x0 = 0.5 everywhere (all units active).
  ConvBaseWorkspace ws(shape, 1);
  std::vector<float> base(K), moved(K), x0(L, 0.5f);
  convbase_forward(shape, params.data(), x0.data(), 1, base.data(), ws);
  for (int p = 0; p < L; ++p) {
    std::vector<float> xp = x0;
    xp[p] += 1.0f;
    convbase_forward(shape, params.data(), xp.data(), 1, moved.data(), ws);
    for (int i = 0; i < N; ++i) {
      const double a = std::fabs(double(moved[y[i]]) - base[y[i]]), got = sal[size_t(i) * L + p];
      EXPECT_NEAR(got, a, 1e-5 + 1e-4 * a) << "sample " << i << " feature " << p;
    }
  }
}
