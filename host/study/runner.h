// What one run_study call shares between its methods (study/methods/): the seeds' data, kept by the backend (on the
// device for a device backend: D_base and the clean test set uploaded once, every seed's D_sp and shifted test sets
// made there), the backend, and the stages every method is built from (ERM training with periodic evaluation,
// features, head surgery, the final evaluation with predictions and saliency). Internal to the study floor.
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
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
  const StudySinks& sinks;
  StudyStore* store;  // null: nothing is saved, nothing loaded
  int S, N, NT, L, K;
  ConvBaseShape shape;
  size_t P;
  // The backend's kept sets (core/backend.h), made once by make_sets: D_base and the clean test set shared by the
  // seeds, D_sp and the aligned and conflicting test sets per seed.
  int base_set = -1, test_set = -1, sp_set = -1, aligned_set = -1, conflicting_set = -1;
  std::vector<int32_t> planted_conflicting;                    // (S, NT): class whose block was planted
  std::vector<int32_t> planted_train, planted_aligned;         // (S, N), (S, NT); only for sinks.features
  // Models trained once per run_study and shared by the methods that start from them, by SharedTraining::key.
  struct SharedModel {
    std::vector<float> params;   // (S, P)
    std::vector<int> diverged;   // (S): diverged_step per seed
    double train_s = 0, epochs = 0;
    std::vector<RunRecord> trained;  // (S): the curves, when a method other than the owner trained it
    bool from_store = false;         // loaded from the run folder: no curves
  };
  std::map<std::string, SharedModel> shared_models;
  std::vector<std::vector<int32_t>> afr_stage1_rows, afr_stage2_rows;  // per seed, once make_afr_split has run
  void make_afr_split();  // draws seed s's stage-1 and stage-2 rows (Purpose::afr_split), once per study

  std::vector<float> final_params;  // (S, P): the last method's, as finish() got them (or the run folder gave them)

  Study(const StudyConfig& c, const Dataset& d, Backend& b, const ProgressFn& p, const NoteFn& n, const StudySinks& k,
        StudyStore* st)
      : cfg(c), data(d), backend(b), progress(p), note(n), sinks(k), store(st), S(c.local_seeds()), N(d.n_train), NT(d.n_test), L(d.length),
        K(d.classes), shape{c.channels, d.length, d.classes}, P(shape.num_params()) {}

  // Rows of one seed's features, gathered with their labels into a contiguous FeatureSet's storage.
  struct Gathered {
    std::vector<float> z;
    std::vector<int32_t> y;
    FeatureSet set() const { return {z.data(), y.data(), int(y.size()), int(z.size() / std::max<size_t>(y.size(), 1))}; }
  };

  void say(const std::string& method, const std::string& what) const;

  // Resets the backend to the study's model and makes the kept sets (base_set ... conflicting_set).
  void make_sets();

  // ERM from the PyTorch-default initialisation on kept set `train_set` (D_base or D_sp); rows[s] restricts seed s to
  // a subset (or empty). Fills params (S, P) and records curves; returns the training seconds. `method` names it in
  // progress and keys its checkpoints in the store (it resumes from the last one there).
  double train_erm(const std::string& method, int train_set, const std::vector<std::vector<int32_t>>& rows, int steps,
                   std::vector<float>& params, std::vector<RunRecord>& records, MethodTiming& tm);

  // The training set and the three test sets as (set name, kept set id) pairs; the training set is train_set.
  std::vector<std::pair<std::string, int>> sets(int train_set) const;

  // Metrics of the backend's current model on `ids`, scored where the backend runs (on a GPU only S * (classes + 1)
  // numbers per set come back); pred, if given, receives the (S, NT) predictions per test set.
  std::vector<std::map<std::string, SetMetrics>> evaluate_sets(const std::vector<std::pair<std::string, int>>& ids,
                                                               std::map<std::string, std::vector<int8_t>>* pred);

  // Final metrics, predictions and saliency of params (S, P), trained or refitted on kept set train_set, into
  // records and ev; the parameters go to sinks.model.
  void finish(const std::string& method, const std::vector<float>& params, int train_set,
              std::vector<RunRecord>& records, MethodSeedEvidence& ev, MethodTiming& tm);

  void saliency(const std::string& method, int train_set, std::vector<RunRecord>& records, MethodSeedEvidence& ev,
                MethodTiming& tm);

  // Global seed index of local seed s (StudyConfig::seed_begin + s): what every random stream of the seed is keyed by.
  uint32_t seed_index(int s) const { return uint32_t(cfg.seed_begin + s); }

  // A training that several methods start from. The owner reports it as its own (its curves and training time);
  // any other method that needs it records a shared stage of that time and inherits the seeds' divergence.
  struct SharedTraining {
    std::string key;    // names it in the store (and in progress, for a method that is not the owner)
    std::string owner;  // the method whose result the training is
    std::string label;  // the owner's name for it in progress and checkpoints
    int train_set = -1;
    const std::vector<std::vector<int32_t>>* rows = nullptr;  // per-seed subset of train_set, or null: all rows
    int steps = 0;
  };
  // The model of `t` (S, P): trained by the first method that needs it (or loaded from the store) and kept.
  const std::vector<float>& shared_model(const SharedTraining& t, const std::string& for_method, MethodTiming& tm,
                                         std::vector<RunRecord>& records);
  // The shared trainings of the study: erm (on D_sp; erm, dfr*, probe-erm, afr-source), erm-base (on D_base;
  // erm-base, probe-base) and AFR's stage 1 with `steps` steps (on the stage-1 rows of D_sp; afr, afr-oracle).
  const std::vector<float>& erm_model(const std::string& for_method, MethodTiming& tm, std::vector<RunRecord>& records);
  const std::vector<float>& erm_base_model(const std::string& for_method, MethodTiming& tm,
                                           std::vector<RunRecord>& records);
  const std::vector<float>& afr_stage1_model(int steps, const std::string& owner, const std::string& for_method,
                                             MethodTiming& tm, std::vector<RunRecord>& records);

  // sinks.features, if set: the features of params (S, P) on the training set train_set and the three test sets.
  void save_features(const std::string& method, const std::vector<float>& params, int train_set);

  // Head inputs of `params` for the inputs of kept set `set`: (S, n, F), with n and the labels of that set (the
  // training rows for D_base and D_sp, the test rows for a test set).
  struct Features {
    std::vector<float> z;
    int n = 0;
    const int32_t* y = nullptr;  // (n)
  };
  Features features(const std::vector<float>& params, int set);

  void set_head(float* params_s, const Head& h) const;

  Head get_head(const float* params_s) const;

  Gathered gather(const Features& f, int s, const std::vector<int32_t>& rows) const;

  // Seed s's random subset of m training rows from `purpose`'s stream (partial Fisher-Yates), ascending.
  std::vector<int32_t> random_rows(Purpose purpose, int s, int m, std::vector<int32_t>* rest = nullptr) const;
};

}  // namespace sb
