#include "study/study.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <type_traits>
#include <stdexcept>

#include "core/model.h"
#include "core/nvtx.h"
#include "core/philox.h"
#include "study/methods/methods.h"
#include "study/runner.h"

namespace sb {
namespace {

// Mean over seed pairs of the share of samples where the two seeds predict differently; pred is (S, n).
double disagreement_of(const std::vector<int8_t>& pred, int S) {
  if (S < 2) return 0;
  const size_t n = pred.size() / S;
  double sum = 0;
  for (int a = 0; a < S; ++a)
    for (int b = a + 1; b < S; ++b) {
      int differ = 0;
      for (size_t i = 0; i < n; ++i) differ += pred[a * n + i] != pred[b * n + i];
      sum += double(differ) / double(n);
    }
  return sum / (double(S) * (S - 1) / 2);
}

}  // namespace

const std::vector<std::string>& study_sets() {
  static const std::vector<std::string> sets = {"train", "test_clean", "test_aligned", "test_conflicting"};
  return sets;
}

const std::vector<std::string>& known_methods() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const Method& m : study_methods()) n.push_back(m.name);
    return n;
  }();
  return names;
}

void validate(const StudyConfig& cfg, const Dataset& data) {
  auto fail = [](const std::string& m) { throw std::invalid_argument(m); };
  if (cfg.seeds <= 0) fail("--seeds must be a positive integer, got " + std::to_string(cfg.seeds));
  if (cfg.seed_begin < 0 || cfg.seed_begin >= cfg.last_seed() || cfg.last_seed() > cfg.seeds)
    fail("--seed-range " + std::to_string(cfg.seed_begin) + ":" + std::to_string(cfg.last_seed()) +
         " is not a non-empty range within the study's " + std::to_string(cfg.seeds) + " seeds (--seeds)");
  if (cfg.steps <= 0) fail("--steps must be a positive integer, got " + std::to_string(cfg.steps));
  if (cfg.batch <= 0) fail("--batch must be a positive integer, got " + std::to_string(cfg.batch));
  if (cfg.channels <= 0) fail("--channels must be a positive integer, got " + std::to_string(cfg.channels));
  if (cfg.eval_every <= 0) fail("--eval-every must be a positive integer, got " + std::to_string(cfg.eval_every));
  if (!(cfg.lr > 0) || !std::isfinite(cfg.lr)) fail("--lr must be a positive number");
  if (cfg.batch > data.n_train)
    fail("--batch " + std::to_string(cfg.batch) + " is larger than the training set (" + std::to_string(data.n_train) +
         " samples)");
  if (cfg.methods.empty()) fail("--methods is empty");
  for (const auto& m : cfg.methods)
    if (!find_method(m)) {
      std::string known;
      for (const std::string& name : known_methods()) known += (known.empty() ? "" : ", ") + name;
      fail("unknown method '" + m + "' (known: " + known + ")");
    }
  if (!(cfg.dfr_fraction > 0 && cfg.dfr_fraction <= 1)) fail("--dfr-fraction must be in (0, 1]");
  if (!(cfg.afr_stage1_fraction > 0 && cfg.afr_stage1_fraction < 1)) fail("--afr-stage1-fraction must be in (0, 1)");
  if (std::lround(cfg.afr_stage1_fraction * data.n_train) < cfg.batch ||
      std::lround(cfg.afr_stage1_fraction * data.n_train) >= data.n_train)
    fail("--afr-stage1-fraction leaves AFR stage 1 fewer rows than a batch, or stage 2 none");
  for (int n : cfg.afr_stage1_steps)
    if (n <= 0) fail("--afr-stage1-steps must be positive integers, got " + std::to_string(n));
  if (cfg.dfr.subsamples < 1) fail("--dfr-subsamples must be a positive integer");
  if (cfg.dfr.l1_grid.empty()) fail("--dfr-l1-grid is empty");
  for (float v : cfg.dfr.l1_grid)
    if (!(v >= 0) || !std::isfinite(v)) fail("--dfr-l1-grid values must be finite and >= 0");
  if (cfg.afr.gammas.empty() || cfg.afr.lambdas.empty()) fail("--afr-gammas and --afr-lambdas must not be empty");
  for (float v : cfg.afr.gammas)
    if (!(v >= 0) || !std::isfinite(v)) fail("--afr-gammas values must be finite and >= 0");
  for (float v : cfg.afr.lambdas)
    if (!(v >= 0) || !std::isfinite(v)) fail("--afr-lambdas values must be finite and >= 0");
  if (cfg.afr.epochs < 1) fail("--afr-epochs must be a positive integer");
  ConvBaseShape shape{cfg.channels, data.length, data.classes};
  if (shape.length + 2 * ConvBaseShape::pad < ConvBaseShape::k1)
    fail("sequence length " + std::to_string(data.length) + " is too short for ConvBase (needs at least 3)");
  validate(cfg.spurious, data.length);
}

double features_bytes(const StudyConfig& cfg, const Dataset& data) {
  const ConvBaseShape shape{cfg.channels, data.length, data.classes};
  // Per seed and sample: F float features, an int32 planted class and a uint8 mask (labels are per sample only).
  return double(cfg.local_seeds()) * (data.n_train + 3.0 * data.n_test) * (4.0 * shape.feature_dim() + 5);
}

MemoryEstimate estimate_memory(const StudyConfig& cfg, const Dataset& data, bool save_features) {
  const ConvBaseShape shape{cfg.channels, data.length, data.classes};
  const double S = cfg.local_seeds(), P = double(shape.num_params()), N = data.n_train, NT = data.n_test, L = data.length,
               F = shape.feature_dim(), K = data.classes, B = cfg.batch;
  MemoryEstimate m;
  // Backend: parameters, Adam's m and v, a gradient per seed; study: initial weights, the erm model, a method's
  // copy and the one being evaluated.
  m.model_bytes = 4 * S * P * (4 + 4);
  // D_sp and the two shifted test sets per seed; the saliency buffer; one set's logits; the head's inputs (AFR holds
  // two sets' features); per-seed layer activations and their gradients for one batch (three of each layer).
  double feature_sets = 0;
  for (const std::string& method : cfg.methods)
    feature_sets = std::max(feature_sets, method.rfind("afr", 0) == 0 ? 2.0 : method.rfind("dfr", 0) == 0 ? 1.0 : 0.0);
  m.data_bytes = 4 * S * (N + 2 * NT) * L + 4 * S * std::max(N, NT) * L + 4 * S * std::max(N, NT) * K +
                 feature_sets * 4 * S * N * F +
                 3 * 4 * S * B * double(shape.channels) * (shape.l1() + shape.l2() + shape.l3());
  if (save_features) m.data_bytes += features_bytes(cfg, data);
  // Curves: (K + 3) numbers per set, four sets, per evaluation, seed and method, in maps (about 3x their size).
  const double points = double(cfg.steps) / cfg.eval_every + 1;
  m.data_bytes += 3 * 8 * (K + 3) * 4 * points * S * (cfg.methods.size() + cfg.afr_stage1_steps.size());
  return m;
}

void batch_rows(const StudyConfig& cfg, int n_train, uint32_t seed_index, int step, int32_t* rows,
                std::vector<int32_t>& epoch_perm) {
  const int per_epoch = n_train / cfg.batch;  // the last partial batch of an epoch is dropped
  const int epoch = step / per_epoch, pos = step % per_epoch;
  if (pos == 0 || epoch_perm.size() != size_t(n_train)) {
    epoch_perm.resize(n_train);
    std::iota(epoch_perm.begin(), epoch_perm.end(), 0);
    if (!cfg.fixed_order) {
      // Each epoch's shuffle has its own region of the stream, so epoch e never depends on earlier ones.
      RngStream rng(cfg.seed, seed_index, Purpose::batch_order, uint64_t(epoch) << 32);
      for (int i = n_train - 1; i > 0; --i) std::swap(epoch_perm[i], epoch_perm[rng.below(uint32_t(i) + 1)]);
    }
  }
  std::copy_n(epoch_perm.begin() + size_t(pos) * cfg.batch, cfg.batch, rows);
}

SeedData make_seed_data(const StudyConfig& cfg, const Dataset& data, uint32_t seed_index) {
  SeedData sd;
  SpuriousSet tr = plant_spurious_feature(cfg.spurious, data.x_train.data(), data.y_train.data(), data.n_train,
                                          data.length, cfg.seed, seed_index);
  SpuriousSet al = make_test_aligned(cfg.spurious, data.x_test.data(), data.y_test.data(), data.n_test, data.length,
                                     cfg.seed, seed_index);
  SpuriousSet co = make_test_conflicting(cfg.spurious, data.x_test.data(), data.y_test.data(), data.n_test,
                                         data.length, cfg.seed, seed_index);
  sd.train = std::move(tr.x);
  sd.planted_train = std::move(tr.planted_class);
  sd.test_aligned = std::move(al.x);
  sd.test_conflicting = std::move(co.x);
  sd.planted_conflicting = std::move(co.planted_class);
  return sd;
}

StudyResult run_study(const StudyConfig& cfg, const Dataset& data, Backend& backend, const ProgressFn& progress,
                      const NoteFn& note, const StudySinks& sinks, StudyStore* store) {
  validate(cfg, data);
  Study st(cfg, data, backend, progress, note, sinks, store);
  const int S = st.S;
  st.make_sets();  // D_base and the clean test set once; every seed's D_sp and shifted test sets where they are used

  StudyResult result;
  for (const std::string& listed : cfg.methods) {
    const Method& m = *find_method(listed);  // validate() refused unknown names
    std::vector<std::pair<std::string, int>> instances = {{"", cfg.steps}};  // (sweep suffix, stage-1 steps)
    if (m.stage1_sweep && !cfg.afr_stage1_steps.empty()) {
      instances.clear();
      for (int n : cfg.afr_stage1_steps)
        instances.push_back({cfg.afr_stage1_steps.size() > 1 ? "@" + std::to_string(n) : "", n});
    }
    for (const auto& [sweep, stage1_steps] : instances) {
      const std::string method = listed + sweep;
      const auto t_method = Clock::now();
      const std::string range_name = "method:" + method;
      const NvtxRange method_range(range_name.c_str());
      std::vector<RunRecord> records(S);
      for (int s = 0; s < S; ++s) records[s].seed_index = cfg.seed_begin + s, records[s].method = method;
      MethodTiming tm;
      MethodSeedEvidence& evidence = result.evidence[method];
      MethodOutputs saved;
      if (store && store->load_method(method, saved)) {  // finished before the study last stopped
        st.say(method, "done in the run folder");
        records = std::move(saved.records), evidence = std::move(saved.evidence), tm = saved.timing;
        if (sinks.model) sinks.model(method, saved.params);
        st.final_params = std::move(saved.params);
      } else {
        MethodRun run{method, sweep, stage1_steps, records, evidence, tm};
        m.run(st, run);
        tm.wall_s = seconds_since(t_method);  // a shared stage ran (and is counted) in an earlier method
        if (store) {
          store->save_method(method, {records, evidence, tm, st.final_params});
          if (store->stop_requested()) throw StudyStopped("the end of " + method);
        }
      }
      if (m.features != Method::Features::none)
        st.save_features(method, st.final_params, m.features == Method::Features::d_sp ? st.sp_set : st.base_set);
      result.timing[method] = tm;
      result.methods.push_back(method);
      for (auto& r : records) result.runs.push_back(std::move(r));
    }
  }

  for (const auto& [set, y] : {std::pair{"train", &data.y_train}, {"test_clean", &data.y_test},
                                {"test_aligned", &data.y_test}, {"test_conflicting", &data.y_test}}) {
    std::vector<int>& count = result.class_counts[set];
    count.assign(data.classes, 0);
    for (int32_t label : *y) ++count[label];
  }
  compute_cross_seed(result);
  return result;
}

void compute_cross_seed(StudyResult& result) {
  std::map<std::string, std::vector<const RunRecord*>> runs;  // per method, ascending seed index
  for (const RunRecord& r : result.runs) runs[r.method].push_back(&r);
  const bool with_erm = runs.count("erm") > 0;
  for (const std::string& method : result.methods) {
    // Diverged seeds are left out: `seeds` are the others, at positions `at` of the method's seed-major evidence.
    std::vector<const RunRecord*> seeds;
    std::vector<size_t> at;
    for (size_t i = 0; i < runs.at(method).size(); ++i)
      if (runs.at(method)[i]->diverged_step == 0) seeds.push_back(runs.at(method)[i]), at.push_back(i);
    const int S = int(seeds.size()), S_all = int(runs.at(method).size());
    const MethodSeedEvidence& ev = result.evidence.at(method);
    MethodCrossSeed& cross = result.cross_seed[method];
    cross = MethodCrossSeed{};
    // The rows of seed-major per-seed data (S_all rows) that belong to the seeds kept.
    auto kept_rows = [&](const auto& v) {
      std::remove_const_t<std::remove_reference_t<decltype(v)>> out;
      const size_t row = v.size() / std::max(S_all, 1);
      for (size_t i : at) out.insert(out.end(), v.begin() + i * row, v.begin() + (i + 1) * row);
      return out;
    };
    if (S == 0) continue;
    for (const auto& [set, pred] : ev.predictions) cross.disagreement[set] = disagreement_of(kept_rows(pred), S);
    for (const std::string set : {"test_aligned", "test_conflicting"}) {
      std::vector<double> shifted, clean;
      for (const RunRecord* r : seeds)
        shifted.push_back(r->metrics.at(set).accuracy), clean.push_back(r->metrics.at("test_clean").accuracy);
      if (S > 1) cross.underspecification[set] = seed_stats(shifted).std / seed_stats(clean).std;
    }
    // How often the method beats erm's worst-group accuracy on the same seed index (ties count half).
    if (with_erm) {
      std::map<int, const RunRecord*> erm;
      for (const RunRecord* r : runs.at("erm")) erm[r->seed_index] = r;
      for (const std::string& set : study_sets()) {
        double wins = 0;
        std::vector<double> gains;
        for (const RunRecord* r : seeds) {
          const RunRecord& e = *erm.at(r->seed_index);
          if (e.diverged_step) continue;
          const double a = r->metrics.at(set).worst_group_accuracy, b = e.metrics.at(set).worst_group_accuracy;
          wins += a > b ? 1.0 : a == b ? 0.5 : 0.0;
          gains.push_back(a - b);
        }
        if (gains.empty()) continue;
        cross.beats_erm_worst_group[set] = wins / double(gains.size());
        cross.worst_group_gain_vs_erm[set] = seed_stats(gains);
      }
    }
    // Saliency per (class, feature): the seeds' sums, in seed order, over seeds and the class's samples.
    for (const auto& [set, all_sums] : ev.saliency_sums) {
      const std::vector<double> sums = kept_rows(all_sums);
      const std::vector<int>& count = result.class_counts.at(set);
      const size_t KL = sums.size() / S, L = KL / count.size();
      std::vector<double> map(KL, 0.0);
      for (int s = 0; s < S; ++s)
        for (size_t j = 0; j < KL; ++j) map[j] += sums[s * KL + j];
      for (size_t j = 0; j < KL; ++j) map[j] /= double(S) * std::max(count[j / L], 1);
      cross.saliency[set] = std::move(map);
    }
    cross.afr_p_histogram = ev.afr_p_counts;
  }
}

}  // namespace sb
