// What one run_study call shares between its methods (study/methods/): the seeds' data, the backend, and the stages
// every method is built from (ERM training with periodic evaluation, features, head surgery, the final evaluation
// with predictions and saliency). Internal to the study floor.
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/backend.h"
#include "core/model.h"
#include "core/philox.h"
#include "study/heads.h"
#include "study/study.h"

namespace sb {

using Clock = std::chrono::steady_clock;
inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

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
  std::vector<std::vector<int32_t>> afr_stage1_rows, afr_stage2_rows;  // per seed

  Study(const StudyConfig& c, const Dataset& d, Backend& b, const ProgressFn& p, const NoteFn& n)
      : cfg(c), data(d), backend(b), progress(p), note(n), S(c.seeds), N(d.n_train), NT(d.n_test), L(d.length),
        K(d.classes), shape{c.channels, d.length, d.classes}, P(shape.num_params()) {}

  // Rows of one seed's features z (S, n, F), gathered into a contiguous FeatureSet's storage.
  struct Gathered {
    std::vector<float> z;
    std::vector<int32_t> y;
    FeatureSet set() const { return {z.data(), y.data(), int(y.size()), int(z.size() / std::max<size_t>(y.size(), 1))}; }
  };

  void say(const std::string& method, const std::string& what) const;

  // ERM from the PyTorch-default initialisation on x (S, N, L); rows[s] restricts seed s to a subset (or empty).
  // Fills params (S, P) and records curves; returns the training seconds.
  double train_erm(const std::string& method, const std::vector<float>& x, const std::vector<std::vector<int32_t>>& rows,
                   int steps, std::vector<float>& params, std::vector<RunRecord>& records, MethodTiming& tm);

  // The training set (the backend's, from set_train_data) and the three test sets, kept by the backend (after its
  // reset) for periodic evaluation: (set name, id) pairs.
  std::vector<std::pair<std::string, int>> add_eval_sets();

  // Metrics of the backend's current model on the sets of add_eval_sets, scored where the backend runs (on a GPU
  // only S * (classes + 1) numbers per set come back).
  std::vector<std::map<std::string, SetMetrics>> evaluate_sets(const std::vector<std::pair<std::string, int>>& ids);

  // Metrics of the backend's current model on the training set x_train and the three test sets;
  // pred, if given, receives the (S, NT) predictions per test set.
  std::vector<std::map<std::string, SetMetrics>> evaluate(const std::vector<float>& x_train,
                                                          std::map<std::string, std::vector<int8_t>>* pred);

  std::vector<std::tuple<std::string, const float*, bool>> test_sets() const;

  // Final metrics, predictions and saliency of params (S, P) into records and cross.
  void finish(const std::string& method, const std::vector<float>& params, const std::vector<float>& x_train,
              std::vector<RunRecord>& records, MethodCrossSeed& cross, MethodTiming& tm);

  void saliency(const std::string& method, const std::vector<float>& x_train, std::vector<RunRecord>& records,
                MethodCrossSeed& cross, MethodTiming& tm);

  // The erm model (S, P), trained once and shared by erm, dfr*, afr-source.
  const std::vector<float>& erm_model(const std::string& for_method, MethodTiming& tm, std::vector<RunRecord>& records);

  // Head inputs (S, n, F) of `params` for x (per seed or shared).
  std::vector<float> features(const std::vector<float>& params, const float* x, int n, bool per_seed);

  void set_head(float* params_s, const Head& h) const;

  Head get_head(const float* params_s) const;

  Gathered gather(const std::vector<float>& z, int n, int s, const std::vector<int32_t>& rows) const;

  // Seed s's random subset of m training rows from `purpose`'s stream (partial Fisher-Yates), ascending.
  std::vector<int32_t> random_rows(Purpose purpose, int s, int m, std::vector<int32_t>* rest = nullptr) const;
};

}  // namespace sb
