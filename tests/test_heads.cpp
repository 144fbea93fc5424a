// Head refits (heads.h): AFR weights and loss gradient against their formulas, the AFR descent against a plain
// gradient-descent loop, the AFR selection against a brute-force search, the L1 solver against its optimality
// conditions, known answers on data with a planted shortcut, standardization, determinism.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "core/philox.h"
#include "study/heads.h"

using namespace sb;

namespace {

struct OwnedSet {
  std::vector<float> z;
  std::vector<int32_t> y;
  int dim = 0;
  FeatureSet set() const { return {z.data(), y.data(), int(y.size()), dim}; }
};

// Data with a planted shortcut, K balanced classes (y_i = i mod K). Features:
//   [0, K)    core: onehot(y) + N(0, core_sd) per feature, predicts y up to noise
//   [K, 2K)   shortcut: 2 onehot(s) + N(0, 0.1), s = y with probability `aligned`, else a uniformly drawn class
//   [2K, ..)  noise_dims features of N(0, 1)
OwnedSet shortcut_data(int n, int K, int noise_dims, double aligned, float core_sd, uint32_t stream) {
  RngStream rng(424242, stream, Purpose::spurious_sample_noise);
  OwnedSet s;
  s.dim = 2 * K + noise_dims;
  for (int i = 0; i < n; ++i) {
    const int y = i % K;
    const int sc = rng.uniform() <= aligned ? y : int(rng.below(uint32_t(K)));
    for (int k = 0; k < K; ++k) s.z.push_back((k == y ? 1.0f : 0.0f) + core_sd * rng.normal());
    for (int k = 0; k < K; ++k) s.z.push_back((k == sc ? 2.0f : 0.0f) + 0.1f * rng.normal());
    for (int j = 0; j < noise_dims; ++j) s.z.push_back(rng.normal());
    s.y.push_back(y);
  }
  return s;
}

// How much a head uses features [begin, end): sum of |W_kj - mean_k W_kj|. Softmax ignores a shift of a feature's
// weights shared by all classes (and the gradient never makes one), so the weights are centered over the classes.
double weight_mass(const Head& h, int begin, int end) {
  double m = 0;
  for (int j = begin; j < end; ++j) {
    double mean = 0;
    for (int k = 0; k < h.classes; ++k) mean += h.W[size_t(k) * h.dim + j];
    mean /= h.classes;
    for (int k = 0; k < h.classes; ++k) m += std::fabs(h.W[size_t(k) * h.dim + j] - mean);
  }
  return m;
}

// A stage-1 head that leans on the shortcut: W = 2 I on the shortcut block + 0.5 I on the core block.
Head shortcut_head(int K, int dim) {
  Head h;
  h.dim = dim, h.classes = K;
  h.W.assign(size_t(K) * dim, 0.0f);
  h.b.assign(K, 0.0f);
  for (int k = 0; k < K; ++k) h.W[size_t(k) * dim + k] = 0.5f, h.W[size_t(k) * dim + K + k] = 2.0f;
  return h;
}

std::vector<float> true_class_probability(const Head& h, const FeatureSet& set) {
  std::vector<float> logits(size_t(set.n) * h.classes), p(set.n);
  head_logits(h, set, logits.data());
  for (int i = 0; i < set.n; ++i) {
    const float* z = logits.data() + size_t(i) * h.classes;
    double zmax = z[0], sum = 0;
    for (int k = 1; k < h.classes; ++k) zmax = std::max(zmax, double(z[k]));
    for (int k = 0; k < h.classes; ++k) sum += std::exp(z[k] - zmax);
    p[i] = float(std::exp(z[set.y[i]] - zmax) / sum);
  }
  return p;
}

// The AFR descent written plainly: afr_loss_grad, clip_grad_norm_, an SGD step. trajectory[e] = head after e steps.
std::vector<Head> reference_descent(const FeatureSet& set, const Head& init, float gamma, float lambda, int epochs,
                                    float lr, float clip, int* clipped = nullptr) {
  const std::vector<float> p = true_class_probability(init, set);
  const std::vector<double> mu = afr_weights(p.data(), set.y, set.n, init.classes, gamma);
  std::vector<Head> trajectory = {init};
  std::vector<float> dW(init.W.size()), db(init.b.size());
  Head h = init;
  for (int e = 1; e <= epochs; ++e) {
    afr_loss_grad(h, init, set, mu.data(), lambda, dW.data(), db.data());
    double sq = 0;
    for (float g : dW) sq += double(g) * g;
    for (float g : db) sq += double(g) * g;
    const double coef = clip / (std::sqrt(sq) + 1e-6);
    if (coef < 1 && clipped) ++*clipped;
    const float step = coef < 1 ? float(lr * coef) : lr;
    for (size_t q = 0; q < dW.size(); ++q) h.W[q] -= step * dW[q];
    for (size_t q = 0; q < db.size(); ++q) h.b[q] -= step * db[q];
    trajectory.push_back(h);
  }
  return trajectory;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - b[i]));
  return m;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Evaluation

TEST(HeadsEval, ArgmaxTiesGoToTheFirstClassAndWorstGroupIsTheMinimum) {
  // A zero head: every logit ties, every sample is predicted class 0.
  Head h;
  h.dim = 2, h.classes = 3;
  h.W.assign(6, 0.0f), h.b.assign(3, 0.0f);
  const std::vector<float> z = {1, 2, 3, 4, 5, 6, 7, 8};
  const std::vector<int32_t> y = {0, 0, 0, 1};
  const HeadEval e = evaluate_head(h, {z.data(), y.data(), 4, 2});
  EXPECT_DOUBLE_EQ(e.accuracy, 0.75);
  EXPECT_DOUBLE_EQ(e.worst_group_accuracy, 0.0);  // class 1 all wrong; class 2 absent, not counted
  EXPECT_NEAR(e.loss, std::log(3.0), 1e-12);
  const std::vector<int32_t> y0 = {0, 0, 0, 0};
  EXPECT_DOUBLE_EQ(evaluate_head(h, {z.data(), y0.data(), 4, 2}).worst_group_accuracy, 1.0);
}

// ---------------------------------------------------------------------------------------------------------
// AFR

TEST(HeadsAfrWeights, HandExample) {
  // beta = (1/2, 1/2, 1); exp(-ln2 p) = (1/2, 1, 1/2): raw (1/4, 1/2, 1/2), sum 5/4.
  const std::vector<float> p = {1.0f, 0.0f, 1.0f};
  const std::vector<int32_t> y = {0, 0, 1};
  const std::vector<double> mu = afr_weights(p.data(), y.data(), 3, 2, std::log(2.0));
  ASSERT_EQ(mu.size(), 3u);
  EXPECT_NEAR(mu[0], 0.2, 1e-15);
  EXPECT_NEAR(mu[1], 0.4, 1e-15);
  EXPECT_NEAR(mu[2], 0.4, 1e-15);
}

TEST(HeadsAfrWeights, SumToOneAndMatchTheFormula) {
  const int n = 50, K = 4;  // class 3 absent
  RngStream rng(7, 0, Purpose::afr_split);
  std::vector<float> p(n);
  std::vector<int32_t> y(n);
  std::vector<int> count(K, 0);
  for (int i = 0; i < n; ++i) p[i] = rng.uniform(), y[i] = int32_t(rng.below(3)), ++count[y[i]];
  for (double gamma : {0.0, 0.5, 4.0, 16.0, 200.0}) {
    const std::vector<double> mu = afr_weights(p.data(), y.data(), n, K, gamma);
    double total = 0, sum = 0;
    for (int i = 0; i < n; ++i) total += std::exp(-gamma * p[i]) / count[y[i]];
    std::vector<double> mass(K, 0.0);
    for (int i = 0; i < n; ++i) {
      EXPECT_NEAR(mu[i], std::exp(-gamma * p[i]) / count[y[i]] / total, 1e-12 * mu[i]) << "gamma " << gamma;
      sum += mu[i], mass[y[i]] += mu[i];
    }
    EXPECT_NEAR(sum, 1.0, 1e-12);
    if (gamma == 0)  // class balance: each present class carries the same mass
      for (int k = 0; k < 3; ++k) EXPECT_NEAR(mass[k], 1.0 / 3, 1e-12);
  }
  // A gamma whose exp(-gamma p) underflows in double: still finite, normalized, all mass on the lowest p.
  const std::vector<double> mu = afr_weights(p.data(), y.data(), n, K, 1e5);
  const int low = int(std::min_element(p.begin(), p.end()) - p.begin());
  EXPECT_NEAR(mu[low], 1.0, 1e-9);
}

TEST(HeadsAfrLoss, GradientMatchesFiniteDifferences) {
  const int K = 4;
  const OwnedSet data = shortcut_data(30, K, 3, 0.7, 0.5f, 1);
  const FeatureSet set = data.set();
  RngStream rng(11, 0, Purpose::init_weights);
  Head init, head;
  init.dim = head.dim = set.dim, init.classes = head.classes = K;
  for (int q = 0; q < K * set.dim; ++q) init.W.push_back(rng.uniform(-1, 1)), head.W.push_back(rng.uniform(-1, 1));
  for (int k = 0; k < K; ++k) init.b.push_back(rng.uniform(-1, 1)), head.b.push_back(rng.uniform(-1, 1));
  const std::vector<float> p = true_class_probability(init, set);
  const std::vector<double> mu = afr_weights(p.data(), set.y, set.n, K, 2.0);
  const double lambda = 0.3;
  std::vector<float> dW(head.W.size()), db(K), scratch_W(head.W.size()), scratch_b(K);
  afr_loss_grad(head, init, set, mu.data(), lambda, dW.data(), db.data());
  // Central differences on every W and b entry; the step is the float difference actually applied.
  auto check = [&](std::vector<float>& param, const std::vector<float>& analytic, const char* name) {
    for (size_t q = 0; q < param.size(); ++q) {
      const float keep = param[q];
      const float hi = keep + 1e-2f, lo = keep - 1e-2f;
      param[q] = hi;
      const double f_hi = afr_loss_grad(head, init, set, mu.data(), lambda, scratch_W.data(), scratch_b.data());
      param[q] = lo;
      const double f_lo = afr_loss_grad(head, init, set, mu.data(), lambda, scratch_W.data(), scratch_b.data());
      param[q] = keep;
      const double numeric = (f_hi - f_lo) / (double(hi) - lo);
      EXPECT_NEAR(analytic[q], numeric, 1e-4 + 1e-3 * std::fabs(numeric)) << name << "[" << q << "]";
    }
  };
  check(head.W, dW, "W");
  check(head.b, db, "b");
  // At the initial head the penalty vanishes.
  const double at_init = afr_loss_grad(init, init, set, mu.data(), lambda, dW.data(), db.data());
  const double at_init_no_penalty = afr_loss_grad(init, init, set, mu.data(), 0.0, dW.data(), db.data());
  EXPECT_DOUBLE_EQ(at_init, at_init_no_penalty);
}

TEST(HeadsAfrDescend, MatchesPlainGradientDescent) {
  const int K = 3, E = 60;
  const OwnedSet data = shortcut_data(120, K, 2, 0.9, 0.5f, 2);
  const FeatureSet set = data.set();
  const Head init = shortcut_head(K, set.dim);
  struct Case {
    float gamma, lambda, lr, clip;
  };
  int clipped_total = 0;
  for (const Case c : {Case{0, 0, 0.01f, 1}, Case{4, 0.3f, 0.01f, 1}, Case{8, 0, 0.05f, 0.05f}}) {
    int clipped = 0;
    const std::vector<Head> ref = reference_descent(set, init, c.gamma, c.lambda, E, c.lr, c.clip, &clipped);
    clipped_total += clipped;
    for (int e : {1, 7, E}) {
      const Head h = afr_descend(set, init, c.gamma, c.lambda, e, c.lr, c.clip);
      EXPECT_LT(max_abs_diff(h.W, ref[e].W), 1e-5) << "gamma " << c.gamma << " lambda " << c.lambda << " epoch " << e;
      EXPECT_LT(max_abs_diff(h.b, ref[e].b), 1e-5) << "gamma " << c.gamma << " lambda " << c.lambda << " epoch " << e;
    }
    EXPECT_GT(max_abs_diff(ref[E].W, init.W), 0.01);  // it moved
  }
  EXPECT_GT(clipped_total, 0);  // the clip was exercised
  // Zero epochs: the initial head exactly.
  const Head h0 = afr_descend(set, init, 2, 0.1f, 0);
  EXPECT_EQ(h0.W, init.W);
  EXPECT_EQ(h0.b, init.b);
}

TEST(HeadsAfr, ReweightingMovesTheHeadOffTheShortcut) {
  const int K = 3;
  const OwnedSet stage2 = shortcut_data(600, K, 6, 0.9, 0.4f, 3);  // the shortcut agrees with y on ~93 % of rows
  const OwnedSet val = shortcut_data(600, K, 6, 0.0, 0.4f, 4);     // clean: the shortcut is random
  const Head init = shortcut_head(K, stage2.dim);
  const Head plain = afr_descend(stage2.set(), init, 0, 0, 500);
  const Head boosted = afr_descend(stage2.set(), init, 8, 0, 500);
  const double m_init = weight_mass(init, K, 2 * K), m_plain = weight_mass(plain, K, 2 * K);
  const double m_boosted = weight_mass(boosted, K, 2 * K);
  EXPECT_LT(m_boosted, m_plain);
  EXPECT_LT(m_boosted, 0.8 * m_init);
  EXPECT_GT(weight_mass(boosted, 0, K), weight_mass(plain, 0, K));  // the weight goes to the core features

  AfrConfig cfg;
  const AfrResult r = fit_afr(stage2.set(), init, val.set(), cfg);
  const double wga_init = evaluate_head(init, val.set()).worst_group_accuracy;
  EXPECT_GT(r.val_worst_group, wga_init);
  EXPECT_DOUBLE_EQ(r.val_worst_group, evaluate_head(r.head, val.set()).worst_group_accuracy);
  EXPECT_GT(r.gamma, 0.0f);
  EXPECT_GT(r.epoch, 0);
  // Diagnostics of the chosen gamma.
  ASSERT_EQ(r.p_true.size(), size_t(stage2.set().n));
  const std::vector<double> mu = afr_weights(r.p_true.data(), stage2.y.data(), stage2.set().n, K, r.gamma);
  double sq = 0, mass = 0;
  for (double m : mu) sq += m * m;
  for (double m : r.class_mass) mass += m;
  EXPECT_NEAR(r.ess, 1 / sq, 1e-9 * r.ess);
  EXPECT_LT(r.ess, stage2.set().n);
  EXPECT_NEAR(mass, 1.0, 1e-12);
  for (double m : r.class_mass) EXPECT_NEAR(m, 1.0 / K, 0.2);
}

TEST(HeadsAfr, SelectionIsTheBruteForceArgmax) {
  const int K = 3, E = 150;
  const OwnedSet stage2 = shortcut_data(300, K, 2, 0.9, 0.4f, 5);
  const OwnedSet val = shortcut_data(300, K, 2, 0.0, 0.4f, 6);
  const Head init = shortcut_head(K, stage2.dim);
  AfrConfig cfg;
  cfg.gammas = {0, 2, 8};
  cfg.lambdas = {0, 0.1f};
  cfg.epochs = E;
  cfg.lr = 0.03f;
  cfg.keep_val_curves = true;
  const AfrResult r = fit_afr(stage2.set(), init, val.set(), cfg);

  // Every (gamma, lambda, epoch) by the plain loop, scored with evaluate_head; the first maximum in the order
  // epoch, gamma, lambda (the grids are ascending) is the one the tie rule picks.
  const int NG = 3, NL = 2;
  std::vector<std::vector<Head>> traj;
  for (float g : cfg.gammas)
    for (float l : cfg.lambdas) traj.push_back(reference_descent(stage2.set(), init, g, l, E, cfg.lr, cfg.clip));
  double best = -1;
  int best_e = -1, best_b = -1, ties = 0;
  ASSERT_EQ(r.val_curves.size(), size_t(NG * NL * (E + 1)));
  for (int e = 0; e <= E; ++e)
    for (int b = 0; b < NG * NL; ++b) {
      const double wga = evaluate_head(traj[b][e], val.set()).worst_group_accuracy;
      EXPECT_EQ(r.val_curves[size_t(b) * (E + 1) + e], wga) << "grid point " << b << " epoch " << e;
      if (wga > best) best = wga, best_e = e, best_b = b, ties = 0;
      else if (wga == best) ++ties;
    }
  EXPECT_GT(best_e, 0);    // a case where the descent helps
  EXPECT_GT(ties, 0);      // and the maximum is reached more than once, so the tie rule matters
  EXPECT_EQ(r.epoch, best_e);
  EXPECT_EQ(r.gamma, cfg.gammas[best_b / NL]);
  EXPECT_EQ(r.lambda, cfg.lambdas[best_b % NL]);
  EXPECT_EQ(r.val_worst_group, best);
  EXPECT_LT(max_abs_diff(r.head.W, traj[best_b][best_e].W), 1e-5);
  EXPECT_LT(max_abs_diff(r.head.b, traj[best_b][best_e].b), 1e-5);
}

TEST(HeadsAfr, TiesEverywherePickEpochZeroSmallestGammaAndLambda) {
  // Three validation rows far from any boundary: every head of the grid scores 1 at every epoch.
  const int K = 3;
  const OwnedSet stage2 = shortcut_data(90, K, 0, 0.9, 0.4f, 7);
  const Head init = shortcut_head(K, stage2.dim);
  OwnedSet val;
  val.dim = stage2.dim;
  for (int k = 0; k < K; ++k) {
    for (int j = 0; j < val.dim; ++j) val.z.push_back(j == k ? 50.0f : (j == K + k ? 50.0f : 0.0f));
    val.y.push_back(k);
  }
  AfrConfig cfg;
  cfg.gammas = {4, 0.5f, 2};  // unsorted on purpose
  cfg.lambdas = {0.1f, 0.01f};
  cfg.epochs = 20;
  const AfrResult r = fit_afr(stage2.set(), init, val.set(), cfg);
  EXPECT_EQ(r.val_worst_group, 1.0);
  EXPECT_EQ(r.epoch, 0);
  EXPECT_EQ(r.gamma, 0.5f);
  EXPECT_EQ(r.lambda, 0.01f);
  EXPECT_EQ(r.head.W, init.W);
  EXPECT_EQ(r.head.b, init.b);
}

// ---------------------------------------------------------------------------------------------------------
// L1 logistic regression and DFR

TEST(HeadsLogistic, SolutionSatisfiesTheOptimalityConditions) {
  const int K = 3;
  const OwnedSet data = shortcut_data(200, K, 3, 0.5, 0.8f, 8);
  const FeatureSet set = data.set();
  const float l1 = 0.02f;
  LogisticConfig cfg;
  cfg.tol = 1e-6;
  cfg.max_iters = 20000;
  const LogisticFit f = fit_logistic_l1(set, K, l1, cfg);
  EXPECT_TRUE(f.converged);
  // Gradient of the mean cross-entropy, in double.
  const int d = set.dim;
  std::vector<double> gW(size_t(K) * d, 0.0), gb(K, 0.0);
  double loss = 0, penalty = 0;
  for (int i = 0; i < set.n; ++i) {
    std::vector<double> z(K);
    double zmax = -1e300, sum = 0;
    for (int k = 0; k < K; ++k) {
      z[k] = f.head.b[k];
      for (int j = 0; j < d; ++j) z[k] += double(f.head.W[size_t(k) * d + j]) * set.z[size_t(i) * d + j];
      zmax = std::max(zmax, z[k]);
    }
    for (int k = 0; k < K; ++k) sum += std::exp(z[k] - zmax);
    loss += (zmax + std::log(sum) - z[set.y[i]]) / set.n;
    for (int k = 0; k < K; ++k) {
      const double g = (std::exp(z[k] - zmax) / sum - (k == set.y[i])) / set.n;
      gb[k] += g;
      for (int j = 0; j < d; ++j) gW[size_t(k) * d + j] += g * set.z[size_t(i) * d + j];
    }
  }
  int zeros = 0;
  for (size_t q = 0; q < gW.size(); ++q) {
    const float w = f.head.W[q];
    penalty += std::fabs(w);
    if (w == 0.0f) {
      ++zeros;
      EXPECT_LE(std::fabs(gW[q]), l1 + 2e-5) << q;
    } else {
      EXPECT_NEAR(gW[q] + l1 * (w > 0 ? 1 : -1), 0.0, 2e-5) << q;
    }
  }
  for (int k = 0; k < K; ++k) EXPECT_NEAR(gb[k], 0.0, 2e-5);
  EXPECT_GT(zeros, 0);                  // the penalty made it sparse ...
  EXPECT_LT(zeros, int(gW.size()) - 3);  // ... but not empty
  EXPECT_NEAR(f.objective, loss + l1 * penalty, 1e-5);

  // A penalty above every gradient: no weight survives.
  const LogisticFit empty = fit_logistic_l1(set, K, 10.0f, cfg);
  for (float w : empty.head.W) EXPECT_EQ(w, 0.0f);
}

TEST(HeadsDfr, PutsNoWeightOnAnUncorrelatedShortcut) {
  const int K = 3;
  const OwnedSet fit = shortcut_data(600, K, 6, 0.0, 0.5f, 9);  // balanced, shortcut independent of y
  const OwnedSet val = shortcut_data(600, K, 6, 0.0, 0.5f, 10);
  DfrConfig cfg;
  RngStream rng(3, 0, Purpose::dfr_subsample);
  const DfrResult paper = fit_dfr(fit.set(), K, cfg, rng);
  cfg.source_variant = true;
  RngStream rng2(3, 0, Purpose::dfr_subsample);
  const DfrResult source = fit_dfr(fit.set(), K, cfg, rng2);

  const Head& hp = paper.head_standardized;
  const double shortcut = weight_mass(hp, K, 2 * K), core = weight_mass(hp, 0, K);
  EXPECT_LT(shortcut, 0.02 * core);
  EXPECT_LT(shortcut, weight_mass(source.head_standardized, K, 2 * K));  // the L1 penalty shrank it
  EXPECT_GT(evaluate_head(paper.head, val.set()).accuracy, 0.85);
  EXPECT_GT(evaluate_head(paper.head, val.set()).worst_group_accuracy, 0.8);

  // The chosen strength is the tuning argmax (ties: higher accuracy, then larger l1; not checked here).
  ASSERT_EQ(paper.tune_worst_group_per_l1.size(), DfrConfig().l1_grid.size());
  EXPECT_EQ(paper.tune_worst_group,
            *std::max_element(paper.tune_worst_group_per_l1.begin(), paper.tune_worst_group_per_l1.end()));
  EXPECT_NE(std::find(cfg.l1_grid.begin(), cfg.l1_grid.end(), paper.l1), cfg.l1_grid.end());
  EXPECT_EQ(source.l1, 0.0f);
  EXPECT_TRUE(std::isnan(source.tune_worst_group));
}

TEST(HeadsDfr, RawHeadGivesTheStandardizedHeadsLogits) {
  const int K = 3;
  OwnedSet data = shortcut_data(400, K, 4, 0.5, 0.6f, 11);
  // Features on very different scales and offsets, plus a constant one (a dead unit).
  RngStream rng(5, 0, Purpose::init_weights);
  std::vector<float> scale(data.dim), offset(data.dim);
  for (int j = 0; j < data.dim; ++j) scale[j] = std::pow(10.0f, rng.uniform(-2, 2)), offset[j] = rng.uniform(-50, 50);
  OwnedSet raw;
  raw.dim = data.dim + 1;
  raw.y = data.y;
  for (size_t i = 0; i < data.y.size(); ++i) {
    for (int j = 0; j < data.dim; ++j) raw.z.push_back(data.z[i * data.dim + j] * scale[j] + offset[j]);
    raw.z.push_back(3.0f);
  }
  RngStream r1(3, 1, Purpose::dfr_subsample);
  const DfrResult r = fit_dfr(raw.set(), K, DfrConfig(), r1);
  const int n = raw.set().n;
  std::vector<float> zs(raw.z.size()), logits_raw(size_t(n) * K), logits_std(size_t(n) * K);
  standardize(r.standardizer, raw.set(), zs.data());
  head_logits(r.head, raw.set(), logits_raw.data());
  head_logits(r.head_standardized, {zs.data(), raw.y.data(), n, raw.dim}, logits_std.data());
  double big = 0;
  for (float v : logits_std) big = std::max(big, double(std::fabs(v)));
  EXPECT_LT(max_abs_diff(logits_raw, logits_std), 1e-4 * (1 + big));
  EXPECT_EQ(r.standardizer.scale[raw.dim - 1], 1.0f);
  for (int k = 0; k < K; ++k) EXPECT_EQ(r.head.W[size_t(k) * raw.dim + raw.dim - 1], 0.0f);
  EXPECT_GT(evaluate_head(r.head, raw.set()).accuracy, 0.8);

  // unstandardize_head on an arbitrary head.
  Head h;
  h.dim = raw.dim, h.classes = K;
  for (int q = 0; q < K * raw.dim; ++q) h.W.push_back(rng.uniform(-1, 1));
  for (int k = 0; k < K; ++k) h.b.push_back(rng.uniform(-1, 1));
  head_logits(unstandardize_head(h, r.standardizer), raw.set(), logits_raw.data());
  head_logits(h, {zs.data(), raw.y.data(), n, raw.dim}, logits_std.data());
  big = 0;
  for (float v : logits_std) big = std::max(big, double(std::fabs(v)));
  EXPECT_LT(max_abs_diff(logits_raw, logits_std), 1e-4 * (1 + big));
}

TEST(HeadsDfr, DeterministicAndThreadSafe) {
  const int K = 3;
  OwnedSet data = shortcut_data(450, K, 4, 0.3, 0.6f, 12);
  // Imbalanced: drop a third of class 0, so the balanced subsamples differ from each other.
  OwnedSet imb;
  imb.dim = data.dim;
  for (size_t i = 0; i < data.y.size(); ++i) {
    if (data.y[i] == 0 && i % 9 == 0) continue;
    imb.y.push_back(data.y[i]);
    imb.z.insert(imb.z.end(), data.z.begin() + i * data.dim, data.z.begin() + (i + 1) * data.dim);
  }
  DfrConfig cfg;
  cfg.subsamples = 4;
  auto run = [&](uint32_t seed) {
    RngStream rng(9, seed, Purpose::dfr_subsample);
    return fit_dfr(imb.set(), K, cfg, rng);
  };
  const DfrResult a = run(0), b = run(0), c = run(1);
  EXPECT_EQ(a.head.W, b.head.W);
  EXPECT_EQ(a.head.b, b.head.b);
  EXPECT_EQ(a.l1, b.l1);
  EXPECT_NE(a.head.W, c.head.W);  // other draws, other subsamples

  // Seeds in parallel give what they give alone.
  const int S = 4;
  std::vector<DfrResult> serial(S), parallel(S);
  for (int s = 0; s < S; ++s) serial[s] = run(uint32_t(s));
#pragma omp parallel for schedule(dynamic, 1) num_threads(2)
  for (int s = 0; s < S; ++s) parallel[s] = run(uint32_t(s));
  for (int s = 0; s < S; ++s) {
    EXPECT_EQ(serial[s].head.W, parallel[s].head.W) << s;
    EXPECT_EQ(serial[s].head.b, parallel[s].head.b) << s;
  }

  const OwnedSet val = shortcut_data(150, K, 4, 0.0, 0.6f, 13);
  const Head init = shortcut_head(K, data.dim);
  AfrConfig ac;
  ac.epochs = 50;
  const AfrResult x = fit_afr(imb.set(), init, val.set(), ac), y = fit_afr(imb.set(), init, val.set(), ac);
  EXPECT_EQ(x.head.W, y.head.W);
  EXPECT_EQ(x.head.b, y.head.b);
  EXPECT_EQ(x.epoch, y.epoch);
}

TEST(HeadsErrors, RejectBadInputs) {
  const int K = 3;
  const OwnedSet data = shortcut_data(30, K, 1, 0.5, 0.5f, 14);
  const Head init = shortcut_head(K, data.dim);
  OwnedSet bad = data;
  bad.y[4] = K;
  DfrConfig dc;
  RngStream rng(1, 0, Purpose::dfr_subsample);
  EXPECT_THROW(fit_dfr(bad.set(), K, dc, rng), std::invalid_argument);
  EXPECT_THROW(fit_dfr(data.set(), 1, dc, rng), std::invalid_argument);
  dc.l1_grid = {};
  EXPECT_THROW(fit_dfr(data.set(), K, dc, rng), std::invalid_argument);
  dc.l1_grid = {-1.0f};
  EXPECT_THROW(fit_dfr(data.set(), K, dc, rng), std::invalid_argument);
  AfrConfig ac;
  EXPECT_THROW(fit_afr(bad.set(), init, data.set(), ac), std::invalid_argument);
  EXPECT_THROW(fit_afr(data.set(), init, bad.set(), ac), std::invalid_argument);
  Head wrong = init;
  wrong.dim += 1;
  EXPECT_THROW(fit_afr(data.set(), wrong, data.set(), ac), std::invalid_argument);
  ac.gammas = {-1.0f};
  EXPECT_THROW(fit_afr(data.set(), init, data.set(), ac), std::invalid_argument);
  EXPECT_THROW(afr_weights(nullptr, nullptr, 0, K, 1.0), std::invalid_argument);
}
