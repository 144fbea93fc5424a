// A backend trains and evaluates the ConvBase of S seeds at once. Every buffer has the seed first.
// The CPU backend (cpu/backend.h) is the reference; the CUDA backends (cuda/backend_cuda.h) implement the same
// interface; study/backends.h picks one by name.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/metrics.h"
#include "core/model.h"

namespace sb {

struct AdamConfig {
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual std::string device() const = 0;
  virtual int threads() const = 0;

  // A model of S seeds with the given shape; params (S, P) copied in; Adam state and step count reset.
  virtual void reset(const ConvBaseShape& shape, int S, const float* params, const AdamConfig& adam) = 0;
  virtual void get_params(float* params) const = 0;  // (S, P)

  // Training inputs: x (S, N, L), each seed its own copy (D_sp differs per seed); labels (N), shared.
  virtual void set_train_data(const float* x, const int32_t* labels, int N) = 0;

  // One Adam step for every seed: batch_index (S, B) are rows of the training set (host memory).
  // loss (S), if not null, receives each seed's mean batch loss; pass null on steps that do not need it,
  // so a device backend need not wait for the step to finish.
  virtual void train_step(const int32_t* batch_index, int B, float lr, float* loss) = 0;

  // logits (S, N, classes) for x = (S, N, L) if per_seed, else (N, L) shared by all seeds.
  virtual void predict(const float* x, int N, bool per_seed, float* logits) = 0;

  // Head inputs z (S, N, feature_dim) in PyTorch flatten order, for x as in predict (DFR and AFR refit on them).
  virtual void features(const float* x, int N, bool per_seed, float* z) = 0;

  // Saliency |d logit_{labels[i]} / d x_i| per input feature: sal (S, N, L); labels (N) shared by the seeds.
  virtual void saliency(const float* x, const int32_t* labels, int N, bool per_seed, float* sal) = 0;

  // Evaluation sets the backend keeps (a device backend on the device) so that scoring the same inputs again and
  // again, as the periodic evaluation does, moves neither inputs nor logits: x as in predict, labels (N). Copied;
  // returns the set's id. reset() drops every set.
  virtual int add_eval_set(const float* x, const int32_t* labels, int N, bool per_seed) = 0;
  // evaluate_set's id of the training data of set_train_data (kept already: no second copy).
  static constexpr int kTrainingSet = -1;
  // Metrics per seed (out: S of them) of the current parameters on set `id`: those of evaluate_logits on predict's
  // logits. A device backend counts on the device; its loss may differ from the CPU's by float rounding (and a
  // library that sums in its own order, cuDNN, may move a sample at a near-tie of two logits).
  virtual void evaluate_set(int id, SetMetrics* out) = 0;
};

// How a backend is built. A backend ignores the fields that are not its own (cpu reads threads only).
struct BackendOptions {
  int threads = 0;  // host threads, 0 = all cores
  // cuda: seeds are split into this many contiguous groups, each advanced by its own CUDA stream (at most S).
  int streams = 1;
  // cuda: one group, and stream, per seed: no batching across seeds (what batching buys, for the benchmark).
  bool stream_per_seed = false;
  // cuda: capture each group's training step as a CUDA graph and replay it.
  bool graphs = true;
  // cudnn: "grouped" (one grouped convolution over all seeds per layer) or "per-seed" (a convolution per seed).
  std::string cudnn_conv = "grouped";
};

// The argument checks of set_train_data and train_step that every backend makes, before touching anything; `who`
// starts the message ("cpu backend"). Labels outside [0, classes) and empty or null data: std::invalid_argument;
// a step before any training data: std::logic_error; B outside [1, N]: std::invalid_argument; a batch row outside
// [0, N): std::out_of_range.
void check_train_data(const std::string& who, const float* x, const int32_t* labels, int N, int classes);
void check_train_step(const std::string& who, const int32_t* batch_index, int S, int B, int N);
// add_eval_set's: an empty set, null data or a label outside [0, classes) is std::invalid_argument.
void check_eval_set(const std::string& who, const float* x, const int32_t* labels, int N, int classes);
// evaluate_set's: an id that add_eval_set did not return since the last reset() is std::out_of_range;
// kTrainingSet before set_train_data is std::logic_error.
void check_eval_set_id(const std::string& who, int id, size_t sets, bool have_train_data);


}  // namespace sb
