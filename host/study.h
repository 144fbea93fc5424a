// The MNIST-1D study on one backend: data per seed, training protocol (study.md §3), metrics per
// seed, method and set, curves and timings.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "backend.h"
#include "data.h"
#include "metrics.h"
#include "spurious.h"

namespace sb {

struct StudyConfig {
  int seeds = 100;
  int steps = 6000;
  int batch = 100;
  float lr = 1e-2f;
  int channels = 25;
  uint64_t seed = 0;  // base seed of every random stream
  int eval_every = 250;
  bool fixed_order = false;  // the reference's unshuffled batch order instead of a reshuffle per epoch
  std::vector<std::string> methods = {"erm-base", "erm"};
  SpuriousConfig spurious;
  AdamConfig adam;
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
  std::map<std::string, SetMetrics> metrics;  // at the last step
  std::vector<CurvePoint> curves;
};

struct MethodTiming {
  double wall_s = 0;            // data, training and evaluation of all seeds
  double train_s = 0;           // training steps only
  double eval_s = 0;
  double seed_steps_per_s = 0;  // seeds * steps / train_s
  double epoch_s = 0;           // train_s per epoch (all seeds)
};

struct StudyResult {
  std::vector<RunRecord> runs;  // seed-major within each method, methods in config order
  std::map<std::string, MethodTiming> timing;
};

// Called after each evaluation: method, step, steps, mean clean test accuracy, mean training loss,
// seed-steps per second so far.
using ProgressFn = std::function<void(const std::string&, int, int, double, double, double)>;

StudyResult run_study(const StudyConfig& cfg, const Dataset& data, Backend& backend, const ProgressFn& progress = {});

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
