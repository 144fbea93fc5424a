// The stages every method is built from (study/runner.h).
#include "study/runner.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <optional>

#include "core/nvtx.h"

namespace sb {
void Study::say(const std::string& method, const std::string& what) const {
  if (note) note(method, what);
}

void Study::make_sets() {
  std::vector<float> init(size_t(S) * P);
  for (int s = 0; s < S; ++s) convbase_init(shape, cfg.seed, seed_index(s), init.data() + size_t(s) * P);
  backend.reset(shape, S, init.data(), cfg.adam);
  base_set = backend.add_set(data.x_train.data(), data.y_train.data(), N, false);
  test_set = backend.add_set(data.x_test.data(), data.y_test.data(), NT, false);
  const bool keep_planted = bool(sinks.features);  // only the features' files need them
  if (keep_planted) planted_train.resize(size_t(S) * N), planted_aligned.resize(size_t(S) * NT);
  sp_set = backend.add_spurious_set(SpuriousSetKind::train, cfg.spurious, base_set, cfg.seed, seed_index(0),
                                    keep_planted ? planted_train.data() : nullptr);
  aligned_set = backend.add_spurious_set(SpuriousSetKind::aligned, cfg.spurious, test_set, cfg.seed, seed_index(0),
                                         keep_planted ? planted_aligned.data() : nullptr);
  planted_conflicting.resize(size_t(S) * NT);
  conflicting_set = backend.add_spurious_set(SpuriousSetKind::conflicting, cfg.spurious, test_set, cfg.seed, seed_index(0),
                                             planted_conflicting.data());
}

double Study::train_erm(const std::string& method, int train_set, const std::vector<std::vector<int32_t>>& rows,
    int steps, std::vector<float>& params, std::vector<RunRecord>& records, MethodTiming& tm) {
  params.resize(size_t(S) * P);
  for (int s = 0; s < S; ++s) convbase_init(shape, cfg.seed, seed_index(s), params.data() + size_t(s) * P);
  backend.train_on(train_set);
  double train_s = 0, eval_s = 0;
  int first_step = 0;
  TrainingCheckpoint ckpt;
  if (store && store->load_training(method, ckpt)) {
    say(method, "resuming at step " + std::to_string(ckpt.step));
    params = ckpt.params;
    backend.load_params(params.data());
    backend.set_adam_state(ckpt.adam_m.data(), ckpt.adam_v.data(), ckpt.adam_step);
    for (int s = 0; s < S; ++s) records[s].curves = ckpt.curves[s], records[s].diverged_step = ckpt.diverged_steps[s];
    first_step = ckpt.step, train_s = ckpt.train_s, eval_s = ckpt.eval_s;
  } else {
    backend.load_params(params.data());
  }
  // Saves where training stands after `done` steps (the backend is idle between steps).
  auto checkpoint = [&](int done) {
    TrainingCheckpoint c;
    c.step = done, c.train_s = train_s, c.eval_s = eval_s;
    c.params.resize(size_t(S) * P), c.adam_m.resize(c.params.size()), c.adam_v.resize(c.params.size());
    backend.get_params(c.params.data());
    backend.get_adam_state(c.adam_m.data(), c.adam_v.data(), &c.adam_step);
    for (int s = 0; s < S; ++s) c.curves.push_back(records[s].curves), c.diverged_steps.push_back(records[s].diverged_step);
    store->save_training(method, c);
  };
  const std::vector<std::pair<std::string, int>> eval_sets = sets(Backend::kTrainingSet);
  const int n_rows = rows.empty() ? N : int(rows[0].size());
  std::vector<std::vector<int32_t>> perms(S);
  std::vector<int32_t> batch(size_t(S) * cfg.batch);
  std::vector<float> loss(S);
  const int per_epoch = n_rows / cfg.batch;
  std::optional<NvtxRange> epoch_range;
  for (int step = first_step; step < steps; ++step) {
    if (step % per_epoch == 0) epoch_range.reset(), epoch_range.emplace("epoch");
    const NvtxRange step_range("train_step");
    const auto t_step = Clock::now();
    for (int s = 0; s < S; ++s) {
      int32_t* b = batch.data() + size_t(s) * cfg.batch;
      batch_rows(cfg, n_rows, seed_index(s), step, b, perms[s]);
      if (!rows.empty())
        for (int i = 0; i < cfg.batch; ++i) b[i] = rows[s][b[i]];
    }
    const int done = step + 1;
    const bool eval = done % cfg.eval_every == 0 || done == steps;
    backend.train_step(batch.data(), cfg.batch, cfg.lr, eval ? loss.data() : nullptr);
    train_s += seconds_since(t_step);
    if (eval) {
      const auto t_eval = Clock::now();
      const NvtxRange eval_range("evaluate");
      std::vector<std::map<std::string, SetMetrics>> metrics = evaluate_sets(eval_sets, nullptr);
      double clean = 0, train_loss = 0;
      for (int s = 0; s < S; ++s) {
        clean += metrics[s]["test_clean"].accuracy;
        train_loss += loss[s];
        records[s].curves.push_back({done, metrics[s]});
        if (!std::isfinite(loss[s]) && records[s].diverged_step == 0) {
          records[s].diverged_step = done;
          say(method, "seed " + std::to_string(seed_index(s)) + " diverged (training loss " + std::to_string(loss[s]) +
                          " at step " + std::to_string(done) + "): left out of the summaries");
        }
      }
      eval_s += seconds_since(t_eval);
      if (progress) progress(method, done, steps, clean / S, train_loss / S, double(S) * done / train_s);
    }
    if (!store || done == steps) continue;
    if (store->stop_requested()) {
      checkpoint(done);
      throw StudyStopped(method + " step " + std::to_string(done));
    }
    if (done % store->checkpoint_every() == 0) checkpoint(done);
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

std::vector<std::pair<std::string, int>> Study::sets(int train_set) const {
  return {{"train", train_set}, {"test_clean", test_set}, {"test_aligned", aligned_set},
          {"test_conflicting", conflicting_set}};
}

std::vector<std::map<std::string, SetMetrics>> Study::evaluate_sets(const std::vector<std::pair<std::string, int>>& ids,
    std::map<std::string, std::vector<int8_t>>* pred) {
  std::vector<std::map<std::string, SetMetrics>> out(S);
  std::vector<SetMetrics> m(S);
  for (const auto& [name, id] : ids) {
    int8_t* p = nullptr;
    if (pred && name != "train") {
      (*pred)[name].resize(size_t(S) * NT);
      p = (*pred)[name].data();
    }
    backend.evaluate_set(id, m.data(), p);
    for (int s = 0; s < S; ++s) out[s][name] = m[s];
  }
  return out;
}

void Study::finish(const std::string& method, const std::vector<float>& params, int train_set,
    std::vector<RunRecord>& records, MethodSeedEvidence& ev, MethodTiming& tm) {
  if (sinks.model) sinks.model(method, params);
  if (store || sinks.features) final_params = params;  // kept for the run folder and run_study's --save-features
  const auto t0 = Clock::now();
  backend.load_params(params.data());
  std::vector<std::map<std::string, SetMetrics>> metrics = evaluate_sets(sets(train_set), &ev.predictions);
  for (int s = 0; s < S; ++s) records[s].metrics = metrics[s];
  tm.eval_s += seconds_since(t0);
  tm.stages.push_back({"final_evaluation", seconds_since(t0), 0, false});
  if (cfg.saliency) saliency(method, train_set, records, ev, tm);
}

void Study::saliency(const std::string& method, int train_set, std::vector<RunRecord>& records,
    MethodSeedEvidence& ev, MethodTiming& tm) {
  say(method, "saliency");
  const auto t0 = Clock::now();
  std::vector<float> sal(size_t(S) * std::max(N, NT) * L);
  for (const auto& [name, id] : sets(train_set)) {
    const bool train = name == "train";
    const int n = train ? N : NT;
    const int32_t* y = train ? data.y_train.data() : data.y_test.data();
    backend.set_saliency(id, sal.data());
    std::vector<double>& sums = ev.saliency_sums[name];
    sums.assign(size_t(S) * K * L, 0.0);
    for (int s = 0; s < S; ++s) {
      double* map = sums.data() + size_t(s) * K * L;
      double reliance = 0;
      for (int i = 0; i < n; ++i) {
        const float* g = sal.data() + (size_t(s) * n + i) * L;
        // The shortcut's block: the sample's own class, except on the conflicting set (the planted class).
        const int k = name == "test_conflicting" ? planted_conflicting[size_t(s) * NT + i] : y[i];
        double total = 0, own = 0;
        for (int p = 0; p < L; ++p) {
          total += g[p];
          map[size_t(y[i]) * L + p] += g[p];
        }
        for (int p = block_begin(cfg.spurious, k); p < block_end(cfg.spurious, k, L); ++p) own += g[p];
        reliance += total > 0 ? own / total : 0.0;
      }
      records[s].shortcut_reliance[name] = reliance / n;
    }
  }
  tm.stages.push_back({"saliency", seconds_since(t0), 0, false});
}

const std::vector<float>& Study::shared_model(const SharedTraining& t, const std::string& for_method,
                                             MethodTiming& tm, std::vector<RunRecord>& records) {
  const bool own = for_method == t.owner;
  auto it = shared_models.find(t.key);
  // The owner reports the training's curves: it never takes the model from the run folder (which has none) but
  // trains it again from its last checkpoint there, to the same bits.
  if (own && it != shared_models.end() && it->second.from_store) shared_models.erase(it), it = shared_models.end();
  if (it == shared_models.end()) {
    SharedModel m;
    const int n_rows = t.rows ? int((*t.rows)[0].size()) : N;
    m.epochs = double(t.steps) / (n_rows / cfg.batch);
    SavedModel saved;
    if (!own && store && store->load_model(t.key, saved)) {
      m.params = std::move(saved.params), m.train_s = saved.train_s, m.diverged = saved.diverged_steps;
      m.from_store = true;
      tm.stages.push_back({"erm_training", m.train_s, m.epochs, true});
    } else {
      std::vector<RunRecord> scratch(S);
      MethodTiming mine;
      std::vector<RunRecord>& recs = own ? records : scratch;
      m.train_s = train_erm(own ? t.label : for_method + ": " + t.label, t.train_set, t.rows ? *t.rows : std::vector<std::vector<int32_t>>{},
                            t.steps, m.params, recs, own ? tm : mine);
      for (const RunRecord& r : recs) m.diverged.push_back(r.diverged_step);
      if (store) store->save_model(t.key, {m.params, m.train_s, m.diverged});
      if (!own) {  // this method pays for the model it needs
        tm.stages.insert(tm.stages.end(), mine.stages.begin(), mine.stages.end());
        tm.train_s += mine.train_s, tm.eval_s += mine.eval_s;
        tm.seed_steps_per_s = mine.seed_steps_per_s, tm.epoch_s = mine.epoch_s;
        m.trained = std::move(scratch);
      }
    }
    it = shared_models.emplace(t.key, std::move(m)).first;
  } else {
    tm.stages.push_back({"erm_training", it->second.train_s, it->second.epochs, true});
    if (own && !it->second.trained.empty())  // listed after a method that needed its model: its curves are still its
      for (int s = 0; s < S; ++s) records[s].curves = it->second.trained[s].curves;
  }
  for (int s = 0; s < S; ++s)  // a head refitted on a diverged model is as diverged
    records[s].diverged_step = it->second.diverged[s];
  return it->second.params;
}

const std::vector<float>& Study::erm_model(const std::string& for_method, MethodTiming& tm,
                                           std::vector<RunRecord>& records) {
  return shared_model({"erm model", "erm", "erm", sp_set, nullptr, cfg.steps}, for_method, tm, records);
}

const std::vector<float>& Study::erm_base_model(const std::string& for_method, MethodTiming& tm,
                                                std::vector<RunRecord>& records) {
  return shared_model({"erm-base model", "erm-base", "erm-base", base_set, nullptr, cfg.steps}, for_method, tm, records);
}

void Study::make_afr_split() {
  if (!afr_stage1_rows.empty()) return;
  afr_stage1_rows.resize(S), afr_stage2_rows.resize(S);
  const int m = int(std::lround(cfg.afr_stage1_fraction * N));
  for (int s = 0; s < S; ++s) afr_stage1_rows[s] = random_rows(Purpose::afr_split, s, m, &afr_stage2_rows[s]);
}

const std::vector<float>& Study::afr_stage1_model(int steps, const std::string& owner, const std::string& for_method,
                                                 MethodTiming& tm, std::vector<RunRecord>& records) {
  make_afr_split();
  return shared_model({"afr stage 1 model@" + std::to_string(steps), owner, owner + " stage 1", sp_set,
                       &afr_stage1_rows, steps},
                      for_method, tm, records);
}

void Study::save_features(const std::string& method, const std::vector<float>& params, int train_set) {
  if (!sinks.features) return;
  say(method, "features of the training and test sets (--save-features)");
  backend.load_params(params.data());
  const size_t F = shape.feature_dim();
  std::vector<std::vector<float>> z;
  std::vector<FeatureSetOut> out;
  for (const auto& [name, id] : sets(train_set)) {
    const bool train = name == "train";
    const int n = train ? N : NT;
    z.emplace_back(size_t(S) * n * F);
    backend.set_features(id, z.back().data());
    const int32_t* planted = name == "test_aligned"       ? planted_aligned.data()
                             : name == "test_conflicting" ? planted_conflicting.data()
                             : train && train_set == sp_set ? planted_train.data()
                                                            : nullptr;  // D_base, the clean test set
    out.push_back({name, nullptr, n, train ? data.y_train.data() : data.y_test.data(), planted});
  }
  for (size_t i = 0; i < out.size(); ++i) out[i].z = z[i].data();
  sinks.features(method, out);
}

Study::Features Study::features(const std::vector<float>& params, int set) {
  const bool test = set == test_set || set == aligned_set || set == conflicting_set;
  Features f{{}, test ? NT : N, test ? data.y_test.data() : data.y_train.data()};
  backend.load_params(params.data());
  f.z.resize(size_t(S) * f.n * shape.feature_dim());
  backend.set_features(set, f.z.data());
  return f;
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

Study::Gathered Study::gather(const Features& f, int s, const std::vector<int32_t>& rows) const {
  const int F = shape.feature_dim();
  Gathered g;
  g.z.resize(rows.size() * F);
  g.y.resize(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    std::copy_n(f.z.data() + (size_t(s) * f.n + rows[i]) * F, F, g.z.data() + i * F);
    g.y[i] = f.y[rows[i]];
  }
  return g;
}

std::vector<int32_t> Study::random_rows(Purpose purpose, int s, int m, std::vector<int32_t>* rest) const {
  std::vector<int32_t> all(N);
  std::iota(all.begin(), all.end(), 0);
  RngStream rng(cfg.seed, seed_index(s), purpose, 0);
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
