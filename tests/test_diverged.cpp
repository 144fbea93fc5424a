// A seed whose training loss becomes NaN is marked diverged with the step, the other seeds go on bitwise unchanged,
// and summaries and cross-seed statistics leave it out (counting it).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>

#include "data/data.h"
#include "report/report.h"
#include "study/backends.h"
#include "study/study.h"

namespace sb {
namespace {

// The CPU backend, except that at its `poison_step`-th training step of a training it sets seed `seed`'s parameters
// to NaN (the other seeds' parameters and Adam state restored exactly).
class PoisoningBackend final : public Backend {
 public:
  PoisoningBackend(int seed, int poison_step) : inner_(make_backend("cpu", 1)), seed_(seed), poison_step_(poison_step) {}
  std::string name() const override { return inner_->name(); }
  std::string device() const override { return inner_->device(); }
  int threads() const override { return inner_->threads(); }
  void reset(const ConvBaseShape& shape, int S, const float* params, const AdamConfig& adam) override {
    shape_ = shape, S_ = S, steps_ = 0;
    inner_->reset(shape, S, params, adam);
  }
  void load_params(const float* params) override { steps_ = 0, inner_->load_params(params); }
  void get_params(float* params) const override { inner_->get_params(params); }
  void get_adam_state(float* m, float* v, int* step) const override { inner_->get_adam_state(m, v, step); }
  void set_adam_state(const float* m, const float* v, int step) override { inner_->set_adam_state(m, v, step); }
  int add_set(const float* x, const int32_t* labels, int N, bool per_seed) override {
    return inner_->add_set(x, labels, N, per_seed);
  }
  int add_spurious_set(SpuriousSetKind kind, const SpuriousConfig& cfg, int clean, uint64_t base_seed, uint32_t seed0,
                       int32_t* planted) override {
    return inner_->add_spurious_set(kind, cfg, clean, base_seed, seed0, planted);
  }
  void train_on(int set) override { inner_->train_on(set); }
  void train_step(const int32_t* batch_index, int B, float lr, float* loss) override {
    if (++steps_ == poison_step_) {
      const size_t P = shape_.num_params();
      std::vector<float> p(size_t(S_) * P), m(p.size()), v(p.size());
      int t = 0;
      inner_->get_params(p.data());
      inner_->get_adam_state(m.data(), v.data(), &t);
      std::fill_n(p.begin() + size_t(seed_) * P, P, std::numeric_limits<float>::quiet_NaN());
      inner_->load_params(p.data());
      inner_->set_adam_state(m.data(), v.data(), t);
    }
    inner_->train_step(batch_index, B, lr, loss);
  }
  void evaluate_set(int id, SetMetrics* out, int8_t* pred) override { inner_->evaluate_set(id, out, pred); }
  void set_features(int id, float* z) override { inner_->set_features(id, z); }
  void set_saliency(int id, float* sal) override { inner_->set_saliency(id, sal); }
  void predict(const float* x, int N, bool per_seed, float* logits) override { inner_->predict(x, N, per_seed, logits); }
  void features(const float* x, int N, bool per_seed, float* z) override { inner_->features(x, N, per_seed, z); }
  void saliency(const float* x, const int32_t* labels, int N, bool per_seed, float* sal) override {
    inner_->saliency(x, labels, N, per_seed, sal);
  }

 private:
  std::unique_ptr<Backend> inner_;
  int seed_, poison_step_, S_ = 0, steps_ = 0;
  ConvBaseShape shape_{};
};

TEST(Diverged, SeedMarkedOthersUnchangedSummariesLeaveItOut) {
  const Dataset data = load_dataset("");
  StudyConfig cfg;
  cfg.seeds = 3, cfg.steps = 30, cfg.eval_every = 10, cfg.batch = 50;
  cfg.methods = {"erm", "dfr"};
  cfg.dfr.subsamples = 2;
  std::unique_ptr<Backend> cpu = make_backend("cpu", 1);
  const StudyResult clean = run_study(cfg, data, *cpu);
  PoisoningBackend poisoned_backend(1, 14);  // seed 1 poisoned before step 14: its loss is NaN at the evaluation of step 20
  const StudyResult poisoned = run_study(cfg, data, poisoned_backend);
  ASSERT_EQ(poisoned.runs.size(), clean.runs.size());
  for (size_t i = 0; i < clean.runs.size(); ++i) {
    const RunRecord &a = clean.runs[i], &b = poisoned.runs[i];
    if (b.seed_index == 1) {
      EXPECT_EQ(b.diverged_step, 20) << b.method;  // dfr's head was refitted on the diverged erm model
      continue;
    }
    EXPECT_EQ(b.diverged_step, 0);
    EXPECT_EQ(run_record_json(a).dump(), run_record_json(b).dump()) << b.method << " seed " << b.seed_index;
  }
  RunEnvironment env{"cpu", "test", 1};
  const nlohmann::json j = results_json(cfg, data, env, poisoned), jc = results_json(cfg, data, env, clean);
  for (const char* method : {"erm", "dfr"}) {
    EXPECT_EQ(j["cross_seed"][method]["diverged"], 1);
    EXPECT_EQ(jc["cross_seed"][method]["diverged"], 0);
    const nlohmann::json& acc = j["summary"][method]["test_clean"]["accuracy"];
    EXPECT_EQ(acc["n"], 2);
    double mean = 0;
    for (const RunRecord& r : clean.runs)
      if (r.method == method && r.seed_index != 1) mean += r.metrics.at("test_clean").accuracy / 2;
    EXPECT_DOUBLE_EQ(acc["mean"].get<double>(), mean);
    EXPECT_TRUE(std::isfinite(j["cross_seed"][method]["disagreement"]["test_clean"].get<double>()));
    for (double v : j["cross_seed"][method]["saliency"]["sets"]["test_clean"].get<std::vector<double>>())
      ASSERT_TRUE(std::isfinite(v));
  }
  EXPECT_NE(summary_table(poisoned).find("erm: 1 seed(s) diverged and are left out above: 1 at step 20"),
            std::string::npos)
      << summary_table(poisoned);
}

}  // namespace
}  // namespace sb
