#include "study/study.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <optional>
#include <tuple>
#include <stdexcept>

#include "core/nvtx.h"
#include "core/philox.h"
#include "cpu/convbase.h"

namespace sb {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

}  // namespace

const std::vector<std::string>& study_sets() {
  static const std::vector<std::string> sets = {"train", "test_clean", "test_aligned", "test_conflicting"};
  return sets;
}

const std::vector<std::string>& known_methods() {
  static const std::vector<std::string> methods = {"erm-base", "erm", "dfr", "dfr-source", "afr", "afr-source"};
  return methods;
}

void validate(const StudyConfig& cfg, const Dataset& data) {
  auto fail = [](const std::string& m) { throw std::invalid_argument(m); };
  if (cfg.seeds <= 0) fail("--seeds must be a positive integer, got " + std::to_string(cfg.seeds));
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
    if (std::find(known_methods().begin(), known_methods().end(), m) == known_methods().end())
      fail("unknown method '" + m + "' (known: erm-base, erm, dfr, dfr-source, afr, afr-source)");
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

namespace {

// Mean over seed pairs of the share of samples the two seeds predict differently; pred is (S, NT).
double disagreement_of(const std::vector<int8_t>& pred, int S, int NT) {
  if (S < 2) return 0;
  double sum = 0;
  for (int a = 0; a < S; ++a)
    for (int b = a + 1; b < S; ++b) {
      int differ = 0;
      for (int i = 0; i < NT; ++i) differ += pred[size_t(a) * NT + i] != pred[size_t(b) * NT + i];
      sum += double(differ) / NT;
    }
  return sum / (double(S) * (S - 1) / 2);
}

// Everything one run_study call shares between its methods.
struct Study {
  const StudyConfig& cfg;
  const Dataset& data;
  Backend& backend;
  const ProgressFn& progress;
  const NoteFn& note;
  int S, N, NT, L, K;
  ConvBaseShape shape;
  size_t P;
  std::vector<float> x_sp, x_base, x_aligned, x_conflicting;  // (S, N|NT, L)
  std::vector<int32_t> planted_conflicting;                    // (S, NT): class whose block was planted
  std::vector<float> erm_params;                               // (S, P) once `erm` has trained
  double erm_train_s = 0, erm_epochs = 0;
  std::map<std::string, std::vector<int8_t>> erm_pred;         // set -> (S, NT) predictions of erm, for pairing
  std::vector<std::vector<int32_t>> afr_stage1_rows, afr_stage2_rows;  // per seed

  Study(const StudyConfig& c, const Dataset& d, Backend& b, const ProgressFn& p, const NoteFn& n)
      : cfg(c), data(d), backend(b), progress(p), note(n), S(c.seeds), N(d.n_train), NT(d.n_test), L(d.length),
        K(d.classes), shape{c.channels, d.length, d.classes}, P(shape.num_params()) {}

  void say(const std::string& method, const std::string& what) const {
    if (note) note(method, what);
  }

  // ERM from the PyTorch-default initialisation on x (S, N, L); rows[s] restricts seed s to a subset (or empty).
  // Fills params (S, P) and records curves; returns the training seconds.
  double train_erm(const std::string& method, const std::vector<float>& x, const std::vector<std::vector<int32_t>>& rows,
                   int steps, std::vector<float>& params, std::vector<RunRecord>& records, MethodTiming& tm) {
    params.resize(size_t(S) * P);
    for (int s = 0; s < S; ++s) convbase_init(shape, cfg.seed, uint32_t(s), params.data() + size_t(s) * P);
    backend.reset(shape, S, params.data(), cfg.adam);
    backend.set_train_data(x.data(), data.y_train.data(), N);
    double train_s = 0, eval_s = 0;
    const auto t_sets = Clock::now();
    const std::vector<std::pair<std::string, int>> eval_sets = add_eval_sets();
    eval_s += seconds_since(t_sets);
    const int n_rows = rows.empty() ? N : int(rows[0].size());
    std::vector<std::vector<int32_t>> perms(S);
    std::vector<int32_t> batch(size_t(S) * cfg.batch);
    std::vector<float> loss(S);
    const int per_epoch = n_rows / cfg.batch;
    std::optional<NvtxRange> epoch_range;
    for (int step = 0; step < steps; ++step) {
      if (step % per_epoch == 0) epoch_range.reset(), epoch_range.emplace("epoch");
      const NvtxRange step_range("train_step");
      const auto t_step = Clock::now();
      for (int s = 0; s < S; ++s) {
        int32_t* b = batch.data() + size_t(s) * cfg.batch;
        batch_rows(cfg, n_rows, uint32_t(s), step, b, perms[s]);
        if (!rows.empty())
          for (int i = 0; i < cfg.batch; ++i) b[i] = rows[s][b[i]];
      }
      const int done = step + 1;
      const bool eval = done % cfg.eval_every == 0 || done == steps;
      backend.train_step(batch.data(), cfg.batch, cfg.lr, eval ? loss.data() : nullptr);
      train_s += seconds_since(t_step);
      if (!eval) continue;
      const auto t_eval = Clock::now();
      const NvtxRange eval_range("evaluate");
      std::vector<std::map<std::string, SetMetrics>> sets = evaluate_sets(eval_sets);
      double clean = 0, train_loss = 0;
      for (int s = 0; s < S; ++s) {
        clean += sets[s]["test_clean"].accuracy;
        train_loss += loss[s];
        records[s].curves.push_back({done, sets[s]});
      }
      eval_s += seconds_since(t_eval);
      if (progress) progress(method, done, steps, clean / S, train_loss / S, double(S) * done / train_s);
    }
    backend.get_params(params.data());
    const double epochs = double(steps) / (n_rows / cfg.batch);
    tm.train_s += train_s;
    tm.eval_s += eval_s;
    tm.seed_steps_per_s = double(S) * steps / train_s;
    tm.epoch_s = train_s / epochs;
    tm.stages.push_back({"erm_training", train_s, epochs, false});
    tm.stages.push_back({"periodic_evaluation", eval_s, 0, false});
    return train_s;
  }

  // The training set (the backend's, from set_train_data) and the three test sets, kept by the backend (after its
  // reset) for periodic evaluation: (set name, id) pairs.
  std::vector<std::pair<std::string, int>> add_eval_sets() {
    std::vector<std::pair<std::string, int>> ids = {{"train", Backend::kTrainingSet}};
    for (const auto& [name, x, per_seed] : test_sets())
      ids.push_back({name, backend.add_eval_set(x, data.y_test.data(), NT, per_seed)});
    return ids;
  }

  // Metrics of the backend's current model on the sets of add_eval_sets, scored where the backend runs (on a GPU
  // only S * (classes + 1) numbers per set come back).
  std::vector<std::map<std::string, SetMetrics>> evaluate_sets(const std::vector<std::pair<std::string, int>>& ids) {
    std::vector<std::map<std::string, SetMetrics>> out(S);
    std::vector<SetMetrics> m(S);
    for (const auto& [name, id] : ids) {
      backend.evaluate_set(id, m.data());
      for (int s = 0; s < S; ++s) out[s][name] = m[s];
    }
    return out;
  }

  // Metrics of the backend's current model on the training set x_train and the three test sets;
  // pred, if given, receives the (S, NT) predictions per test set.
  std::vector<std::map<std::string, SetMetrics>> evaluate(const std::vector<float>& x_train,
                                                          std::map<std::string, std::vector<int8_t>>* pred) {
    std::vector<std::map<std::string, SetMetrics>> out(S);
    std::vector<float> logits(size_t(S) * std::max(N, NT) * K);
    backend.predict(x_train.data(), N, true, logits.data());
    for (int s = 0; s < S; ++s) out[s]["train"] = evaluate_logits(logits.data() + size_t(s) * N * K, data.y_train.data(), N, K);
    for (const auto& [name, x, per_seed] : test_sets()) {
      backend.predict(x, NT, per_seed, logits.data());
      for (int s = 0; s < S; ++s)
        out[s][name] = evaluate_logits(logits.data() + size_t(s) * NT * K, data.y_test.data(), NT, K);
      if (pred) {
        std::vector<int8_t>& p = (*pred)[name];
        p.resize(size_t(S) * NT);
        for (size_t i = 0; i < size_t(S) * NT; ++i) {
          const float* z = logits.data() + i * K;
          p[i] = int8_t(std::max_element(z, z + K) - z);  // first maximum, as evaluate_logits
        }
      }
    }
    return out;
  }

  std::vector<std::tuple<std::string, const float*, bool>> test_sets() const {
    return {{"test_clean", data.x_test.data(), false},
            {"test_aligned", x_aligned.data(), true},
            {"test_conflicting", x_conflicting.data(), true}};
  }

  // Final metrics, predictions and saliency of params (S, P) into records and cross.
  void finish(const std::string& method, const std::vector<float>& params, const std::vector<float>& x_train,
              std::vector<RunRecord>& records, MethodCrossSeed& cross, MethodTiming& tm) {
    const auto t0 = Clock::now();
    backend.reset(shape, S, params.data(), cfg.adam);
    std::map<std::string, std::vector<int8_t>> pred;
    std::vector<std::map<std::string, SetMetrics>> sets = evaluate(x_train, &pred);
    for (int s = 0; s < S; ++s) records[s].metrics = sets[s];
    if (method == "erm") erm_pred = pred;

    for (const auto& [name, p] : pred) cross.disagreement[name] = disagreement_of(p, S, NT);
    for (const std::string set : {"test_aligned", "test_conflicting"}) {
      std::vector<double> shifted, clean;
      for (int s = 0; s < S; ++s) shifted.push_back(sets[s][set].accuracy), clean.push_back(sets[s]["test_clean"].accuracy);
      if (S > 1) cross.underspecification[set] = seed_stats(shifted).std / seed_stats(clean).std;
    }
    tm.eval_s += seconds_since(t0);
    tm.stages.push_back({"final_evaluation", seconds_since(t0), 0, false});
    if (cfg.saliency) saliency(method, x_train, records, cross, tm);
  }

  void saliency(const std::string& method, const std::vector<float>& x_train, std::vector<RunRecord>& records,
                MethodCrossSeed& cross, MethodTiming& tm) {
    say(method, "saliency");
    const auto t0 = Clock::now();
    struct Set { std::string name; const float* x; bool per_seed; int n; const int32_t* y; };
    std::vector<Set> sets = {{"train", x_train.data(), true, N, data.y_train.data()}};
    for (const auto& [name, x, per_seed] : test_sets()) sets.push_back({name, x, per_seed, NT, data.y_test.data()});
    std::vector<float> sal(size_t(S) * N * L);
    for (const Set& set : sets) {
      backend.saliency(set.x, set.y, set.n, set.per_seed, sal.data());
      std::vector<double> map(size_t(K) * L, 0.0);
      std::vector<int> count(K, 0);
      for (int i = 0; i < set.n; ++i) ++count[set.y[i]];
      for (int s = 0; s < S; ++s) {
        double reliance = 0;
        for (int i = 0; i < set.n; ++i) {
          const float* g = sal.data() + (size_t(s) * set.n + i) * L;
          const int y = set.y[i];
          // The shortcut's block: the sample's own class, except on the conflicting set (the planted class).
          const int k = set.name == "test_conflicting" ? planted_conflicting[size_t(s) * NT + i] : y;
          double total = 0, own = 0;
          for (int p = 0; p < L; ++p) {
            total += g[p];
            map[size_t(y) * L + p] += g[p];
          }
          for (int p = block_begin(cfg.spurious, k); p < block_end(cfg.spurious, k, L); ++p) own += g[p];
          reliance += total > 0 ? own / total : 0.0;
        }
        records[s].shortcut_reliance[set.name] = reliance / set.n;
      }
      for (int y = 0; y < K; ++y)
        for (int p = 0; p < L; ++p) map[size_t(y) * L + p] /= double(S) * std::max(count[y], 1);
      cross.saliency[set.name] = std::move(map);
    }
    tm.stages.push_back({"saliency", seconds_since(t0), 0, false});
  }

  // The erm model (S, P), trained once and shared by erm, dfr*, afr-source.
  const std::vector<float>& erm_model(const std::string& for_method, MethodTiming& tm, std::vector<RunRecord>& records) {
    if (erm_params.empty()) {
      std::vector<RunRecord> scratch(S);
      MethodTiming own;
      erm_train_s = train_erm(for_method == "erm" ? "erm" : for_method + ": erm", x_sp, {}, cfg.steps, erm_params,
                              for_method == "erm" ? records : scratch, for_method == "erm" ? tm : own);
      erm_epochs = double(cfg.steps) / (N / cfg.batch);
      if (for_method != "erm") {  // this method pays for the erm model it needs
        tm.stages.insert(tm.stages.end(), own.stages.begin(), own.stages.end());
        tm.train_s += own.train_s, tm.eval_s += own.eval_s;
      }
    } else if (for_method != "erm") {
      tm.stages.push_back({"erm_training", erm_train_s, erm_epochs, true});
    }
    return erm_params;
  }

  // Head inputs (S, n, F) of `params` for x (per seed or shared).
  std::vector<float> features(const std::vector<float>& params, const float* x, int n, bool per_seed) {
    backend.reset(shape, S, params.data(), cfg.adam);
    std::vector<float> z(size_t(S) * n * shape.feature_dim());
    backend.features(x, n, per_seed, z.data());
    return z;
  }

  void set_head(float* params_s, const Head& h) const {
    std::copy(h.W.begin(), h.W.end(), params_s + shape.off_wh());
    std::copy(h.b.begin(), h.b.end(), params_s + shape.off_bh());
  }
  Head get_head(const float* params_s) const {
    Head h;
    h.dim = shape.feature_dim(), h.classes = K;
    h.W.assign(params_s + shape.off_wh(), params_s + shape.off_wh() + size_t(K) * h.dim);
    h.b.assign(params_s + shape.off_bh(), params_s + shape.off_bh() + K);
    return h;
  }

  // Rows of one seed's features z (S, n, F), gathered into a contiguous FeatureSet's storage.
  struct Gathered {
    std::vector<float> z;
    std::vector<int32_t> y;
    FeatureSet set() const { return {z.data(), y.data(), int(y.size()), int(z.size() / std::max<size_t>(y.size(), 1))}; }
  };
  Gathered gather(const std::vector<float>& z, int n, int s, const std::vector<int32_t>& rows) const {
    const int F = shape.feature_dim();
    Gathered g;
    g.z.resize(rows.size() * F);
    g.y.resize(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      std::copy_n(z.data() + (size_t(s) * n + rows[i]) * F, F, g.z.data() + i * F);
      g.y[i] = data.y_train[rows[i]];
    }
    return g;
  }

  // Seed s's random subset of m training rows from `purpose`'s stream (partial Fisher-Yates), ascending.
  std::vector<int32_t> random_rows(Purpose purpose, int s, int m, std::vector<int32_t>* rest = nullptr) const {
    std::vector<int32_t> all(N);
    std::iota(all.begin(), all.end(), 0);
    RngStream rng(cfg.seed, uint32_t(s), purpose, 0);
    for (int i = 0; i < m; ++i) std::swap(all[i], all[i + rng.below(uint32_t(N - i))]);
    std::vector<int32_t> pick(all.begin(), all.begin() + m);
    std::sort(pick.begin(), pick.end());
    if (rest) {
      rest->assign(all.begin() + m, all.end());
      std::sort(rest->begin(), rest->end());
    }
    return pick;
  }

  void run_dfr(const std::string& method, std::vector<RunRecord>& records, MethodCrossSeed& cross, MethodTiming& tm) {
    const std::vector<float>& erm = erm_model(method, tm, records);
    say(method, "refitting the head on " + std::to_string(int(std::lround(cfg.dfr_fraction * N))) +
                    " D_base samples per seed");
    auto t0 = Clock::now();
    const std::vector<float> z = features(erm, data.x_train.data(), N, false);
    tm.stages.push_back({"features", seconds_since(t0), 0, false});
    t0 = Clock::now();
    std::vector<float> params = erm;
    DfrConfig dc = cfg.dfr;
    dc.source_variant = method == "dfr-source";
    const int m = std::max(1, int(std::lround(cfg.dfr_fraction * N)));
#pragma omp parallel for schedule(dynamic, 1) num_threads(backend.threads())
    for (int s = 0; s < S; ++s) {
      const Gathered g = gather(z, N, s, random_rows(Purpose::dfr_subsample, s, m));
      RngStream rng(cfg.seed, uint32_t(s), Purpose::dfr_subsample, uint64_t(1) << 40);
      DfrResult r = fit_dfr(g.set(), K, dc, rng);
      set_head(params.data() + size_t(s) * P, r.head);
      records[s].has_dfr = true;
      records[s].dfr_l1 = r.l1;
      records[s].dfr_tune_worst_group = r.tune_worst_group_per_l1;
    }
    tm.stages.push_back({"head_fit", seconds_since(t0), 0, false});
    finish(method, params, x_sp, records, cross, tm);
  }

  void make_afr_split() {
    if (!afr_stage1_rows.empty()) return;
    afr_stage1_rows.resize(S), afr_stage2_rows.resize(S);
    const int m = int(std::lround(cfg.afr_stage1_fraction * N));
    for (int s = 0; s < S; ++s) afr_stage1_rows[s] = random_rows(Purpose::afr_split, s, m, &afr_stage2_rows[s]);
  }

  void run_afr(const std::string& method, int stage1_steps, std::vector<RunRecord>& records, MethodCrossSeed& cross,
               MethodTiming& tm) {
    make_afr_split();
    const bool source = method == "afr-source";
    std::vector<float> params;
    if (source) {
      params = erm_model(method, tm, records);  // stage 1 = erm, which trained on the stage-2 rows too
    } else {
      train_erm(method + " stage 1", x_sp, afr_stage1_rows, stage1_steps, params, records, tm);
    }
    say(method, "stage 2: reweighted head on " + std::to_string(afr_stage2_rows[0].size()) + " samples per seed, " +
                    std::to_string(cfg.afr.gammas.size() * cfg.afr.lambdas.size()) + " grid points x " +
                    std::to_string(cfg.afr.epochs) + " epochs");
    auto t0 = Clock::now();
    const std::vector<float> z_sp = features(params, x_sp.data(), N, true);
    const std::vector<float> z_base = features(params, data.x_train.data(), N, false);
    tm.stages.push_back({"features", seconds_since(t0), 0, false});
    t0 = Clock::now();
    std::vector<std::vector<float>> p_true(S);
#pragma omp parallel for schedule(dynamic, 1) num_threads(backend.threads())
    for (int s = 0; s < S; ++s) {
      // Stage 2 sees the held-out rows as in D_sp; validation is the clean (D_base) version of the same rows.
      const Gathered train = gather(z_sp, N, s, afr_stage2_rows[s]);
      const Gathered val = gather(z_base, N, s, afr_stage2_rows[s]);
      float* ps = params.data() + size_t(s) * P;
      AfrResult r = fit_afr(train.set(), get_head(ps), val.set(), cfg.afr);
      set_head(ps, r.head);
      RunRecord& rec = records[s];
      rec.has_afr = true;
      rec.afr_gamma = r.gamma, rec.afr_lambda = r.lambda, rec.afr_epoch = r.epoch, rec.afr_ess = r.ess;
      rec.afr_class_mass = r.class_mass;
      rec.afr_stage1_steps = source ? cfg.steps : stage1_steps;
      p_true[s] = std::move(r.p_true);
    }
    const double grid = double(cfg.afr.gammas.size() * cfg.afr.lambdas.size());
    tm.stages.push_back({"head_fit", seconds_since(t0), grid * cfg.afr.epochs, false});
    cross.afr_p_histogram.assign(20, 0.0);
    for (const auto& ps : p_true)
      for (float p : ps) cross.afr_p_histogram[std::min(19, std::max(0, int(p * 20)))] += 1;
    finish(method, params, x_sp, records, cross, tm);
  }
};

}  // namespace

StudyResult run_study(const StudyConfig& cfg, const Dataset& data, Backend& backend, const ProgressFn& progress,
                      const NoteFn& note) {
  validate(cfg, data);
  Study st(cfg, data, backend, progress, note);
  const int S = st.S, N = st.N, NT = st.NT, L = st.L;

  // Per-seed data, built once: D_sp and the two shifted test sets (x is (S, N, L)); D_base copied per seed.
  st.x_sp.resize(size_t(S) * N * L), st.x_aligned.resize(size_t(S) * NT * L);
  st.x_conflicting.resize(size_t(S) * NT * L), st.planted_conflicting.resize(size_t(S) * NT);
#pragma omp parallel for schedule(dynamic, 1) num_threads(backend.threads())
  for (int s = 0; s < S; ++s) {
    SeedData sd = make_seed_data(cfg, data, uint32_t(s));
    std::copy(sd.train.begin(), sd.train.end(), st.x_sp.begin() + size_t(s) * N * L);
    std::copy(sd.test_aligned.begin(), sd.test_aligned.end(), st.x_aligned.begin() + size_t(s) * NT * L);
    std::copy(sd.test_conflicting.begin(), sd.test_conflicting.end(), st.x_conflicting.begin() + size_t(s) * NT * L);
    std::copy(sd.planted_conflicting.begin(), sd.planted_conflicting.end(), st.planted_conflicting.begin() + size_t(s) * NT);
  }
  if (std::find(cfg.methods.begin(), cfg.methods.end(), "erm-base") != cfg.methods.end()) {
    st.x_base.resize(size_t(S) * N * L);
    for (int s = 0; s < S; ++s) std::copy(data.x_train.begin(), data.x_train.end(), st.x_base.begin() + size_t(s) * N * L);
  }

  StudyResult result;
  for (const std::string& listed : cfg.methods) {
    std::vector<std::pair<std::string, int>> instances = {{listed, cfg.steps}};
    if (listed == "afr" && !cfg.afr_stage1_steps.empty()) {
      instances.clear();
      for (int n : cfg.afr_stage1_steps)
        instances.push_back({cfg.afr_stage1_steps.size() > 1 ? "afr@" + std::to_string(n) : "afr", n});
    }
    for (const auto& [method, stage1_steps] : instances) {
      const auto t_method = Clock::now();
      const std::string range_name = "method:" + method;
      const NvtxRange method_range(range_name.c_str());
      std::vector<RunRecord> records(S);
      for (int s = 0; s < S; ++s) records[s].seed_index = s, records[s].method = method;
      MethodTiming tm;
      MethodCrossSeed cross;
      if (listed == "erm-base" || listed == "erm") {
        std::vector<float> own;
        const std::vector<float>& params =
            listed == "erm" ? st.erm_model("erm", tm, records)
                            : (st.train_erm(method, st.x_base, {}, cfg.steps, own, records, tm), own);
        st.finish(method, params, listed == "erm" ? st.x_sp : st.x_base, records, cross, tm);
      } else if (listed == "dfr" || listed == "dfr-source") {
        st.run_dfr(method, records, cross, tm);
      } else {
        st.run_afr(method, stage1_steps, records, cross, tm);
      }
      tm.wall_s = seconds_since(t_method);  // a shared stage ran (and is counted) in an earlier method
      result.timing[method] = tm;
      result.cross_seed[method] = std::move(cross);
      result.methods.push_back(method);
      for (auto& r : records) result.runs.push_back(std::move(r));
    }
  }

  // Pairing with erm: how often a method beats erm's worst-group accuracy on the same seed index.
  std::map<std::pair<std::string, int>, const RunRecord*> by_key;
  for (const RunRecord& r : result.runs) by_key[{r.method, r.seed_index}] = &r;
  if (std::find(result.methods.begin(), result.methods.end(), "erm") != result.methods.end())
    for (const std::string& method : result.methods)
      for (const std::string& set : study_sets()) {
        double wins = 0;
        for (int s = 0; s < S; ++s) {
          const double a = by_key[{method, s}]->metrics.at(set).worst_group_accuracy;
          const double b = by_key[{"erm", s}]->metrics.at(set).worst_group_accuracy;
          wins += a > b ? 1.0 : a == b ? 0.5 : 0.0;
        }
        result.cross_seed[method].beats_erm_worst_group[set] = wins / S;
      }
  return result;
}

}  // namespace sb
