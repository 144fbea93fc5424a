// DFR (study.md §4.2): the erm model's head refitted on a clean subset of D_base, per seed (fit_dfr in
// study/heads.h): the paper's L1-tuned, class-balanced, averaged variant, or the source's plain refit. The probes
// (issue 14) ask how much of the class a linear head can read off frozen features at all: one L1-tuned,
// class-balanced fit on all of D_base, on erm's features (probe-erm, DFR's upper bound) or erm-base's (probe-base).
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "study/methods/methods.h"
#include "study/runner.h"

namespace sb {
namespace {

// Which model's head is refitted, on how much of D_base, and how.
struct Refit {
  bool base_model = false;  // erm-base's features instead of erm's
  bool all_rows = false;    // all of D_base instead of --dfr-fraction of it
  bool source_variant = false;
  bool one_subsample = false;  // a single class-balanced fit instead of --dfr-subsamples averaged
};

void refit_head(Study& st, MethodRun& run, const Refit& how) {
  const std::string& method = run.name;
  const std::vector<float>& model = how.base_model ? st.erm_base_model(method, run.tm, run.records)
                                                   : st.erm_model(method, run.tm, run.records);
  const int m = how.all_rows ? st.N : std::max(1, int(std::lround(st.cfg.dfr_fraction * st.N)));
  st.say(method, "refitting the head on " + std::to_string(m) + " D_base samples per seed");
  auto t0 = Clock::now();
  const Study::Features z = st.features(model, st.base_set);
  run.tm.stages.push_back({"features", seconds_since(t0), 0, false});
  t0 = Clock::now();
  std::vector<float> params = model;
  DfrConfig dc = st.cfg.dfr;
  dc.source_variant = how.source_variant;
  if (how.one_subsample) dc.subsamples = 1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(st.backend.threads())
  for (int s = 0; s < st.S; ++s) {
    const Study::Gathered g = st.gather(z, s, st.random_rows(Purpose::dfr_subsample, s, m));
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

//                                                          base_model all_rows source one_subsample
void run_dfr(Study& st, MethodRun& run) { refit_head(st, run, {false, false, false, false}); }
void run_dfr_source(Study& st, MethodRun& run) { refit_head(st, run, {false, false, true, false}); }
void run_probe_erm(Study& st, MethodRun& run) { refit_head(st, run, {false, true, false, true}); }
void run_probe_base(Study& st, MethodRun& run) { refit_head(st, run, {true, true, false, true}); }

}  // namespace sb
