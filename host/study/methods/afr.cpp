// AFR (study.md §4.3): stage 1 an ERM model (on 80 % of D_sp, or the erm model itself in the source's variant),
// stage 2 its head retrained on the held-out rows with weights that favour what stage 1 got wrong (fit_afr in
// study/heads.h), the grid point and epoch chosen on the clean version of those rows.
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "study/methods/methods.h"
#include "study/runner.h"

namespace sb {
namespace {

// Seed s's stage-1 and stage-2 rows, drawn once per study (every AFR variant and stage-1 sweep shares them).
void make_afr_split(Study& st) {
  if (!st.afr_stage1_rows.empty()) return;
  st.afr_stage1_rows.resize(st.S), st.afr_stage2_rows.resize(st.S);
  const int m = int(std::lround(st.cfg.afr_stage1_fraction * st.N));
  for (int s = 0; s < st.S; ++s)
    st.afr_stage1_rows[s] = st.random_rows(Purpose::afr_split, s, m, &st.afr_stage2_rows[s]);
}

void reweight_head(Study& st, MethodRun& run, bool source_variant) {
  const std::string& method = run.name;
  const StudyConfig& cfg = st.cfg;
  make_afr_split(st);
  std::vector<float> params;
  if (source_variant) {
    params = st.erm_model(method, run.tm, run.records);  // stage 1 = erm, which trained on the stage-2 rows too
  } else {
    st.train_erm(method + " stage 1", st.sp_set, st.afr_stage1_rows, run.stage1_steps, params, run.records, run.tm);
  }
  st.say(method, "stage 2: reweighted head on " + std::to_string(st.afr_stage2_rows[0].size()) +
                     " samples per seed, " + std::to_string(cfg.afr.gammas.size() * cfg.afr.lambdas.size()) +
                     " grid points x " + std::to_string(cfg.afr.epochs) + " epochs");
  auto t0 = Clock::now();
  const std::vector<float> z_sp = st.features(params, st.sp_set);
  const std::vector<float> z_base = st.features(params, st.base_set);
  run.tm.stages.push_back({"features", seconds_since(t0), 0, false});
  t0 = Clock::now();
  std::vector<std::vector<float>> p_true(st.S);
#pragma omp parallel for schedule(dynamic, 1) num_threads(st.backend.threads())
  for (int s = 0; s < st.S; ++s) {
    // Stage 2 sees the held-out rows as in D_sp; validation is the clean (D_base) version of the same rows.
    const Study::Gathered train = st.gather(z_sp, st.N, s, st.afr_stage2_rows[s]);
    const Study::Gathered val = st.gather(z_base, st.N, s, st.afr_stage2_rows[s]);
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

void run_afr(Study& st, MethodRun& run) { reweight_head(st, run, false); }
void run_afr_source(Study& st, MethodRun& run) { reweight_head(st, run, true); }

}  // namespace sb
