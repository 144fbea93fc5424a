// The training protocol: batch order, a short run whose loss falls, validation of settings.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/backend.h"
#include "study/backends.h"
#include "report/report.h"
#include "study/study.h"

using namespace sb;

namespace {
// Two seeds, 300 steps: long enough for the shortcut to be learned, short enough for a unit test.
StudyConfig short_study(int eval_every, std::vector<std::string> methods) {
  StudyConfig cfg;
  cfg.seeds = 2;
  cfg.steps = 300;
  cfg.eval_every = eval_every;
  cfg.methods = std::move(methods);
  return cfg;
}
}  // namespace

TEST(Study, EachEpochIsAPermutationAndEpochsDiffer) {
  StudyConfig cfg;
  cfg.batch = 100;
  const int N = 1000;  // 10 steps per epoch
  std::vector<int32_t> perm, rows(100), epoch0, epoch1;
  for (int step = 0; step < 20; ++step) {
    batch_rows(cfg, N, 5, step, rows.data(), perm);
    (step < 10 ? epoch0 : epoch1).insert((step < 10 ? epoch0 : epoch1).end(), rows.begin(), rows.end());
  }
  std::vector<int32_t> sorted0 = epoch0, sorted1 = epoch1, ident(N);
  std::sort(sorted0.begin(), sorted0.end());
  std::sort(sorted1.begin(), sorted1.end());
  std::iota(ident.begin(), ident.end(), 0);
  EXPECT_EQ(sorted0, ident);
  EXPECT_EQ(sorted1, ident);
  EXPECT_NE(epoch0, epoch1);
  EXPECT_NE(epoch0, ident);
  // Another seed index shuffles differently; a fresh cache gives the same rows (no hidden state).
  std::vector<int32_t> other(100), again(100), p2, p3;
  batch_rows(cfg, N, 6, 0, other.data(), p2);
  batch_rows(cfg, N, 5, 0, again.data(), p3);
  EXPECT_NE(other, std::vector<int32_t>(epoch0.begin(), epoch0.begin() + 100));
  EXPECT_EQ(again, std::vector<int32_t>(epoch0.begin(), epoch0.begin() + 100));
}

TEST(Study, FixedOrderIsSequential) {
  StudyConfig cfg;
  cfg.batch = 100;
  cfg.fixed_order = true;
  std::vector<int32_t> perm, rows(100);
  batch_rows(cfg, 1000, 0, 13, rows.data(), perm);  // epoch 1, position 3
  for (int i = 0; i < 100; ++i) EXPECT_EQ(rows[i], 300 + i);
}

TEST(Study, ShortTrainingRunLossFalls) {
  Dataset data = load_embedded_mnist1d();
  StudyConfig cfg = short_study(100, {"erm-base", "erm"});
  auto backend = make_backend("cpu", 2);
  StudyResult r = run_study(cfg, data, *backend);
  ASSERT_EQ(r.runs.size(), 4u);
  for (const RunRecord& run : r.runs) {
    ASSERT_EQ(run.curves.size(), 3u);
    const double first = run.curves.front().sets.at("train").loss, last = run.curves.back().sets.at("train").loss;
    EXPECT_TRUE(std::isfinite(last));
    EXPECT_LT(last, std::log(10.0) - 0.8) << run.method;  // chance is ln 10
    EXPECT_LE(last, first * 1.05) << run.method;
    if (run.method == "erm-base") {
      EXPECT_GT(run.metrics.at("test_clean").accuracy, 0.35);  // chance is 0.1
    } else {  // the shortcut is learned first: aligned beats conflicting by far, clean stays above chance
      EXPECT_GT(run.metrics.at("test_clean").accuracy, 0.2);
      EXPECT_GT(run.metrics.at("test_aligned").accuracy, run.metrics.at("test_conflicting").accuracy + 0.2);
    }
  }
  EXPECT_GT(r.timing.at("erm").seed_steps_per_s, 0);
}

TEST(Study, ValidateRejectsBadSettings) {
  Dataset data = load_embedded_mnist1d();
  auto bad = [&](auto mutate) {
    StudyConfig cfg;
    mutate(cfg);
    EXPECT_THROW(validate(cfg, data), std::invalid_argument);
  };
  bad([](StudyConfig& c) { c.seeds = 0; });
  bad([](StudyConfig& c) { c.steps = -1; });
  bad([](StudyConfig& c) { c.batch = 4001; });
  bad([](StudyConfig& c) { c.methods = {"dfr-typo"}; });
  bad([](StudyConfig& c) { c.spurious.p = 1.01; });
  bad([](StudyConfig& c) { c.lr = std::nanf(""); });
  StudyConfig ok;
  EXPECT_NO_THROW(validate(ok, data));
}

// The study's methods on a short run: DFR refits the head on clean data and must beat the shortcut model on
// the clean test set; AFR's record must be coherent with its grid.
TEST(Study, DfrAndAfrOnAShortRun) {
  Dataset data = load_embedded_mnist1d();
  StudyConfig cfg = short_study(300, {"erm", "dfr", "afr"});
  cfg.dfr.subsamples = 3;
  cfg.afr.epochs = 50;
  cfg.afr.gammas = {0, 2, 8};
  cfg.afr.lambdas = {0, 0.1f};
  auto backend = make_backend("cpu", 2);
  StudyResult r = run_study(cfg, data, *backend);
  ASSERT_EQ(r.runs.size(), 6u);
  auto run_of = [&](const std::string& m, int s) -> const RunRecord& {
    for (const RunRecord& run : r.runs)
      if (run.method == m && run.seed_index == s) return run;
    throw std::runtime_error("missing run");
  };
  for (int s = 0; s < 2; ++s) {
    const RunRecord &erm = run_of("erm", s), &dfr = run_of("dfr", s), &afr = run_of("afr", s);
    EXPECT_GT(dfr.metrics.at("test_clean").accuracy, erm.metrics.at("test_clean").accuracy + 0.05) << "seed " << s;
    EXPECT_TRUE(dfr.has_dfr);
    ASSERT_TRUE(afr.has_afr);
    EXPECT_NE(std::find(cfg.afr.gammas.begin(), cfg.afr.gammas.end(), afr.afr_gamma), cfg.afr.gammas.end());
    EXPECT_NE(std::find(cfg.afr.lambdas.begin(), cfg.afr.lambdas.end(), afr.afr_lambda), cfg.afr.lambdas.end());
    EXPECT_GE(afr.afr_epoch, 0);
    EXPECT_LE(afr.afr_epoch, cfg.afr.epochs);
    double mass = 0;
    for (double m : afr.afr_class_mass) mass += m;
    EXPECT_NEAR(mass, 1.0, 1e-6);
    EXPECT_GE(afr.afr_ess, 1.0);
    EXPECT_LE(afr.afr_ess, 800.0 + 1e-6);  // the 20 % held out of 4000
    EXPECT_EQ(afr.curves.size(), 1u);       // stage 1 is an ERM run with its own curve
    EXPECT_EQ(afr.afr_stage1_steps, 300);
  }
  // dfr reuses the erm model: its timing lists that training as shared.
  bool shared = false;
  for (const StageTiming& st : r.timing.at("dfr").stages) shared |= st.name == "erm_training" && st.shared;
  EXPECT_TRUE(shared);
  EXPECT_EQ(r.cross_seed.at("afr").afr_p_histogram.size(), 20u);
}

// The bounds of issue 14 start from the models of the methods they bound: afr-oracle from afr's stage 1, probe-erm
// from erm, probe-base from erm-base. Sharing a model must not change a result, and the oracle, choosing on the clean
// test set, must do at least as well there as afr's held-out choice among the same heads.
TEST(Study, BoundsShareTheirMethodsModels) {
  Dataset data = load_embedded_mnist1d();
  StudyConfig cfg = short_study(300, {"erm-base", "erm", "afr", "probe-erm", "probe-base", "afr-oracle"});
  cfg.dfr.subsamples = 2;
  cfg.dfr.l1_grid = {1e-3f, 1e-2f};
  cfg.afr.epochs = 40;
  cfg.afr.gammas = {0, 4};
  cfg.afr.lambdas = {0, 0.1f};
  auto backend = make_backend("cpu", 2);
  const StudyResult all = run_study(cfg, data, *backend);
  cfg.methods = {"afr-oracle", "probe-base", "afr"};  // the bounds train the models they need; afr comes after
  const StudyResult alone = run_study(cfg, data, *backend);
  auto run_of = [](const StudyResult& r, const std::string& m, int s) -> const RunRecord& {
    for (const RunRecord& run : r.runs)
      if (run.method == m && run.seed_index == s) return run;
    throw std::runtime_error("missing run " + m);
  };
  auto shared_training = [](const StudyResult& r, const std::string& m) {
    bool shared = false;
    for (const StageTiming& st : r.timing.at(m).stages) shared |= st.name == "erm_training" && st.shared;
    return shared;
  };
  for (const std::string m : {"afr-oracle", "probe-erm", "probe-base"}) EXPECT_TRUE(shared_training(all, m)) << m;
  for (int s = 0; s < 2; ++s) {
    // afr listed after afr-oracle still reports its stage 1's curve, as when it trains stage 1 itself.
    EXPECT_EQ(run_record_json(run_of(alone, "afr", s)).dump(), run_record_json(run_of(all, "afr", s)).dump());
    for (const std::string m : {"afr-oracle", "probe-base"})
      for (const std::string& set : study_sets()) {
        const SetMetrics &a = run_of(all, m, s).metrics.at(set), &b = run_of(alone, m, s).metrics.at(set);
        EXPECT_EQ(a.accuracy, b.accuracy) << m << " " << set << " seed " << s;
        EXPECT_EQ(a.loss, b.loss) << m << " " << set << " seed " << s;
      }
    const RunRecord &afr = run_of(all, "afr", s), &oracle = run_of(all, "afr-oracle", s);
    ASSERT_TRUE(oracle.has_afr);
    EXPECT_EQ(oracle.afr_stage1_steps, 300);
    EXPECT_TRUE(oracle.curves.empty());  // stage 1's curve is afr's
    // Selection scores the heads on features, the final evaluation runs the whole model: allow one sample of the
    // smallest class (about 90 in the test set) for a rounding-level difference between the two.
    EXPECT_GE(oracle.metrics.at("test_clean").worst_group_accuracy,
              afr.metrics.at("test_clean").worst_group_accuracy - 0.012)
        << "seed " << s;
    for (const std::string m : {"probe-erm", "probe-base"}) {
      const RunRecord& probe = run_of(all, m, s);
      EXPECT_TRUE(probe.has_dfr);
      EXPECT_EQ(probe.dfr_tune_worst_group.size(), 2u);
    }
    // erm-base's features carry the class; erm's, trained where a planted block gives 90 % of it away, less.
    EXPECT_GT(run_of(all, "probe-base", s).metrics.at("test_clean").accuracy,
              run_of(all, "probe-erm", s).metrics.at("test_clean").accuracy)
        << "seed " << s;
  }
}

// In a stage-1 sweep, afr-oracle@N starts from afr@N's stage 1 (trained once per N), never from another N's.
TEST(Study, OracleSharesStageOneWithAfrOfTheSameSteps) {
  Dataset data = load_embedded_mnist1d();
  StudyConfig cfg = short_study(50, {"afr", "afr-oracle"});
  cfg.afr_stage1_steps = {100, 200};
  cfg.afr.epochs = 20;
  cfg.afr.gammas = {0, 4};
  cfg.afr.lambdas = {0};
  auto backend = make_backend("cpu", 2);
  const StudyResult r = run_study(cfg, data, *backend);
  EXPECT_EQ(r.methods, (std::vector<std::string>{"afr@100", "afr@200", "afr-oracle@100", "afr-oracle@200"}));
  auto trained_here = [&](const std::string& m) {
    for (const StageTiming& st : r.timing.at(m).stages)
      if (st.name == "erm_training") return !st.shared;
    ADD_FAILURE() << m << " has no erm_training stage";
    return false;
  };
  for (int n : {100, 200}) {
    const std::string suffix = "@" + std::to_string(n);
    EXPECT_TRUE(trained_here("afr" + suffix));
    EXPECT_FALSE(trained_here("afr-oracle" + suffix));
    for (const RunRecord& run : r.runs)  // the owner of stage 1 reports its curve (one point per 50 steps)
      if (run.method == "afr" + suffix || run.method == "afr-oracle" + suffix) {
        EXPECT_EQ(run.afr_stage1_steps, n) << run.method;
        EXPECT_EQ(run.curves.size(), run.method == "afr" + suffix ? size_t(n / 50) : 0u) << run.method;
      }
  }
}
