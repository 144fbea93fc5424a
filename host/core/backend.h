// A backend trains and evaluates the ConvBase of S seeds at once. Every buffer has the seed first. The study hands its
// data over once, as kept sets the backend holds where it computes (a device backend makes every seed's D_sp there),
// and then moves only parameters, batch rows, scores and the outputs it asks for.
// The CPU backend (cpu/backend.h) is the reference; the CUDA backends (cuda/backend_cuda.h) implement the same
// interface; study/backends.h picks one by name.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/metrics.h"
#include "core/model.h"
#include "core/spurious_config.h"

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

  // A model of S seeds with the given shape; params (S, P) copied in; Adam state and step count reset; every kept
  // set dropped (sets are (S, N, L) or (N, L) for this shape and S).
  virtual void reset(const ConvBaseShape& shape, int S, const float* params, const AdamConfig& adam) = 0;
  // Other parameters (S, P) for the same model: Adam moments zeroed and step count reset, like reset(), but the kept
  // sets and the training set stay where they are (on the device for a device backend).
  virtual void load_params(const float* params) = 0;
  virtual void get_params(float* params) const = 0;  // (S, P)
  // The optimizer's state, for checkpoints: Adam's moments m and v, (S, P) each as the parameters, and its step count.
  // set_adam_state after load_params (which zeroes it) makes training go on exactly as if it had not stopped.
  virtual void get_adam_state(float* m, float* v, int* step) const = 0;
  virtual void set_adam_state(const float* m, const float* v, int step) = 0;

  // ---- Kept sets: inputs and labels the backend holds (a device backend on the device) until the next reset(), so
  // that training, scoring, features and saliency on them move no inputs. Ids count up from 0 after each reset.

  // A copy of x, (S, N, L) if per_seed (each seed its own inputs) or (N, L) shared by the seeds, and labels (N).
  virtual int add_set(const float* x, const int32_t* labels, int N, bool per_seed) = 0;
  // A per-seed set made from the shared kept set `clean` by the spurious transform of `kind` (core/spurious_config.h):
  // row s is seed index seed0 + s's D_sp (train) or shifted test set, with clean's labels, built where the backend
  // keeps its sets (host/cpu/spurious.h on the CPU, kernels/spurious_cuda.h on a device) from the same Philox streams.
  // planted (S, N), if not null, receives the class whose block each row got (-1: none).
  virtual int add_spurious_set(SpuriousSetKind kind, const SpuriousConfig& cfg, int clean, uint64_t base_seed,
                               uint32_t seed0, int32_t* planted) = 0;
  // The training set of train_step from now on: a kept set, per seed (D_sp) or shared (D_base: one copy for S seeds).
  virtual void train_on(int set) = 0;
  // Training inputs from the host: add_set(x, labels, N, true) and train_on it. x (S, N, L); labels (N).
  void set_train_data(const float* x, const int32_t* labels, int N) { train_on(add_set(x, labels, N, true)); }

  // One Adam step for every seed: batch_index (S, B) are rows of the training set (host memory).
  // loss (S), if not null, receives each seed's mean batch loss; pass null on steps that do not need it,
  // so a device backend need not wait for the step to finish.
  virtual void train_step(const int32_t* batch_index, int B, float lr, float* loss) = 0;

  // evaluate_set's id of the training set of train_on.
  static constexpr int kTrainingSet = -1;
  // Metrics per seed (out: S of them) of the current parameters on kept set `id`: those of evaluate_logits on
  // predict's logits; pred (S, N), if not null, receives each sample's predicted class (the first maximum logit, as
  // torch.argmax). A device backend scores on the device, so only S * (classes + 1) numbers (and pred) come back; its
  // loss may differ from the CPU's by float rounding (and a library that sums in its own order, cuDNN, may move a
  // sample at a near-tie of two logits).
  virtual void evaluate_set(int id, SetMetrics* out, int8_t* pred = nullptr) = 0;
  // features / saliency (below) of kept set `id`, its inputs and (saliency) labels where the backend keeps them.
  virtual void set_features(int id, float* z) = 0;
  virtual void set_saliency(int id, float* sal) = 0;

  // ---- Inputs from the host, for one call.
  // logits (S, N, classes) for x = (S, N, L) if per_seed, else (N, L) shared by all seeds.
  virtual void predict(const float* x, int N, bool per_seed, float* logits) = 0;

  // Head inputs z (S, N, feature_dim) in PyTorch flatten order, for x as in predict (DFR and AFR refit on them).
  virtual void features(const float* x, int N, bool per_seed, float* z) = 0;

  // Saliency |d logit_{labels[i]} / d x_i| per input feature: sal (S, N, L); labels (N) shared by the seeds.
  virtual void saliency(const float* x, const int32_t* labels, int N, bool per_seed, float* sal) = 0;
};

// How a backend is built. A backend ignores the fields that are not its own (cpu reads threads only).
struct BackendOptions {
  int threads = 0;  // host threads, 0 = all cores
  int device = 0;   // cuda, cudnn: the CUDA device (cudaSetDevice) the backend runs on
  // cuda: seeds are split into this many contiguous groups, each advanced by its own CUDA stream (at most S).
  int streams = 1;
  // cuda: one group, and stream, per seed: no batching across seeds (what batching buys, for the benchmark).
  bool stream_per_seed = false;
  // cuda: capture each group's training step as a CUDA graph and replay it.
  bool graphs = true;
  // cudnn: "grouped" (one grouped convolution over all seeds per layer) or "per-seed" (a convolution per seed).
  std::string cudnn_conv = "grouped";
};

// The argument checks every backend makes, before touching anything; `who` starts the message ("cpu backend").
// add_set's: an empty set, null data or a label outside [0, classes) is std::invalid_argument.
void check_set(const std::string& who, const float* x, const int32_t* labels, int N, int classes);
// add_spurious_set's source set: it must be shared (per_seed false), cfg valid for sequences of `length`, and its
// labels (N) in [0, min(cfg.classes, classes)): std::invalid_argument otherwise.
void check_spurious_source(const std::string& who, bool per_seed, const int32_t* labels, int N,
                           const SpuriousConfig& cfg, int length, int classes);
// A set id that add_set / add_spurious_set did not return since the last reset() is std::out_of_range;
// kTrainingSet before train_on is std::logic_error.
void check_set_id(const std::string& who, int id, size_t sets, bool have_train_set);
// train_step's: a step before any training set: std::logic_error; B outside [1, N]: std::invalid_argument; a batch
// row outside [0, N): std::out_of_range.
void check_train_step(const std::string& who, const int32_t* batch_index, int S, int B, int N);

}  // namespace sb
