// DFR (study.md §4.2): the erm model's head refitted on a clean subset of D_base, per seed (fit_dfr in
// study/heads.h): the paper's L1-tuned, class-balanced, averaged variant, or the source's plain refit.
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "study/methods/methods.h"
#include "study/runner.h"

namespace sb {
namespace {

void refit_head(Study& st, MethodRun& run, bool source_variant) {
  const std::string& method = run.name;
  const std::vector<float>& erm = st.erm_model(method, run.tm, run.records);
  st.say(method, "refitting the head on " + std::to_string(int(std::lround(st.cfg.dfr_fraction * st.N))) +
                     " D_base samples per seed");
  auto t0 = Clock::now();
  const std::vector<float> z = st.features(erm, st.base_set);
  run.tm.stages.push_back({"features", seconds_since(t0), 0, false});
  t0 = Clock::now();
  std::vector<float> params = erm;
  DfrConfig dc = st.cfg.dfr;
  dc.source_variant = source_variant;
  const int m = std::max(1, int(std::lround(st.cfg.dfr_fraction * st.N)));
#pragma omp parallel for schedule(dynamic, 1) num_threads(st.backend.threads())
  for (int s = 0; s < st.S; ++s) {
    const Study::Gathered g = st.gather(z, st.N, s, st.random_rows(Purpose::dfr_subsample, s, m));
    RngStream rng(st.cfg.seed, st.seed_index(s), Purpose::dfr_subsample, uint64_t(1) << 40);
    DfrResult r = fit_dfr(g.set(), st.K, dc, rng);
    st.set_head(params.data() + size_t(s) * st.P, r.head);
    RunRecord& rec = run.records[s];
    rec.has_dfr = true;
    rec.dfr_l1 = r.l1;
    rec.dfr_tune_worst_group = r.tune_worst_group_per_l1;
  }
  run.tm.stages.push_back({"head_fit", seconds_since(t0), 0, false});
  st.finish(method, params, st.sp_set, run.records, run.evidence, run.tm);
}

}  // namespace

void run_dfr(Study& st, MethodRun& run) { refit_head(st, run, false); }
void run_dfr_source(Study& st, MethodRun& run) { refit_head(st, run, true); }

}  // namespace sb
