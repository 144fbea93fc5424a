#include "study.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "convbase.h"
#include "philox.h"

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
  static const std::vector<std::string> methods = {"erm-base", "erm"};
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
      fail("unknown method '" + m + "' (known: erm-base, erm)");
  ConvBaseShape shape{cfg.channels, data.length, data.classes};
  if (shape.l3() < 1)
    fail("sequence length " + std::to_string(data.length) + " is too short for ConvBase (needs at least 7)");
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

StudyResult run_study(const StudyConfig& cfg, const Dataset& data, Backend& backend, const ProgressFn& progress) {
  validate(cfg, data);
  const int S = cfg.seeds, N = data.n_train, NT = data.n_test, L = data.length, K = data.classes;
  const ConvBaseShape shape{cfg.channels, L, K};
  const size_t P = shape.num_params();

  // Per-seed data, built once: D_sp and the two shifted test sets (x is (S, N, L)).
  std::vector<float> x_sp(size_t(S) * N * L), x_aligned(size_t(S) * NT * L), x_conflicting(size_t(S) * NT * L);
#pragma omp parallel for schedule(dynamic, 1) num_threads(backend.threads())
  for (int s = 0; s < S; ++s) {
    SeedData sd = make_seed_data(cfg, data, uint32_t(s));
    std::copy(sd.train.begin(), sd.train.end(), x_sp.begin() + size_t(s) * N * L);
    std::copy(sd.test_aligned.begin(), sd.test_aligned.end(), x_aligned.begin() + size_t(s) * NT * L);
    std::copy(sd.test_conflicting.begin(), sd.test_conflicting.end(), x_conflicting.begin() + size_t(s) * NT * L);
  }

  StudyResult result;
  std::vector<float> logits_train(size_t(S) * N * K), logits_test(size_t(S) * NT * K);
  std::vector<float> params(size_t(S) * P), loss(S);
  std::vector<int32_t> batch(size_t(S) * cfg.batch);
  std::vector<std::vector<int32_t>> perms(S);

  for (const std::string& method : cfg.methods) {
    const auto t_method = Clock::now();
    std::vector<float> x_base;
    const float* x_train = x_sp.data();
    if (method == "erm-base") {  // every seed trains on the same D_base
      x_base.resize(size_t(S) * N * L);
      for (int s = 0; s < S; ++s) std::copy(data.x_train.begin(), data.x_train.end(), x_base.begin() + size_t(s) * N * L);
      x_train = x_base.data();
    }
    for (int s = 0; s < S; ++s) convbase_init(shape, cfg.seed, uint32_t(s), params.data() + size_t(s) * P);
    backend.reset(shape, S, params.data(), cfg.adam);
    backend.set_train_data(x_train, data.y_train.data(), N);
    for (auto& p : perms) p.clear();

    std::vector<RunRecord> records(S);
    for (int s = 0; s < S; ++s) records[s].seed_index = s, records[s].method = method;

    double train_s = 0, eval_s = 0;
    for (int step = 0; step < cfg.steps; ++step) {
      const auto t_step = Clock::now();
      for (int s = 0; s < S; ++s) batch_rows(cfg, N, uint32_t(s), step, batch.data() + size_t(s) * cfg.batch, perms[s]);
      backend.train_step(batch.data(), cfg.batch, cfg.lr, loss.data());
      train_s += seconds_since(t_step);

      const int done = step + 1;
      if (done % cfg.eval_every != 0 && done != cfg.steps) continue;
      const auto t_eval = Clock::now();
      std::vector<CurvePoint> points(S);
      for (int s = 0; s < S; ++s) points[s].step = done;
      backend.predict(x_train, N, true, logits_train.data());
      for (int s = 0; s < S; ++s)
        points[s].sets["train"] = evaluate_logits(logits_train.data() + size_t(s) * N * K, data.y_train.data(), N, K);
      struct TestSet { const char* name; const float* x; bool per_seed; };
      const TestSet tests[] = {{"test_clean", data.x_test.data(), false},
                               {"test_aligned", x_aligned.data(), true},
                               {"test_conflicting", x_conflicting.data(), true}};
      for (const TestSet& t : tests) {
        backend.predict(t.x, NT, t.per_seed, logits_test.data());
        for (int s = 0; s < S; ++s)
          points[s].sets[t.name] = evaluate_logits(logits_test.data() + size_t(s) * NT * K, data.y_test.data(), NT, K);
      }
      double clean = 0, train_loss = 0, train_acc = 0;
      for (int s = 0; s < S; ++s) {
        clean += points[s].sets["test_clean"].accuracy;
        train_loss += loss[s];
        train_acc += points[s].sets["train"].accuracy;
        records[s].curves.push_back(points[s]);
        records[s].metrics = points[s].sets;
      }
      eval_s += seconds_since(t_eval);
      if (progress) progress(method, done, cfg.steps, clean / S, train_loss / S, double(S) * done / train_s);
    }
    MethodTiming tm;
    tm.wall_s = seconds_since(t_method);
    tm.train_s = train_s;
    tm.eval_s = eval_s;
    tm.seed_steps_per_s = double(S) * cfg.steps / train_s;
    const double epochs = double(cfg.steps) / (N / cfg.batch);
    tm.epoch_s = train_s / epochs;
    result.timing[method] = tm;
    for (auto& r : records) result.runs.push_back(std::move(r));
  }
  return result;
}

}  // namespace sb
