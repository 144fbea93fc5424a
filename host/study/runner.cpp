// The stages every method is built from (study/runner.h).
#include "study/runner.h"

#include <algorithm>
#include <numeric>
#include <optional>

#include "core/nvtx.h"

namespace sb {
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

}  // namespace

void Study::say(const std::string& method, const std::string& what) const {
  if (note) note(method, what);
}

double Study::train_erm(const std::string& method, const std::vector<float>& x, const std::vector<std::vector<int32_t>>& rows,
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

std::vector<std::pair<std::string, int>> Study::add_eval_sets() {
  std::vector<std::pair<std::string, int>> ids = {{"train", Backend::kTrainingSet}};
  for (const auto& [name, x, per_seed] : test_sets())
    ids.push_back({name, backend.add_eval_set(x, data.y_test.data(), NT, per_seed)});
  return ids;
}

std::vector<std::map<std::string, SetMetrics>> Study::evaluate_sets(const std::vector<std::pair<std::string, int>>& ids) {
  std::vector<std::map<std::string, SetMetrics>> out(S);
  std::vector<SetMetrics> m(S);
  for (const auto& [name, id] : ids) {
    backend.evaluate_set(id, m.data());
    for (int s = 0; s < S; ++s) out[s][name] = m[s];
  }
  return out;
}

std::vector<std::map<std::string, SetMetrics>> Study::evaluate(const std::vector<float>& x_train,
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

std::vector<std::tuple<std::string, const float*, bool>> Study::test_sets() const {
  return {{"test_clean", data.x_test.data(), false},
          {"test_aligned", x_aligned.data(), true},
          {"test_conflicting", x_conflicting.data(), true}};
}

void Study::finish(const std::string& method, const std::vector<float>& params, const std::vector<float>& x_train,
    std::vector<RunRecord>& records, MethodCrossSeed& cross, MethodTiming& tm) {
  const auto t0 = Clock::now();
  backend.reset(shape, S, params.data(), cfg.adam);
  std::map<std::string, std::vector<int8_t>> pred;
  std::vector<std::map<std::string, SetMetrics>> sets = evaluate(x_train, &pred);
  for (int s = 0; s < S; ++s) records[s].metrics = sets[s];

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

void Study::saliency(const std::string& method, const std::vector<float>& x_train, std::vector<RunRecord>& records,
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

const std::vector<float>& Study::erm_model(const std::string& for_method, MethodTiming& tm, std::vector<RunRecord>& records) {
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

std::vector<float> Study::features(const std::vector<float>& params, const float* x, int n, bool per_seed) {
  backend.reset(shape, S, params.data(), cfg.adam);
  std::vector<float> z(size_t(S) * n * shape.feature_dim());
  backend.features(x, n, per_seed, z.data());
  return z;
}

void Study::set_head(float* params_s, const Head& h) const {
  std::copy(h.W.begin(), h.W.end(), params_s + shape.off_wh());
  std::copy(h.b.begin(), h.b.end(), params_s + shape.off_bh());
}

Head Study::get_head(const float* params_s) const {
  Head h;
  h.dim = shape.feature_dim(), h.classes = K;
  h.W.assign(params_s + shape.off_wh(), params_s + shape.off_wh() + size_t(K) * h.dim);
  h.b.assign(params_s + shape.off_bh(), params_s + shape.off_bh() + K);
  return h;
}

Study::Gathered Study::gather(const std::vector<float>& z, int n, int s, const std::vector<int32_t>& rows) const {
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

std::vector<int32_t> Study::random_rows(Purpose purpose, int s, int m, std::vector<int32_t>* rest) const {
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

}  // namespace sb
