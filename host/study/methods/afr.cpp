// AFR (study.md §4.3): stage 1 an ERM model (on 80 % of D_sp, or the erm model itself in the source's variant),
// stage 2 its head retrained on the held-out rows with weights that favour what stage 1 got wrong (fit_afr in
// study/heads.h), the grid point and epoch chosen on the clean version of those rows. afr-oracle chooses them on the
// clean test set instead: what the best selector could get out of stage 2, an upper bound (issue 14).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "study/methods/methods.h"
#include "study/runner.h"

namespace sb {
namespace {

// Which rows choose AFR's grid point and epoch.
enum class AfrSelector {
  held_out,  // the paper's: worst-group accuracy on the clean (D_base) version of the stage-2 rows
  oracle,    // an upper bound, not a method: worst-group accuracy on the clean test set itself
};

void reweight_head(Study& st, MethodRun& run, bool source_variant, AfrSelector selector) {
  const std::string& method = run.name;
  const StudyConfig& cfg = st.cfg;
  // Stage 1 = erm in the source's variant (it trained on the stage-2 rows too); else its own model, shared by afr and
  // afr-oracle with the same stage-1 steps (afr@N and afr-oracle@N in a sweep).
  const std::string owner = "afr" + run.sweep;
  st.make_afr_split();
  std::vector<float> params = source_variant ? st.erm_model(method, run.tm, run.records)
                                             : st.afr_stage1_model(run.stage1_steps, owner, method, run.tm, run.records);
  st.say(method, "stage 2: reweighted head on " + std::to_string(st.afr_stage2_rows[0].size()) +
                     " samples per seed, " + std::to_string(cfg.afr.gammas.size() * cfg.afr.lambdas.size()) +
                     " grid points x " + std::to_string(cfg.afr.epochs) + " epochs");
  auto t0 = Clock::now();
  const Study::Features z_sp = st.features(params, st.sp_set);
  const Study::Features z_val = st.features(params, selector == AfrSelector::oracle ? st.test_set : st.base_set);
  std::vector<int32_t> test_rows(selector == AfrSelector::oracle ? st.NT : 0);
  std::iota(test_rows.begin(), test_rows.end(), 0);
  run.tm.stages.push_back({"features", seconds_since(t0), 0, false});
  t0 = Clock::now();
  std::vector<std::vector<float>> p_true(st.S);
#pragma omp parallel for schedule(dynamic, 1) num_threads(st.backend.threads())
  for (int s = 0; s < st.S; ++s) {
    // Stage 2 sees the held-out rows as in D_sp; validation is the clean (D_base) version of the same rows, or for
    // the oracle the clean test set.
    const Study::Gathered train = st.gather(z_sp, s, st.afr_stage2_rows[s]);
    const Study::Gathered val = st.gather(z_val, s, selector == AfrSelector::oracle ? test_rows : st.afr_stage2_rows[s]);
    float* ps = params.data() + size_t(s) * st.P;
    AfrResult r = fit_afr(train.set(), st.get_head(ps), val.set(), cfg.afr);
    st.set_head(ps, r.head);
    RunRecord& rec = run.records[s];
    rec.has_afr = true;
    rec.afr_gamma = r.gamma, rec.afr_lambda = r.lambda, rec.afr_epoch = r.epoch, rec.afr_ess = r.ess;
    rec.afr_class_mass = r.class_mass;
    rec.afr_stage1_steps = source_variant ? cfg.steps : run.stage1_steps;
    p_true[s] = std::move(r.p_true);
  }
  const double grid = double(cfg.afr.gammas.size() * cfg.afr.lambdas.size());
  run.tm.stages.push_back({"head_fit", seconds_since(t0), grid * cfg.afr.epochs, false});
  run.evidence.afr_p_counts.assign(20, 0.0);
  for (const auto& ps : p_true)
    for (float p : ps) run.evidence.afr_p_counts[std::min(19, std::max(0, int(p * 20)))] += 1;
  st.finish(method, params, st.sp_set, run.records, run.evidence, run.tm);
}

}  // namespace

void run_afr(Study& st, MethodRun& run) { reweight_head(st, run, false, AfrSelector::held_out); }
void run_afr_source(Study& st, MethodRun& run) { reweight_head(st, run, true, AfrSelector::held_out); }
void run_afr_oracle(Study& st, MethodRun& run) { reweight_head(st, run, false, AfrSelector::oracle); }

}  // namespace sb
