// The MNIST-1D study on one backend: data per seed, training protocol (study.md §3), metrics per
// seed, method and set, curves and timings.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/metrics.h"
#include "cpu/spurious.h"
#include "data/data.h"
#include "study/heads.h"

namespace sb {

struct StudyConfig {
  int seeds = 100;  // seeds of the whole study: global seed indices 0 .. seeds-1
  // This process trains the global seed indices [seed_begin, seed_end) of them (--seed-range, an MPI rank's shard);
  // seed_end 0 means seeds. Seed i's numbers do not depend on which process trains it.
  int seed_begin = 0, seed_end = 0;
  int steps = 6000;
  int batch = 100;
  float lr = 1e-2f;
  int channels = 25;
  uint64_t seed = 0;  // base seed of every random stream
  int eval_every = 250;
  bool fixed_order = false;  // the reference's unshuffled batch order instead of a reshuffle per epoch
  std::vector<std::string> methods = {"erm-base", "erm", "dfr", "dfr-source", "afr", "afr-source"};
  SpuriousConfig spurious;
  AdamConfig adam;
  float dfr_fraction = 0.25f;  // share of D_base DFR refits the head on
  DfrConfig dfr;
  float afr_stage1_fraction = 0.8f;  // AFR stage 1 trains on this share of D_sp, stage 2 on the rest
  std::vector<int> afr_stage1_steps;  // empty: `steps`; several values run `afr@N` for each (a sweep)
  AfrConfig afr;
  bool saliency = true;

  int last_seed() const { return seed_end ? seed_end : seeds; }  // one past the last seed this process trains
  int local_seeds() const { return last_seed() - seed_begin; }
  bool is_shard() const { return local_seeds() != seeds; }
};

// Sets every metric is reported on, in report order.
const std::vector<std::string>& study_sets();  // train, test_clean, test_aligned, test_conflicting
const std::vector<std::string>& known_methods();

// Throws std::invalid_argument with a one-line reason for any setting that cannot run.
void validate(const StudyConfig& cfg, const Dataset& data);

struct CurvePoint {
  int step = 0;
  std::map<std::string, SetMetrics> sets;
};

struct RunRecord {
  int seed_index = 0;
  std::string method;
  // The evaluation step at which the seed's training loss was first NaN or infinite (its ERM training's, for a head
  // refitted on the erm model), 0 if never. A diverged seed's parameters stay non-finite: the other seeds go on
  // unchanged, and summaries and cross-seed statistics leave it out.
  int diverged_step = 0;
  std::map<std::string, SetMetrics> metrics;  // final model
  std::map<std::string, double> shortcut_reliance;  // per set: share of saliency on the shortcut's block
  std::vector<CurvePoint> curves;             // ERM training (AFR: stage 1); empty for DFR
  // Method details: dfr.{l1, tune_worst_group}; afr.{gamma, lambda, epoch, ess, class_mass, stage1_steps}.
  bool has_dfr = false, has_afr = false;
  float dfr_l1 = 0;
  std::vector<double> dfr_tune_worst_group;  // per l1 of the grid, in grid order (DfrResult); empty for dfr-source
  float afr_gamma = 0, afr_lambda = 0;
  int afr_epoch = 0, afr_stage1_steps = 0;
  double afr_ess = 0;
  std::vector<double> afr_class_mass;
};

// One stage of a method, all seeds together: seconds, epochs run (per seed) and seconds per epoch.
struct StageTiming {
  std::string name;
  double s = 0, epochs = 0;
  bool shared = false;  // reused from another method of this run (not counted in its wall_s)
};

struct MethodTiming {
  double wall_s = 0;            // everything this method ran (shared stages excluded)
  double train_s = 0;           // ERM training steps (AFR: stage 1)
  double eval_s = 0;
  double seed_steps_per_s = 0;  // seeds * steps / train_s (0 without ERM training of its own)
  double epoch_s = 0;           // train_s per epoch (all seeds)
  std::vector<StageTiming> stages;
};

// What each seed contributes to its method's cross-seed statistics, seed-major. Kept in the result so that shards of
// a study (host/scale) merge into exactly the statistics one process computes: compute_cross_seed reads only this
// and the runs.
struct MethodSeedEvidence {
  std::map<std::string, std::vector<int8_t>> predictions;     // per test set: (S, n_test) predicted classes
  std::map<std::string, std::vector<double>> saliency_sums;   // per set: (S, classes * length), sum over the samples
  std::vector<double> afr_p_counts;                           // AFR: stage-1 p_true, 20 bins over [0, 1], all seeds
};

// Across-seed statistics of one method beyond the per-metric summaries (study.md §5).
struct MethodCrossSeed {
  // std of accuracy on a shifted set over std on test_clean, for test_aligned and test_conflicting.
  std::map<std::string, double> underspecification;
  // Mean over seed pairs of the share of samples where the two seeds predict differently, per test set.
  std::map<std::string, double> disagreement;
  // Share of seeds whose worst-group accuracy beats `erm` of the same seed index (ties count half), per set.
  std::map<std::string, double> beats_erm_worst_group;
  // The method's worst-group accuracy minus `erm`'s on the same seed index, over seeds, per set: the paired gain and
  // its t-interval (seeds share their data and initialisation, so the pairs remove the seed-to-seed spread).
  std::map<std::string, SeedStats> worst_group_gain_vs_erm;
  // Saliency per (class, feature), mean over seeds and samples, per set; (classes * length).
  std::map<std::string, std::vector<double>> saliency;
  std::vector<double> afr_p_histogram;  // AFR: stage-1 p_true on the stage-2 set, 20 bins over [0, 1]
};

struct StudyResult {
  std::vector<RunRecord> runs;  // seed-major within each method, methods in config order
  std::vector<std::string> methods;  // as run (an AFR stage-1 sweep expands afr into afr@N)
  std::map<std::string, MethodTiming> timing;
  std::map<std::string, MethodCrossSeed> cross_seed;  // compute_cross_seed's
  std::map<std::string, MethodSeedEvidence> evidence;
  std::map<std::string, std::vector<int>> class_counts;  // per set: samples of each class (the saliency's divisor)
};

// Fills result.cross_seed of every method from result.runs (seed-major, ascending seed index) and result.evidence.
void compute_cross_seed(StudyResult& result);

// Called after each evaluation: method, step, steps, mean clean test accuracy, mean training loss,
// seed-steps per second so far.
using ProgressFn = std::function<void(const std::string&, int, int, double, double, double)>;

// Called when a method enters a stage that prints no step progress (head fits, saliency).
using NoteFn = std::function<void(const std::string& method, const std::string& what)>;

// Host memory a run needs, estimated from its largest buffers (bytes): the parameters with their gradients, Adam
// moments and the study's copies, which grow with seeds x channels^2; and the seeds' data sets, features, saliency
// and logits, which grow with seeds x samples. A device backend needs the same again on the device (not included).
struct MemoryEstimate {
  double model_bytes = 0, data_bytes = 0;
  double total() const { return model_bytes + data_bytes; }
};
MemoryEstimate estimate_memory(const StudyConfig& cfg, const Dataset& data, bool save_features);

// Bytes of one model's features on the training and three test sets with their labels, planted classes and masks:
// what sinks.features gets per model, and about the size of its --save-features file.
double features_bytes(const StudyConfig& cfg, const Dataset& data);

// Penultimate features (flattened conv3 output: the head's input, index c * L3 + l) of one method's models on one set.
struct FeatureSetOut {
  std::string name;               // train, test_clean, test_aligned, test_conflicting (study_sets())
  const float* z;                 // (S, n, F)
  int n;
  const int32_t* labels;          // (n)
  const int32_t* planted_class;   // (S, n): class whose block was planted into the row, -1 none; null: none anywhere
};

// What a study hands out besides its results, for callers that save them (report/artifacts.h): every method's final
// parameters, and the features of the ERM-trained models (erm-base, erm). Unset: nothing extra is computed.
struct StudySinks {
  std::function<void(const std::string& method, const std::vector<float>& params)> model;  // (S, P)
  std::function<void(const std::string& method, const std::vector<FeatureSetOut>& sets)> features;
};

// ---- Surviving a stop. A study with a StudyStore (host/scale/run_dir.h keeps one in a run folder) saves its ERM
// training every checkpoint_every() steps and each method once it finished; run again with the same store and
// configuration, it loads what was saved and goes on, and its results are bitwise those of a run that never stopped.

// One ERM training at a step boundary: everything needed to go on bitwise (the batch order is a function of the
// seed, epoch and step, so the step is its position in every random stream).
struct TrainingCheckpoint {
  int step = 0;                                  // steps done
  std::vector<float> params, adam_m, adam_v;     // (S, P) each
  int adam_step = 0;
  std::vector<std::vector<CurvePoint>> curves;   // per seed: the evaluations so far
  std::vector<int> diverged_steps;               // per seed: RunRecord::diverged_step so far
  double train_s = 0, eval_s = 0;                // seconds so far
};

// What a finished method leaves: its runs, evidence, timing and final parameters (S, P).
struct MethodOutputs {
  std::vector<RunRecord> records;
  MethodSeedEvidence evidence;
  MethodTiming timing;
  std::vector<float> params;
};

// A model shared between methods (the erm model): parameters (S, P), training seconds, each seed's diverged_step.
struct SavedModel {
  std::vector<float> params;
  double train_s = 0;
  std::vector<int> diverged_steps;
};

class StudyStore {
 public:
  virtual ~StudyStore() = default;
  virtual int checkpoint_every() const = 0;  // steps between training checkpoints
  // Whether the study should stop (a signal arrived): it checkpoints after the current step and throws StudyStopped.
  virtual bool stop_requested() const = 0;
  // Keys are unique within the study: a training's name ("erm", "afr stage 1"), a method's, a model's ("erm model").
  virtual void save_training(const std::string& key, const TrainingCheckpoint& c) = 0;
  virtual bool load_training(const std::string& key, TrainingCheckpoint& c) = 0;
  virtual void save_method(const std::string& key, const MethodOutputs& m) = 0;
  virtual bool load_method(const std::string& key, MethodOutputs& m) = 0;
  virtual void save_model(const std::string& key, const SavedModel& m) = 0;
  virtual bool load_model(const std::string& key, SavedModel& m) = 0;
};

// Thrown by run_study when the store asked it to stop, after the last checkpoint was saved.
struct StudyStopped : std::runtime_error {
  StudyStopped(const std::string& where) : std::runtime_error("stopped at " + where) {}
};

StudyResult run_study(const StudyConfig& cfg, const Dataset& data, Backend& backend, const ProgressFn& progress = {},
                      const NoteFn& note = {}, const StudySinks& sinks = {}, StudyStore* store = nullptr);

// The training inputs one seed sees for a method: D_base for erm-base, D_sp for erm.
struct SeedData {
  std::vector<float> train, test_aligned, test_conflicting;
  std::vector<int32_t> planted_train, planted_conflicting;
};
SeedData make_seed_data(const StudyConfig& cfg, const Dataset& data, uint32_t seed_index);

// Row order of the training set for step `step` (0-based) of seed seed_index: B rows.
void batch_rows(const StudyConfig& cfg, int n_train, uint32_t seed_index, int step, int32_t* rows,
                std::vector<int32_t>& epoch_perm);

}  // namespace sb
