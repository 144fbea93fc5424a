// The regression toy (study.md §1.3, the second source): y = x1 + 2*x2 + 3 + e with a spurious feature
// x3 = y + N(0, sigma^2), sigma = k / factor, whose association with y is weaker out of distribution.
// Linear models and MLPs of many seeds train under three regimes (plain, domain randomization,
// augmentation) and are compared with the exact least-squares fit: RMSE on train / IID / OOD and the
// learned weights against the truth (1, 2, 0; 3).
//
// Random streams (host/core/philox.h), all keyed by (base seed, seed index, purpose):
//   toy_data       the train, IID and OOD sets (set id << 32 as offset);
//   toy_dr_factor  the per-sample factors of the domain-randomization training set;
//   toy_init       initial weights (model id << 32: linear 0, mlp 1);
//   toy_order      batch order (epoch << 32), shared by every model and regime of a seed;
//   toy_augment    the augmentation noise (epoch << 32), shared by linear and MLP.
// Data are per seed by default (seed-to-seed spread then includes the draw of the data, as a new study
// would see it); shared_data gives every seed the data of seed index 0, so only the initial weights and
// the batch order (and augmentation noise) differ: the source's "same data, different seeds" reading of
// underspecification. Either way seed i gives the same numbers whether 2 or 10 000 seeds run, and
// whatever the thread count: each seed is computed start to finish by one thread.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/backend.h"

namespace sb {

enum class ToyRegime { plain, domain_randomization, augmentation };
const char* toy_regime_name(ToyRegime regime);            // "plain", "domain-randomization", "augmentation"
ToyRegime parse_toy_regime(const std::string& name);      // throws std::invalid_argument naming the known ones
const std::vector<std::string>& toy_known_models();       // linear, mlp

struct ToyConfig {
  int seeds = 100;
  uint64_t seed = 0;  // base seed of every random stream
  std::vector<std::string> models = {"linear", "mlp"};
  std::vector<std::string> regimes = {"plain", "domain-randomization", "augmentation"};
  int samples = 5000;  // per set: train, IID, OOD
  double k = 0.6;      // sigma = k / factor
  double train_factor = 0.2, ood_factor = 0.1;  // sigma 3 (train and IID), 6 (OOD)
  // Domain randomization: factor ~ U[dr_min, dr_max) per sample. The default keeps every domain at least as noisy as
  // training (factor <= train_factor 0.2: sigma from 3 to 12), so x3 carries no signal that holds across domains; the
  // spec's U[0.05, 1.0) (--dr-max 1), mostly less noisy domains, makes the shortcut stronger (docs/toy.md).
  double dr_min = 0.05, dr_max = 0.2;
  double aug_sd = 5.0;                          // augmentation: x3 += N(0, aug_sd^2), fresh every batch
  bool uniform = false;                         // x1, x2 ~ U[uniform_lo, uniform_hi) instead of N(0, 1)
  double uniform_lo = -1.0, uniform_hi = 1.0;
  bool shared_data = false;                     // every seed trains and tests on the data of seed index 0
  std::vector<int> hidden = {64, 64};           // MLP hidden layer sizes (ReLU after each)
  int epochs = 30, batch = 32;
  float lr = 1e-3f;
  int lr_step = 10;        // StepLR: lr * lr_gamma^(epoch / lr_step)
  float lr_gamma = 0.5f;
  AdamConfig adam;
};

// Minibatches per epoch (the last one may be short).
inline int batches_per_epoch(const ToyConfig& cfg) { return (cfg.samples + cfg.batch - 1) / cfg.batch; }

// Throws std::invalid_argument with a one-line reason (naming the flag) for any setting that cannot run.
void validate(const ToyConfig& cfg);

// ---- Data. A set is x (N, 3) row-major [x1, x2, x3] and y (N).
struct ToySet {
  int n = 0;
  std::vector<float> x, y;
};

struct ToyData {
  ToySet train;     // factor train_factor
  ToySet train_dr;  // train with each sample's x3 noise rescaled to sigma_i = k / f_i, f_i ~ U[dr_min, dr_max)
  ToySet iid;       // factor train_factor, fresh draws
  ToySet ood;       // factor ood_factor
};
// The data of one seed (of seed index 0 under shared_data).
ToyData make_toy_data(const ToyConfig& cfg, uint32_t seed_index);

// ---- Models. dims {3, hidden..., 1}: linear is {3, 1}. Parameters in PyTorch order, for every layer
// W (out, in) then b (out), one flat buffer per seed.
struct ToyNet {
  std::vector<int> dims;
  int layers() const { return int(dims.size()) - 1; }
  size_t weight_offset(int layer) const;
  size_t bias_offset(int layer) const { return weight_offset(layer) + size_t(dims[layer + 1]) * dims[layer]; }
  size_t num_params() const { return weight_offset(layers()); }
  int max_width() const;
};
ToyNet toy_net(const std::string& model, const std::vector<int>& hidden);

// PyTorch's default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases, drawn in
// parameter order from (base seed, seed index, toy_init, model_id << 32).
void toy_init_params(const ToyNet& net, uint64_t seed, uint32_t seed_index, uint32_t model_id, float* params);

// Buffers of one thread for batches of up to max_batch samples (activations feature-major, (width, ld)).
struct ToyWorkspace {
  ToyWorkspace(const ToyNet& net, int max_batch);
  int max_batch, ld;  // ld: max_batch rounded up to 16 (one lane chunk)
  std::vector<std::vector<float>> act;  // act[l] (dims[l], ld): act[0] the inputs, act[L] the outputs
  std::vector<float> act_t;             // (ld, max width): one layer's inputs transposed, for weight gradients
  std::vector<float> d0, d1;            // (max width, ld): gradients flowing back
};

// Mean squared error of the batch x (B, 3), y (B), and its gradient grad (P) (overwritten).
double toy_mse_grad(const ToyNet& net, const float* params, const float* x, const float* y, int B, ToyWorkspace& ws,
                    float* grad);
// yhat (n) for x (n, 3), in batches of ws.max_batch.
void toy_predict(const ToyNet& net, const float* params, const float* x, int n, ToyWorkspace& ws, float* yhat);

// What a model says about each feature. A linear model's weights and bias are its parameters. For an MLP
// they are the input-gradient equivalents on a set (the IID set in reports): w_j = mean over the samples of
// d yhat / d x_j, bias = mean(yhat - sum_j w_j x_j) — for a linear model both give its parameters.
struct ToyWeights {
  double w[3] = {0, 0, 0}, bias = 0;
};
ToyWeights toy_effective_weights(const ToyNet& net, const float* params, const ToySet& set, ToyWorkspace& ws);

struct ToyMetrics {
  double rmse_train = 0, rmse_iid = 0, rmse_ood = 0;
  ToyWeights weights;
};
// rmse_train is on the regime's stored training set (train_dr for domain randomization; without the
// augmentation noise for augmentation).
const ToySet& toy_training_set(const ToyData& data, ToyRegime regime);
ToyMetrics evaluate_toy_model(const ToyNet& net, const float* params, const ToyData& data, ToyRegime regime,
                              ToyWorkspace& ws);

// Trains params (P) in place: Adam, StepLR, MSE, per-epoch reshuffle (Fisher-Yates from toy_order), the last
// partial batch kept (PyTorch's DataLoader default). Returns the mean training loss of every epoch.
std::vector<double> train_toy_model(const ToyConfig& cfg, const ToyNet& net, const ToyData& data, ToyRegime regime,
                                    uint32_t seed_index, float* params, ToyWorkspace& ws);

// ---- The exact least-squares fit (double precision) of a regime's training objective: ordinary least
// squares on the training set (train_dr for domain randomization); for augmentation the minimiser of the loss
// expected over the noise, i.e. the normal equations with n * aug_sd^2 added to x3's diagonal entry.
ToyWeights toy_exact_fit(const ToyConfig& cfg, const ToyData& data, ToyRegime regime);
ToyMetrics evaluate_toy_linear(const ToyWeights& fit, const ToyData& data, ToyRegime regime);

// The population least-squares fit of the plain regime, for any distribution of x1, x2:
// w3 = 1 / (1 + sigma^2), w1 = 1 - w3, w2 = 2 (1 - w3), bias = 3 (1 - w3); RMSE on a set with noise sigma_s is
// sqrt((1 - w3)^2 + w3^2 sigma_s^2) (sqrt(sigma^2 / (1 + sigma^2)) on IID).
struct ToyClosedForm {
  double sigma_train = 0, sigma_ood = 0;
  ToyWeights weights;
  double rmse_iid = 0, rmse_ood = 0;
};
ToyClosedForm toy_closed_form(const ToyConfig& cfg);

// ---- The study: every model x regime for every seed, plus the exact fit of every regime (model "exact").
struct ToyRun {
  int seed_index = 0;
  std::string model, regime;
  ToyMetrics metrics;
  std::vector<double> train_loss;  // per epoch; empty for "exact"
};

struct ToyResult {
  // Models in config order, regimes in config order, seeds; then "exact" for plain (always) and every regime run.
  std::vector<ToyRun> runs;
  std::map<std::string, double> wall_s;  // "model/regime": training and evaluation of all seeds
  double data_s = 0, total_s = 0;
  int threads = 0;
};

// Metrics reported per run, in report order: rmse_train, rmse_iid, rmse_ood, w1, w2, w3, bias.
const std::vector<std::string>& toy_metric_names();
double toy_metric(const ToyMetrics& m, const std::string& name);
// One metric of (model, regime) for every seed, in seed order (model "exact": the exact fit).
std::vector<double> toy_values(const ToyResult& r, const std::string& model, const std::string& regime,
                               const std::string& metric);

// Called after every model x regime: model, regime, seconds it took.
using ToyProgressFn = std::function<void(const std::string&, const std::string&, double)>;
ToyResult run_toy_study(const ToyConfig& cfg, int threads, const ToyProgressFn& progress = {});

}  // namespace sb
