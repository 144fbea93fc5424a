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
#include "study_doubles.h"

namespace sb {
namespace {

using test_doubles::MemoryStore;
using test_doubles::PoisoningBackend;


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

// A seed that diverged before a checkpoint stays diverged at the same step after the resume.
TEST(Diverged, KeptAcrossResume) {
  const Dataset data = load_dataset("");
  StudyConfig cfg;
  cfg.seeds = 3, cfg.steps = 30, cfg.eval_every = 10, cfg.batch = 50;
  cfg.methods = {"erm"};
  PoisoningBackend reference_backend(1, 14), resumed_backend(1, 14);
  const StudyResult reference = run_study(cfg, data, reference_backend);
  MemoryStore store;
  store.stop_after = 25;  // after step 25: seed 1 diverged at 20, the checkpoint of step 21 holds that
  EXPECT_THROW(run_study(cfg, data, resumed_backend, {}, {}, {}, &store), StudyStopped);
  store.stop_after = 0;
  const StudyResult resumed = run_study(cfg, data, resumed_backend, {}, {}, {}, &store);
  ASSERT_EQ(resumed.runs.size(), reference.runs.size());
  for (size_t i = 0; i < reference.runs.size(); ++i)
    EXPECT_EQ(run_record_json(resumed.runs[i]).dump(), run_record_json(reference.runs[i]).dump()) << i;
  EXPECT_EQ(resumed.runs[1].diverged_step, 20);
}

}  // namespace
}  // namespace sb
