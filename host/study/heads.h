// Refitting the linear head of a frozen ConvBase on its penultimate features (study.md §4):
//   DFR  last-layer retraining (Kirichenko et al. 2022): L1 multinomial logistic regression on standardized
//        features of a small clean set, strength tuned by worst-group accuracy, averaged over balanced subsamples.
//   AFR  stage 2 of automatic feature reweighting (Qiu et al. 2023): the head retrained from the stage-1 head by
//        full-batch gradient descent on a loss that upweights the examples stage 1 got wrong.
//
// Every function here works on one seed: single-threaded, no global state (thread-safe), randomness only from the
// RngStream passed in, and bitwise deterministic for given inputs and SIMD level (the matrix products are the
// project's linear_forward / linear_backward_weights, the softmax loops are compiled per level like them; see
// cpu/simd.h; levels differ in the last bits). The study calls them from an OpenMP loop over seeds.
#pragma once
#include <cstdint>
#include <vector>

#include "core/philox.h"

namespace sb {

// z is (n, dim) row-major, y (n) in [0, classes).
struct FeatureSet {
  const float* z = nullptr;
  const int32_t* y = nullptr;
  int n = 0, dim = 0;
};

// W (classes, dim) row-major (PyTorch Linear layout), b (classes).
struct Head {
  int dim = 0, classes = 0;
  std::vector<float> W, b;
};

// logits (n, classes) = z W^T + b.
void head_logits(const Head& head, const FeatureSet& set, float* logits);

// Groups are the classes: worst_group_accuracy is the minimum over classes present in the set; loss is the mean
// cross-entropy. Ties in the argmax go to the first class (torch.argmax), as in evaluate_logits (metrics.h).
struct HeadEval {
  double accuracy = 0, worst_group_accuracy = 0, loss = 0;
};
HeadEval evaluate_head(const Head& head, const FeatureSet& set);

// ---- Standardization: x' = (x - mean) / scale per feature, scale = the population std (ddof 0, as sklearn's
// StandardScaler), or 1 for a constant feature (a dead ReLU unit), which then maps to 0.
struct Standardizer {
  std::vector<float> mean, scale;  // (dim)
};
Standardizer fit_standardizer(const FeatureSet& set);
void standardize(const Standardizer& s, const FeatureSet& set, float* out);  // out (n, dim)
// The head on raw features that gives the same logits as `standardized` on standardized features:
// W = W' / scale, b = b' - W' (mean / scale).
Head unstandardize_head(const Head& standardized, const Standardizer& s);

// ---- L1 multinomial logistic regression, the solver behind DFR. Minimizes
//   F(W, b) = (1/n) sum_i CE(W z_i + b, y_i) + l1 * sum_kj |W_kj|          (b is not penalized)
// This is sklearn's LogisticRegression(penalty="l1", C) objective ||W||_1 + C sum_i CE_i divided by C n, so
// l1 = 1 / (C n), i.e. C = 1 / (n l1). Accelerated proximal gradient (FISTA) with backtracking on the step,
// a step that may grow again after each iteration, and O'Donoghue-Candes adaptive restart. Stops when the
// proximal gradient mapping (the composite gradient, in the units of dF/dW) is below tol in max norm, or after
// max_iters iterations. (With l1 = 0 on separable data the optimum is at infinity; the gradient still vanishes as the
// weights grow, so tol stops it early: an implicitly regularized fit.)
struct LogisticConfig {
  int max_iters = 2000;
  double tol = 1e-4;
};
struct LogisticFit {
  Head head;
  int iters = 0;
  bool converged = false;
  double objective = 0;  // F at the returned head
  double lipschitz = 0;  // the last accepted backtracking estimate; a good start for a warm-started refit
};
// warm (optional) is the starting point; otherwise W = 0, b = 0.
LogisticFit fit_logistic_l1(const FeatureSet& set, int classes, float l1, const LogisticConfig& cfg,
                            const Head* warm = nullptr, double lipschitz0 = 1.0);

// ---- DFR. Paper variant (source_variant = false): features standardized with the mean and std of the whole fit
// set; the L1 strength is chosen from l1_grid on a tuning split (each class's rows shuffled and halved: fit on the
// first halves, cut class-balanced to the smallest class; score worst-group accuracy on the second halves); then
// `subsamples` heads are fitted with that strength on class-balanced subsamples of the whole set (every class cut
// to its smallest count, rows drawn without replacement) and averaged.
// Selection: best tuning worst-group accuracy; ties go to the higher tuning accuracy, then the larger l1.
// Draws from rng, in order: the tuning split (class by class in ascending class order, a Fisher-Yates shuffle of
// that class's rows in ascending row order: for j = n_k-1 .. 1 swap(idx[j], idx[below(j+1)])), then each
// subsample (the same shuffle per class, the first m rows of each class kept).
// Source variant (source_variant = true, the source's plain retraining): one unpenalized multinomial logistic
// regression on the whole set, standardized (for conditioning; the unpenalized optimum does not depend on it),
// no balancing, no averaging, no draws; l1 = 0 and tune_worst_group = NaN. On linearly separable features (the
// usual case: ~1000 rows, 5C features) the optimum is at infinity and the tolerance decides where it stops.
// The returned head works on raw features.
struct DfrConfig {
  bool source_variant = false;
  int subsamples = 10;
  // Half-decades. On the study's ~1000 rows (25 % of D_base) this is sklearn's C = 1/(n l1) ~ 10 .. 0.01: DFR's own
  // grid (C in 1 .. 0.01) widened on the weak side. The mean-loss form keeps one l1 the same per-row strength on
  // the tuning half and on the full subsamples (DFR's code reuses C, i.e. halves l1). Weak strengths converge
  // slowest: a fit at 1e-4 takes ~4x the iterations of one at 1e-3.
  std::vector<float> l1_grid = {1e-4f, 3e-4f, 1e-3f, 3e-3f, 1e-2f, 3e-2f, 1e-1f};
  int iters = 2000;    // cap on solver iterations per fit
  double tol = 1e-4;   // solver tolerance (LogisticConfig::tol)
};
struct DfrResult {
  Head head;                      // on raw features
  float l1 = 0;                   // the chosen strength
  double tune_worst_group = 0;    // its worst-group accuracy on the tuning half
  std::vector<double> tune_worst_group_per_l1;  // (l1_grid), in grid order; empty for the source variant
  Head head_standardized;         // the same head on standardized features
  Standardizer standardizer;
  int unconverged_fits = 0;       // solver runs that stopped at `iters` (or the float rounding floor) above tol
};
// Throws std::invalid_argument for an empty set, classes < 2, a label outside [0, classes), an empty grid or a
// grid value that is negative or not finite, subsamples < 1.
DfrResult fit_dfr(const FeatureSet& fit_set, int classes, const DfrConfig& cfg, RngStream& rng);

// ---- AFR stage 2. Loss on the stage-2 set
//   L(W, b) = sum_i mu_i CE(W z_i + b, y_i) + lambda (||W - W0||^2 + ||b - b0||^2)
//   mu_i = beta_{y_i} exp(-gamma p_i) / sum_j beta_{y_j} exp(-gamma p_j),  beta_y = 1 / (count of class y)
// with p_i the softmax probability of the true class under the stage-1 head (W0, b0).
// Returns mu (n), in double; sums to 1.
std::vector<double> afr_weights(const float* p_true, const int32_t* y, int n, int classes, double gamma);

// L and its gradient (dW (classes, dim), db (classes)) at `head`, in double on the float inputs; the plain
// reference of what fit_afr descends (exposed for the finite-difference test).
double afr_loss_grad(const Head& head, const Head& init, const FeatureSet& set, const double* mu, double lambda,
                     float* dW, float* db);

// The head after `epochs` steps of the stage-2 descent for one (gamma, lambda), from init: full-batch gradient
// descent on L from (W0, b0) with lr and a clip of the global gradient norm over W and b (as
// torch.nn.utils.clip_grad_norm_: g *= clip / (||g|| + 1e-6) when that is below 1). fit_afr runs this descent for
// every grid point (the same code) and scores each epoch.
Head afr_descend(const FeatureSet& stage2, const Head& init, float gamma, float lambda, int epochs, float lr = 0.01f,
                 float clip = 1.0f);

// AFR stage 2 with its grid search: afr_descend for every (gamma, lambda) of gammas x lambdas (all heads descend
// together); the head after e steps is scored by worst-group accuracy on `val` (epoch 0 = the initial head, shared
// by the whole grid). Selection: the best val worst-group accuracy; ties go to the earlier epoch, then the smaller
// gamma, then the smaller lambda. Cost: 3 products of (gammas * lambdas * classes) x dim x (rows) per epoch.
struct AfrConfig {
  std::vector<float> gammas = {0, 0.5f, 1, 2, 4, 8, 16};
  std::vector<float> lambdas = {0, 0.01f, 0.1f, 1};
  int epochs = 500;
  float lr = 0.01f;
  float clip = 1.0f;
  bool keep_val_curves = false;  // fill AfrResult::val_curves
};
struct AfrResult {
  Head head;
  float gamma = 0, lambda = 0;
  int epoch = 0;
  double val_worst_group = 0;
  double ess = 0;                  // 1 / sum mu^2 of the chosen gamma
  std::vector<double> class_mass;  // sum of mu per class, chosen gamma
  std::vector<float> p_true;       // stage-1 p_i on the stage-2 set (for histograms)
  // With keep_val_curves: val worst-group accuracy (gammas, lambdas, epochs + 1), row-major.
  std::vector<double> val_curves;
};
// fit_afr and afr_descend throw std::invalid_argument for mismatched dims, an empty set, a label outside
// [0, classes), an empty grid, a negative or non-finite gamma or lambda, epochs < 0.
AfrResult fit_afr(const FeatureSet& stage2, const Head& init, const FeatureSet& val, const AfrConfig& cfg);

}  // namespace sb
