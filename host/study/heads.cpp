#include "study/heads.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "core/metrics.h"
#include "cpu/linear.h"
#include "cpu/simd.h"

namespace sb {
namespace {

void check_set(const FeatureSet& set, int classes, const std::string& who, const char* what) {
  if (set.n < 1 || set.dim < 1 || !set.z || !set.y)
    throw std::invalid_argument(who + ": the " + what + " set is empty");
  for (int i = 0; i < set.n; ++i)
    if (set.y[i] < 0 || set.y[i] >= classes)
      throw std::invalid_argument(who + ": label " + std::to_string(set.y[i]) + " of the " + what +
                                  " set outside [0, " + std::to_string(classes) + ")");
}

void check_head(const Head& h, const std::string& who) {
  if (h.dim < 1 || h.classes < 1 || h.W.size() != size_t(h.classes) * h.dim || h.b.size() != size_t(h.classes))
    throw std::invalid_argument(who + ": the head's W and b do not match its dim and classes");
}

std::vector<int> label_counts(const int32_t* y, int n, int classes) {
  std::vector<int> c(classes, 0);
  for (int i = 0; i < n; ++i) ++c[y[i]];
  return c;
}

// Minimum over classes with total > 0 of correct / total (1 if none).
double worst_group(const int* correct, const std::vector<int>& total) {
  double wga = 1.0;
  for (size_t k = 0; k < total.size(); ++k)
    if (total[k] > 0) wga = std::min(wga, double(correct[k]) / total[k]);
  return wga;
}

std::vector<int> all_features(int dim) {
  std::vector<int> cols(dim);
  for (int j = 0; j < dim; ++j) cols[j] = j;
  return cols;
}

// ---- Heads as matrix products. The features of a set are stored feature-major for linear_forward and
// linear_backward_weights (cpu/linear.h): zt is (F + 1, ld), row j < F holds feature cols[j] of every sample, row F
// holds ones, ld = padded_batch(n), padding columns zero. A head is then one parameter matrix Wb (K, F + 1) =
// [W | b], the bias being the weight of the ones row, and its logits (K, ld) = linear_forward(Wb, zt).
struct FeatureMatrix {
  std::vector<float> zt;
  int n = 0, ld = 0, rows = 0;  // rows = F + 1
};

// Rows `rows` (n of them; all rows if null) of set, features cols, standardized by st if not null.
FeatureMatrix feature_matrix(const FeatureSet& set, const int32_t* rows, int n, const std::vector<int>& cols,
                             const Standardizer* st) {
  FeatureMatrix m;
  m.n = n, m.ld = padded_batch(n), m.rows = int(cols.size()) + 1;
  m.zt.assign(size_t(m.rows) * m.ld, 0.0f);
  const int F = int(cols.size());
  for (int i = 0; i < n; ++i) {
    const float* z = set.z + size_t(rows ? rows[i] : i) * set.dim;
    for (int j = 0; j < F; ++j) {
      const int c = cols[j];
      m.zt[size_t(j) * m.ld + i] = st ? (z[c] - st->mean[c]) / st->scale[c] : z[c];
    }
    m.zt[size_t(F) * m.ld + i] = 1.0f;
  }
  return m;
}

// Wb (K, F + 1) of a head, on its features cols.
std::vector<float> head_params(const Head& h, const std::vector<int>& cols) {
  const int F = int(cols.size());
  std::vector<float> x(size_t(h.classes) * (F + 1));
  for (int k = 0; k < h.classes; ++k) {
    for (int j = 0; j < F; ++j) x[size_t(k) * (F + 1) + j] = h.W[size_t(k) * h.dim + cols[j]];
    x[size_t(k) * (F + 1) + F] = h.b[k];
  }
  return x;
}

// The head with parameters Wb (K, F + 1) on features cols of dim; the weights of the other features are those of
// base, or 0 without one.
Head params_head(const float* x, int K, const std::vector<int>& cols, int dim, const Head* base = nullptr) {
  const int F = int(cols.size());
  Head h;
  h.dim = dim, h.classes = K;
  if (base)
    h.W = base->W;
  else
    h.W.assign(size_t(K) * dim, 0.0f);
  h.b.resize(K);
  for (int k = 0; k < K; ++k) {
    for (int j = 0; j < F; ++j) h.W[size_t(k) * dim + cols[j]] = x[size_t(k) * (F + 1) + j];
    h.b[k] = x[size_t(k) * (F + 1) + F];
  }
  return h;
}

// grad (M, rows) = g (M, ld) zt^T: the parameter gradient of M logit rows whose gradient is g (zero padding
// columns). dot_gemm runs faster with the longer side as its rows, so a small M takes the transposed product.
// scratch: at least M * rows + max(M, rows) floats.
void params_gradient(const float* g, int M, const FeatureMatrix& fm, float* grad, float* scratch) {
  const int R = fm.rows;
  if (M >= R) {
    linear_backward_weights(g, fm.zt.data(), M, R, fm.ld, grad, scratch);  // the bias output is unused
    return;
  }
  float* gt = scratch;  // (R, M)
  linear_backward_weights(fm.zt.data(), g, R, M, fm.ld, gt, scratch + size_t(R) * M);
  for (int m = 0; m < M; ++m)
    for (int j = 0; j < R; ++j) grad[size_t(m) * R + j] = gt[size_t(j) * M + m];
}

// ---- The per-sample loops (softmax cross-entropy and argmax down the columns of a logit block), written once and
// compiled per SIMD level like the CPU layers' kernels (cpu/simd.h), chosen by simd_level(). GCC vectorizes them only if it may
// assume that floating-point operations do not trap (the float-to-int conversions of exp and log); that changes
// no result. The levels differ in the last bits (FMA contraction), each is deterministic.
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math")
#define SB_HEADS_INLINE __attribute__((always_inline)) inline

// e^x for x <= 0 (softmax arguments after subtracting the max), within ~2 ulp (Cephes expf). Branch-free and
// libm-free so the loops that call it vectorize; below -87 it returns e^-87 instead of a denormal.
SB_HEADS_INLINE float exp_nonpositive(float x) {
  x = x > -87.0f ? x : -87.0f;
  const int n = int(x * 1.44269504088896341f - 0.5f);  // round(x / ln2): truncation of a value <= 0
  const float fn = float(n);
  float r = x - fn * 0.693359375f;  // x - n ln2, ln2 split in two for precision
  r = r - fn * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const int32_t bits = (n + 127) << 23;  // 2^n
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// log(x) for a positive normal x, within ~2 ulp (Cephes logf), branch-free like exp_nonpositive.
SB_HEADS_INLINE float log_positive(float x) {
  int32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  int e = ((bits >> 23) & 0xff) - 126;  // x = m 2^e, m in [0.5, 1)
  bits = (bits & 0x007fffff) | 0x3f000000;
  float m;
  std::memcpy(&m, &bits, sizeof m);
  const bool low = m < 0.707106781186547524f;  // m in [sqrt(1/2), sqrt(2)) after this
  e = low ? e - 1 : e;
  m = low ? m + m - 1.0f : m - 1.0f;
  const float z = m * m;
  float y = 7.0376836292e-2f;
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  const float fe = float(e);
  y += -2.12194440e-4f * fe;
  y += -0.5f * z;
  return (m + y) + 0.693359375f * fe;
}

// Softmax cross-entropy down the columns of logits (K, ld), samples 0..n-1 with weights w (n).
// If g: g (K, ld) = w_i (softmax_i - onehot(y_i)) in columns 0..n-1 (the others are left alone).
// Returns sum_i w_i CE_i if want_loss, else 0. mx and sum are scratch of n floats.
SB_HEADS_INLINE double softmax_columns_body(const float* logits, int K, int n, int ld, const int32_t* y,
                                            const float* w, float* g, bool want_loss, float* mx, float* sum) {
  std::copy(logits, logits + n, mx);
  for (int k = 1; k < K; ++k) {
    const float* z = logits + size_t(k) * ld;
    for (int i = 0; i < n; ++i) mx[i] = z[i] > mx[i] ? z[i] : mx[i];
  }
  std::fill(sum, sum + n, 0.0f);
  for (int k = 0; k < K; ++k) {
    const float* z = logits + size_t(k) * ld;
    if (g) {
      float* e = g + size_t(k) * ld;
      for (int i = 0; i < n; ++i) e[i] = exp_nonpositive(z[i] - mx[i]), sum[i] += e[i];
    } else {
      for (int i = 0; i < n; ++i) sum[i] += exp_nonpositive(z[i] - mx[i]);
    }
  }
  double loss = 0;
  if (want_loss) {
    // CE_i = (max - z_y) + log(sum): the difference first, exact for nearby logits.
    for (int i = 0; i < n; ++i) loss += double(w[i]) * (double(mx[i] - logits[size_t(y[i]) * ld + i]));
    for (int i = 0; i < n; ++i) mx[i] = w[i] * log_positive(sum[i]);
    for (int i = 0; i < n; ++i) loss += mx[i];
  }
  if (g) {
    for (int i = 0; i < n; ++i) sum[i] = w[i] / sum[i];
    for (int k = 0; k < K; ++k) {
      float* e = g + size_t(k) * ld;
      for (int i = 0; i < n; ++i) e[i] *= sum[i];
    }
    for (int i = 0; i < n; ++i) g[size_t(y[i]) * ld + i] -= w[i];
  }
  return loss;
}

// Per-class counts of correct argmax predictions over the columns of logits (K, ld); the first maximum wins, as
// torch.argmax. mx is scratch of n floats; correct (K) is overwritten.
SB_HEADS_INLINE void count_correct_body(const float* logits, int K, int n, int ld, const int32_t* y, float* mx,
                                        int* correct) {
  std::copy(logits, logits + n, mx);
  for (int k = 1; k < K; ++k) {
    const float* z = logits + size_t(k) * ld;
    for (int i = 0; i < n; ++i) mx[i] = z[i] > mx[i] ? z[i] : mx[i];
  }
  std::fill(correct, correct + K, 0);
  for (int i = 0; i < n; ++i) {
    const float zy = logits[size_t(y[i]) * ld + i];
    if (zy != mx[i]) continue;
    bool first = true;  // no earlier class ties with the maximum
    for (int k = 0; k < y[i]; ++k) first = first && logits[size_t(k) * ld + i] != zy;
    correct[y[i]] += first;
  }
}

#define SB_HEADS_LEVEL(suffix, target)                                                                          \
  target double softmax_columns_##suffix(const float* logits, int K, int n, int ld, const int32_t* y,            \
                                         const float* w, float* g, bool want_loss, float* mx, float* sum) {     \
    return softmax_columns_body(logits, K, n, ld, y, w, g, want_loss, mx, sum);                                 \
  }                                                                                                             \
  target void count_correct_##suffix(const float* logits, int K, int n, int ld, const int32_t* y, float* mx,   \
                                     int* correct) {                                                            \
    count_correct_body(logits, K, n, ld, y, mx, correct);                                                       \
  }
SB_HEADS_LEVEL(avx512, __attribute__((target("avx512f"))))
SB_HEADS_LEVEL(avx2, __attribute__((target("avx2,fma"))))
SB_HEADS_LEVEL(sse2, )
#undef SB_HEADS_LEVEL
#undef SB_HEADS_INLINE
#pragma GCC pop_options

double softmax_columns(const float* logits, int K, int n, int ld, const int32_t* y, const float* w, float* g,
                       bool want_loss, float* mx, float* sum) {
  switch (simd_level()) {
    case SimdLevel::avx512: return softmax_columns_avx512(logits, K, n, ld, y, w, g, want_loss, mx, sum);
    case SimdLevel::avx2: return softmax_columns_avx2(logits, K, n, ld, y, w, g, want_loss, mx, sum);
    default: return softmax_columns_sse2(logits, K, n, ld, y, w, g, want_loss, mx, sum);
  }
}

void count_correct(const float* logits, int K, int n, int ld, const int32_t* y, float* mx, int* correct) {
  switch (simd_level()) {
    case SimdLevel::avx512: return count_correct_avx512(logits, K, n, ld, y, mx, correct);
    case SimdLevel::avx2: return count_correct_avx2(logits, K, n, ld, y, mx, correct);
    default: return count_correct_sse2(logits, K, n, ld, y, mx, correct);
  }
}

// ---- L1 multinomial logistic regression (see fit_logistic_l1 in heads.h) on parameters x = Wb (K, F + 1), the
// last column (the bias) unpenalized.
struct LogisticProblem {
  FeatureMatrix fm;
  std::vector<int32_t> y;  // (n)
  std::vector<float> w;    // (n) = 1/n
  int K = 0;
};

LogisticProblem make_problem(const FeatureSet& set, const int32_t* rows, int n, int K, const std::vector<int>& cols,
                             const Standardizer* st) {
  LogisticProblem p;
  p.fm = feature_matrix(set, rows, n, cols, st);
  p.y.resize(n);
  for (int i = 0; i < n; ++i) p.y[i] = set.y[rows ? rows[i] : i];
  p.w.assign(n, 1.0f / float(n));
  p.K = K;
  return p;
}

struct LogisticState {
  std::vector<float> x;  // Wb (K, F + 1)
  int iters = 0;
  bool converged = false;
  double objective = 0, lipschitz = 1;
};

// FISTA with backtracking (Beck & Teboulle 2009), the step allowed to grow by 1/0.9 per iteration, and the
// gradient restart of O'Donoghue & Candes (2015). Per iteration: one forward at the candidate, one gradient at the
// extrapolated point (whose logits are the same extrapolation of the candidates' logits, the map being linear).
LogisticState solve_logistic_l1(const LogisticProblem& pb, float l1, const LogisticConfig& cfg,
                                const std::vector<float>* x0, double lipschitz0) {
  const int K = pb.K, R = pb.fm.rows, F = R - 1, n = pb.fm.n, ld = pb.fm.ld;
  const size_t np = size_t(K) * R, nl = size_t(K) * ld;
  std::vector<float> x(np, 0.0f), xn(np), yv(np), grad(np), scratch(np + std::max(K, R));
  if (x0) x = *x0;
  std::vector<float> lx(nl), ln(nl), ly(nl), g(nl, 0.0f), mx(n), sum(n);
  auto forward = [&](const std::vector<float>& p, std::vector<float>& out) {
    linear_forward(p.data(), nullptr, K, R, pb.fm.zt.data(), ld, out.data());
  };
  auto loss = [&](const std::vector<float>& logits, float* gout) {
    return softmax_columns(logits.data(), K, n, ld, pb.y.data(), pb.w.data(), gout, true, mx.data(), sum.data());
  };
  forward(x, lx);
  double fx = loss(lx, nullptr);
  yv = x, ly = lx;
  double t = 1, L = lipschitz0 > 0 ? lipschitz0 : 1.0;
  LogisticState st;
  for (int it = 1; it <= cfg.max_iters; ++it) {
    const double fy = loss(ly, g.data());
    params_gradient(g.data(), K, pb.fm, grad.data(), scratch.data());
    double fn = 0, step_max = 0, restart = 0;
    bool accepted = false;
    const double L_before = L;
    for (int tries = 0; tries < 60; ++tries, L *= 2) {  // grow L until the quadratic model holds
      const float inv = float(1.0 / L), thr = float(l1 / L);
      for (int k = 0; k < K; ++k) {
        const size_t r = size_t(k) * R;
        for (int j = 0; j < F; ++j) {  // soft threshold: the prox of the L1 term
          const float v = yv[r + j] - inv * grad[r + j];
          xn[r + j] = v > thr ? v - thr : (v < -thr ? v + thr : 0.0f);
        }
        xn[r + F] = yv[r + F] - inv * grad[r + F];
      }
      forward(xn, ln);
      fn = loss(ln, nullptr);
      // With s = xn - yv: the linear term of the quadratic model, |s|^2, max |s|, and (for the restart test)
      // the momentum's agreement with the step, -s . (xn - x).
      double lin = 0, step_sq = 0, smax = 0, against = 0;
      const float *xp = x.data(), *yp = yv.data(), *xnp = xn.data(), *gp = grad.data();
#pragma omp simd reduction(+ : lin, step_sq, against) reduction(max : smax)
      for (size_t q = 0; q < np; ++q) {
        const double s = double(xnp[q]) - yp[q];
        lin += double(gp[q]) * s, step_sq += s * s, against -= s * (double(xnp[q]) - xp[q]);
        smax = std::max(smax, std::fabs(s));
      }
      step_max = smax, restart = against;
      // The slack absorbs the float rounding of the losses, which would otherwise reject tiny steps.
      accepted = fn <= fy + lin + 0.5 * L * step_sq + 1e-7 * (std::fabs(fy) + 1);
      if (accepted) break;
    }
    if (!accepted) {  // at the rounding floor: keep x, not converged
      L = L_before;
      break;
    }
    st.iters = it;
    if (restart > 0) {  // the momentum points against the step just taken: drop it
      t = 1;
      yv = xn, ly = ln;
    } else {
      const double tn = 0.5 * (1 + std::sqrt(1 + 4 * t * t));
      const float beta = float((t - 1) / tn);
      for (size_t q = 0; q < np; ++q) yv[q] = xn[q] + beta * (xn[q] - x[q]);
      for (size_t q = 0; q < nl; ++q) ly[q] = ln[q] + beta * (ln[q] - lx[q]);
      t = tn;
    }
    std::swap(x, xn), std::swap(lx, ln);
    fx = fn;
    if (L * step_max <= cfg.tol) {  // the proximal gradient mapping at yv, max norm
      st.converged = true;
      break;
    }
    L *= 0.9;
  }
  double penalty = 0;
  for (int k = 0; k < K; ++k)
    for (int j = 0; j < F; ++j) penalty += std::fabs(double(x[size_t(k) * R + j]));
  st.objective = fx + l1 * penalty;
  st.lipschitz = L;
  st.x = std::move(x);
  return st;
}

// Fisher-Yates shuffle of v: for j = size-1 .. 1, swap(v[j], v[below(j+1)]).
void shuffle(std::vector<int32_t>& v, RngStream& rng) {
  for (size_t j = v.size(); j-- > 1;) std::swap(v[j], v[rng.below(uint32_t(j + 1))]);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Heads and evaluation

void head_logits(const Head& head, const FeatureSet& set, float* logits) {
  check_head(head, "head_logits");
  if (set.dim != head.dim) throw std::invalid_argument("head_logits: feature dim differs from the head's");
  if (set.n < 1) return;
  const int K = head.classes;
  const std::vector<int> cols = all_features(head.dim);
  const FeatureMatrix fm = feature_matrix(set, nullptr, set.n, cols, nullptr);
  const std::vector<float> x = head_params(head, cols);
  std::vector<float> out(size_t(K) * fm.ld);  // (K, ld)
  linear_forward(x.data(), nullptr, K, fm.rows, fm.zt.data(), fm.ld, out.data());
  for (int i = 0; i < set.n; ++i)
    for (int k = 0; k < K; ++k) logits[size_t(i) * K + k] = out[size_t(k) * fm.ld + i];
}

HeadEval evaluate_head(const Head& head, const FeatureSet& set) {
  check_set(set, head.classes, "evaluate_head", "evaluation");
  std::vector<float> logits(size_t(set.n) * head.classes);
  head_logits(head, set, logits.data());
  const SetMetrics m = evaluate_logits(logits.data(), set.y, set.n, head.classes);
  return {m.accuracy, m.worst_group_accuracy, m.loss};
}

// ---------------------------------------------------------------------------------------------------------
// Standardization

Standardizer fit_standardizer(const FeatureSet& set) {
  if (set.n < 1 || set.dim < 1) throw std::invalid_argument("fit_standardizer: empty set");
  const int d = set.dim;
  std::vector<double> mean(d, 0.0), var(d, 0.0);
  for (int i = 0; i < set.n; ++i)
    for (int j = 0; j < d; ++j) mean[j] += set.z[size_t(i) * d + j];
  for (int j = 0; j < d; ++j) mean[j] /= set.n;
  for (int i = 0; i < set.n; ++i)
    for (int j = 0; j < d; ++j) {
      const double c = set.z[size_t(i) * d + j] - mean[j];
      var[j] += c * c;
    }
  Standardizer s;
  s.mean.resize(d), s.scale.resize(d);
  for (int j = 0; j < d; ++j) {
    s.mean[j] = float(mean[j]);
    const float sd = float(std::sqrt(var[j] / set.n));
    s.scale[j] = sd > 0.0f ? sd : 1.0f;
  }
  return s;
}

void standardize(const Standardizer& s, const FeatureSet& set, float* out) {
  if (s.mean.size() != size_t(set.dim) || s.scale.size() != size_t(set.dim))
    throw std::invalid_argument("standardize: dim differs from the standardizer's");
  const int d = set.dim;
  for (int i = 0; i < set.n; ++i)
    for (int j = 0; j < d; ++j) out[size_t(i) * d + j] = (set.z[size_t(i) * d + j] - s.mean[j]) / s.scale[j];
}

Head unstandardize_head(const Head& hs, const Standardizer& s) {
  check_head(hs, "unstandardize_head");
  if (s.mean.size() != size_t(hs.dim) || s.scale.size() != size_t(hs.dim))
    throw std::invalid_argument("unstandardize_head: dim differs from the standardizer's");
  Head h = hs;
  for (int k = 0; k < hs.classes; ++k) {
    double shift = 0;
    for (int j = 0; j < hs.dim; ++j) {
      const float w = hs.W[size_t(k) * hs.dim + j];
      h.W[size_t(k) * hs.dim + j] = w / s.scale[j];
      shift += double(w) * s.mean[j] / s.scale[j];
    }
    h.b[k] = float(double(hs.b[k]) - shift);
  }
  return h;
}

// ---------------------------------------------------------------------------------------------------------
// DFR

LogisticFit fit_logistic_l1(const FeatureSet& set, int classes, float l1, const LogisticConfig& cfg, const Head* warm,
                            double lipschitz0) {
  if (classes < 2) throw std::invalid_argument("fit_logistic_l1: needs at least 2 classes");
  check_set(set, classes, "fit_logistic_l1", "fit");
  if (!(l1 >= 0) || !std::isfinite(l1)) throw std::invalid_argument("fit_logistic_l1: l1 must be finite and >= 0");
  const FlushDenormals flush;
  const std::vector<int> cols = all_features(set.dim);
  const LogisticProblem pb = make_problem(set, nullptr, set.n, classes, cols, nullptr);
  std::vector<float> x0;
  if (warm) {
    check_head(*warm, "fit_logistic_l1");
    if (warm->dim != set.dim || warm->classes != classes)
      throw std::invalid_argument("fit_logistic_l1: the warm start's shape differs");
    x0 = head_params(*warm, cols);
  }
  const LogisticState st = solve_logistic_l1(pb, l1, cfg, warm ? &x0 : nullptr, lipschitz0);
  LogisticFit f;
  f.head = params_head(st.x.data(), classes, cols, set.dim);
  f.iters = st.iters, f.converged = st.converged, f.objective = st.objective, f.lipschitz = st.lipschitz;
  return f;
}

DfrResult fit_dfr(const FeatureSet& set, int K, const DfrConfig& cfg, RngStream& rng) {
  if (K < 2) throw std::invalid_argument("fit_dfr: needs at least 2 classes");
  check_set(set, K, "fit_dfr", "fit");
  if (cfg.subsamples < 1) throw std::invalid_argument("fit_dfr: subsamples must be >= 1");
  if (!cfg.source_variant) {
    if (cfg.l1_grid.empty()) throw std::invalid_argument("fit_dfr: the l1 grid is empty");
    for (float v : cfg.l1_grid)
      if (!(v >= 0) || !std::isfinite(v))
        throw std::invalid_argument("fit_dfr: l1 grid values must be finite and >= 0");
  }
  const FlushDenormals flush;
  const int d = set.dim;
  const LogisticConfig lc{cfg.iters, cfg.tol};
  DfrResult r;
  r.standardizer = fit_standardizer(set);
  const Standardizer* st = &r.standardizer;
  // A feature constant on the set (a dead unit) standardizes to 0 everywhere: its weight stays 0, so it is left
  // out of the products.
  std::vector<int> cols;
  for (int j = 0; j < d; ++j)
    for (int i = 1; i < set.n; ++i)
      if (set.z[size_t(i) * d + j] != set.z[j]) {
        cols.push_back(j);
        break;
      }
  auto set_heads = [&](const float* x) {
    r.head_standardized = params_head(x, K, cols, d);
    r.head = unstandardize_head(r.head_standardized, *st);
  };

  if (cfg.source_variant) {
    const LogisticProblem pb = make_problem(set, nullptr, set.n, K, cols, st);
    const LogisticState s = solve_logistic_l1(pb, 0.0f, lc, nullptr, 1.0);
    r.unconverged_fits = !s.converged;
    r.l1 = 0;
    r.tune_worst_group = std::numeric_limits<double>::quiet_NaN();
    set_heads(s.x.data());
    return r;
  }

  std::vector<std::vector<int32_t>> by_class(K);
  for (int i = 0; i < set.n; ++i) by_class[set.y[i]].push_back(i);

  // Tuning split: each class halved at random; the fitting halves cut to the smallest one.
  std::vector<std::vector<int32_t>> fit_half(K);
  std::vector<int32_t> score_rows;
  for (int k = 0; k < K; ++k) {
    std::vector<int32_t> v = by_class[k];
    shuffle(v, rng);
    const size_t h = v.size() / 2;
    fit_half[k].assign(v.begin(), v.begin() + h);
    score_rows.insert(score_rows.end(), v.begin() + h, v.end());
  }
  size_t m_fit = std::numeric_limits<size_t>::max();
  for (int k = 0; k < K; ++k)
    if (!fit_half[k].empty()) m_fit = std::min(m_fit, fit_half[k].size());
  std::vector<int32_t> fit_rows;
  for (int k = 0; k < K; ++k)
    fit_rows.insert(fit_rows.end(), fit_half[k].begin(), fit_half[k].begin() + std::min(m_fit, fit_half[k].size()));
  if (fit_rows.empty()) throw std::invalid_argument("fit_dfr: the tuning split needs a class with at least 2 rows");
  std::sort(fit_rows.begin(), fit_rows.end());
  std::sort(score_rows.begin(), score_rows.end());

  const LogisticProblem tune = make_problem(set, fit_rows.data(), int(fit_rows.size()), K, cols, st);
  const FeatureMatrix score = feature_matrix(set, score_rows.data(), int(score_rows.size()), cols, st);
  std::vector<int32_t> y_score(score.n);
  for (int i = 0; i < score.n; ++i) y_score[i] = set.y[score_rows[i]];
  const std::vector<int> score_total = label_counts(y_score.data(), score.n, K);

  // The grid from the strongest penalty down, each fit warm-started from the previous (sparser) solution.
  const int G = int(cfg.l1_grid.size());
  std::vector<int> order(G);
  for (int q = 0; q < G; ++q) order[q] = q;
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return cfg.l1_grid[a] > cfg.l1_grid[b]; });
  std::vector<std::vector<float>> tune_x(G);
  std::vector<double> tune_acc(G);
  r.tune_worst_group_per_l1.assign(G, 0.0);
  {
    std::vector<float> logits(size_t(K) * score.ld), mx(score.n);
    std::vector<int> correct(K);
    const std::vector<float>* warm = nullptr;
    double lip = 1.0;
    for (int q : order) {
      LogisticState s = solve_logistic_l1(tune, cfg.l1_grid[q], lc, warm, lip);
      r.unconverged_fits += !s.converged;
      lip = s.lipschitz;
      tune_x[q] = std::move(s.x);
      warm = &tune_x[q];
      linear_forward(tune_x[q].data(), nullptr, K, score.rows, score.zt.data(), score.ld, logits.data());
      count_correct(logits.data(), K, score.n, score.ld, y_score.data(), mx.data(), correct.data());
      r.tune_worst_group_per_l1[q] = worst_group(correct.data(), score_total);
      int all = 0;
      for (int c : correct) all += c;
      tune_acc[q] = double(all) / score.n;
    }
  }
  int best = 0;
  for (int q = 1; q < G; ++q) {
    const double w = r.tune_worst_group_per_l1[q], wb = r.tune_worst_group_per_l1[best];
    if (w > wb || (w == wb && (tune_acc[q] > tune_acc[best] ||
                               (tune_acc[q] == tune_acc[best] && cfg.l1_grid[q] > cfg.l1_grid[best]))))
      best = q;
  }
  r.l1 = cfg.l1_grid[best];
  r.tune_worst_group = r.tune_worst_group_per_l1[best];

  // Balanced subsamples of the whole set, each fit warm-started from the previous one; the heads are averaged.
  size_t m = std::numeric_limits<size_t>::max();
  for (int k = 0; k < K; ++k)
    if (!by_class[k].empty()) m = std::min(m, by_class[k].size());
  std::vector<float> x = tune_x[best];
  std::vector<double> x_sum(x.size(), 0.0);
  std::vector<int32_t> rows, prev_rows;
  double lip = 1.0;
  for (int s = 0; s < cfg.subsamples; ++s) {
    rows.clear();
    for (int k = 0; k < K; ++k) {
      std::vector<int32_t> v = by_class[k];
      shuffle(v, rng);
      rows.insert(rows.end(), v.begin(), v.begin() + std::min(m, v.size()));
    }
    std::sort(rows.begin(), rows.end());
    if (rows != prev_rows) {  // an already balanced set gives the same subsample every time: fit it once
      const LogisticProblem pb = make_problem(set, rows.data(), int(rows.size()), K, cols, st);
      LogisticState fs = solve_logistic_l1(pb, r.l1, lc, &x, lip);
      r.unconverged_fits += !fs.converged;
      lip = fs.lipschitz;
      x = std::move(fs.x);
      std::swap(rows, prev_rows);
    }
    for (size_t q = 0; q < x.size(); ++q) x_sum[q] += x[q];
  }
  for (size_t q = 0; q < x.size(); ++q) x[q] = float(x_sum[q] / cfg.subsamples);
  set_heads(x.data());
  return r;
}

// ---------------------------------------------------------------------------------------------------------
// AFR

std::vector<double> afr_weights(const float* p_true, const int32_t* y, int n, int classes, double gamma) {
  if (n < 1) throw std::invalid_argument("afr_weights: empty set");
  for (int i = 0; i < n; ++i)
    if (y[i] < 0 || y[i] >= classes) throw std::invalid_argument("afr_weights: label outside [0, classes)");
  const std::vector<int> count = label_counts(y, n, classes);
  // exp(-gamma (p_i - p_min)): the factor exp(-gamma p_min) cancels in the normalization, and the largest term
  // is then beta itself, so nothing underflows whatever gamma.
  double p_min = p_true[0];
  for (int i = 1; i < n; ++i) p_min = std::min(p_min, double(p_true[i]));
  std::vector<double> mu(n);
  double total = 0;
  for (int i = 0; i < n; ++i) {
    mu[i] = std::exp(-gamma * (double(p_true[i]) - p_min)) / count[y[i]];
    total += mu[i];
  }
  for (double& v : mu) v /= total;
  return mu;
}

double afr_loss_grad(const Head& head, const Head& init, const FeatureSet& set, const double* mu, double lambda,
                     float* dW, float* db) {
  check_head(head, "afr_loss_grad");
  check_head(init, "afr_loss_grad");
  if (init.dim != head.dim || init.classes != head.classes || set.dim != head.dim)
    throw std::invalid_argument("afr_loss_grad: shapes differ");
  check_set(set, head.classes, "afr_loss_grad", "stage-2");
  const int d = head.dim, K = head.classes;
  std::vector<double> gW(size_t(K) * d, 0.0), gb(K, 0.0), z(K);
  double loss = 0;
  for (int i = 0; i < set.n; ++i) {
    const float* x = set.z + size_t(i) * d;
    double zmax = -std::numeric_limits<double>::infinity();
    for (int k = 0; k < K; ++k) {
      double s = head.b[k];
      for (int j = 0; j < d; ++j) s += double(head.W[size_t(k) * d + j]) * x[j];
      z[k] = s, zmax = std::max(zmax, s);
    }
    double sum = 0;
    for (int k = 0; k < K; ++k) sum += std::exp(z[k] - zmax);
    const int y = set.y[i];
    loss += mu[i] * (zmax + std::log(sum) - z[y]);
    for (int k = 0; k < K; ++k) {
      const double gk = mu[i] * (std::exp(z[k] - zmax) / sum - (k == y ? 1.0 : 0.0));
      gb[k] += gk;
      for (int j = 0; j < d; ++j) gW[size_t(k) * d + j] += gk * x[j];
    }
  }
  for (size_t q = 0; q < gW.size(); ++q) {
    const double dw = double(head.W[q]) - init.W[q];
    loss += lambda * dw * dw;
    dW[q] = float(gW[q] + 2 * lambda * dw);
  }
  for (int k = 0; k < K; ++k) {
    const double dbk = double(head.b[k]) - init.b[k];
    loss += lambda * dbk * dbk;
    db[k] = float(gb[k] + 2 * lambda * dbk);
  }
  return loss;
}

namespace {

void check_afr_inputs(const FeatureSet& stage2, const Head& init, const std::vector<float>& gammas,
                      const std::vector<float>& lambdas, int epochs, const std::string& who) {
  check_head(init, who);
  if (stage2.dim != init.dim) throw std::invalid_argument(who + ": feature dim differs from the head's");
  check_set(stage2, init.classes, who, "stage-2");
  if (gammas.empty() || lambdas.empty()) throw std::invalid_argument(who + ": empty gamma or lambda grid");
  for (float v : gammas)
    if (!(v >= 0) || !std::isfinite(v)) throw std::invalid_argument(who + ": gammas must be finite and >= 0");
  for (float v : lambdas)
    if (!(v >= 0) || !std::isfinite(v)) throw std::invalid_argument(who + ": lambdas must be finite and >= 0");
  if (epochs < 0) throw std::invalid_argument(who + ": epochs must be >= 0");
}

// Softmax probability of the true class under head, per row of set.
std::vector<float> true_class_probability(const Head& head, const FeatureSet& set) {
  const int K = head.classes;
  std::vector<float> logits(size_t(set.n) * K), p(set.n);
  head_logits(head, set, logits.data());
  for (int i = 0; i < set.n; ++i) {
    const float* z = logits.data() + size_t(i) * K;
    const double zmax = *std::max_element(z, z + K);
    double sum = 0;
    for (int k = 0; k < K; ++k) sum += std::exp(z[k] - zmax);
    p[i] = float(std::exp(z[set.y[i]] - zmax) / sum);
  }
  return p;
}

// Features that are not 0 on every row of the sets. A feature that is 0 on the stage-2 set has no gradient (its
// weights stay at W0), and if it is 0 on the scored set too it changes no logit: it is left out of the products.
std::vector<int> used_features(const FeatureSet& a, const FeatureSet* b) {
  std::vector<int> cols;
  for (int j = 0; j < a.dim; ++j) {
    bool used = false;
    for (int i = 0; i < a.n && !used; ++i) used = a.z[size_t(i) * a.dim + j] != 0.0f;
    for (int i = 0; b && i < b->n && !used; ++i) used = b->z[size_t(i) * b->dim + j] != 0.0f;
    if (used) cols.push_back(j);
  }
  return cols;
}

// The stage-2 descent of every (gamma, lambda) of the grid at once. Head b (gamma b / NL, lambda b % NL) is rows
// b*K .. b*K+K-1 of x = Wb (NB*K, R), so an epoch is two products over all heads. After each epoch e (e = 0: the
// initial heads) calls visit(e, x).
template <class Visit>
void afr_descent(const FeatureMatrix& tr, const int32_t* y, int K, const std::vector<float>& x0,
                 const std::vector<float>& p_true, const std::vector<float>& gammas, const std::vector<float>& lambdas,
                 int epochs, float lr, float clip, Visit&& visit) {
  const int n = tr.n, R = tr.rows, NG = int(gammas.size()), NL = int(lambdas.size()), NB = NG * NL, M = NB * K;
  const size_t blk = size_t(K) * R;  // parameters of one head
  std::vector<float> mu(size_t(NG) * n);
  for (int gi = 0; gi < NG; ++gi) {
    const std::vector<double> m = afr_weights(p_true.data(), y, n, K, gammas[gi]);
    for (int i = 0; i < n; ++i) mu[size_t(gi) * n + i] = float(m[i]);
  }
  std::vector<float> x(size_t(NB) * blk), grad(x.size()), scratch(x.size() + std::max(M, R));
  for (int b = 0; b < NB; ++b) std::copy(x0.begin(), x0.end(), x.begin() + b * blk);
  std::vector<float> logits(size_t(M) * tr.ld), g(size_t(M) * tr.ld, 0.0f), mx(n), sum(n);
  visit(0, x);
  for (int e = 1; e <= epochs; ++e) {
    linear_forward(x.data(), nullptr, M, R, tr.zt.data(), tr.ld, logits.data());
    for (int b = 0; b < NB; ++b)
      softmax_columns(logits.data() + b * K * size_t(tr.ld), K, n, tr.ld, y, mu.data() + size_t(b / NL) * n,
                      g.data() + b * K * size_t(tr.ld), false, mx.data(), sum.data());
    params_gradient(g.data(), M, tr, grad.data(), scratch.data());
    for (int b = 0; b < NB; ++b) {
      const float two_lambda = 2.0f * lambdas[b % NL];
      float* xb = x.data() + b * blk;
      float* gb = grad.data() + b * blk;
      const float* x0p = x0.data();
      double sq = 0;
#pragma omp simd reduction(+ : sq)
      for (size_t q = 0; q < blk; ++q) {
        gb[q] += two_lambda * (xb[q] - x0p[q]);  // the pull towards (W0, b0)
        sq += double(gb[q]) * gb[q];
      }
      // clip_grad_norm_: the whole gradient scaled to norm `clip` when longer.
      const double coef = double(clip) / (std::sqrt(sq) + 1e-6);
      const float step = coef < 1.0 ? float(double(lr) * coef) : lr;
      for (size_t q = 0; q < blk; ++q) xb[q] -= step * gb[q];
    }
    visit(e, x);
  }
}

}  // namespace

Head afr_descend(const FeatureSet& stage2, const Head& init, float gamma, float lambda, int epochs, float lr,
                 float clip) {
  check_afr_inputs(stage2, init, {gamma}, {lambda}, epochs, "afr_descend");
  const FlushDenormals flush;
  const std::vector<int> cols = used_features(stage2, nullptr);
  const FeatureMatrix tr = feature_matrix(stage2, nullptr, stage2.n, cols, nullptr);
  std::vector<float> last;
  afr_descent(tr, stage2.y, init.classes, head_params(init, cols), true_class_probability(init, stage2), {gamma},
              {lambda}, epochs, lr, clip, [&](int e, const std::vector<float>& x) {
                if (e == epochs) last = x;
              });
  return params_head(last.data(), init.classes, cols, init.dim, &init);
}

AfrResult fit_afr(const FeatureSet& stage2, const Head& init, const FeatureSet& val, const AfrConfig& cfg) {
  check_afr_inputs(stage2, init, cfg.gammas, cfg.lambdas, cfg.epochs, "fit_afr");
  if (val.dim != init.dim) throw std::invalid_argument("fit_afr: feature dim differs from the head's");
  check_set(val, init.classes, "fit_afr", "validation");
  const FlushDenormals flush;
  const int d = init.dim, K = init.classes, nv = val.n, E = cfg.epochs;
  const int NL = int(cfg.lambdas.size()), NB = int(cfg.gammas.size()) * NL, M = NB * K;
  AfrResult r;
  r.p_true = true_class_probability(init, stage2);
  const std::vector<int> cols = used_features(stage2, &val);
  const FeatureMatrix tr = feature_matrix(stage2, nullptr, stage2.n, cols, nullptr);
  const FeatureMatrix va = feature_matrix(val, nullptr, nv, cols, nullptr);
  const int R = tr.rows;
  const size_t blk = size_t(K) * R;
  const std::vector<float> x0 = head_params(init, cols);
  const std::vector<int> val_total = label_counts(val.y, nv, K);
  if (cfg.keep_val_curves) r.val_curves.assign(size_t(NB) * (E + 1), 0.0);

  // Selection: best val worst-group; ties to the earlier epoch, the smaller gamma, the smaller lambda.
  struct Pick {
    double wga = -1;
    int epoch = 0;
    float gamma = 0, lambda = 0;
  } best;
  auto better = [](const Pick& a, const Pick& b) {
    if (a.wga != b.wga) return a.wga > b.wga;
    if (a.epoch != b.epoch) return a.epoch < b.epoch;
    if (a.gamma != b.gamma) return a.gamma < b.gamma;
    return a.lambda < b.lambda;
  };
  std::vector<float> best_x = x0, vlogits(size_t(M) * va.ld), mx(nv);
  std::vector<int> correct(K);
  afr_descent(tr, stage2.y, K, x0, r.p_true, cfg.gammas, cfg.lambdas, E, cfg.lr, cfg.clip,
              [&](int e, const std::vector<float>& x) {
                // Epoch 0 is the initial head for every grid point: scored once.
                linear_forward(x.data(), nullptr, e == 0 ? K : M, R, va.zt.data(), va.ld, vlogits.data());
                double wga = 0;
                for (int b = 0; b < NB; ++b) {
                  if (e > 0 || b == 0) {
                    count_correct(vlogits.data() + b * K * size_t(va.ld), K, nv, va.ld, val.y, mx.data(),
                                  correct.data());
                    wga = worst_group(correct.data(), val_total);
                  }
                  if (cfg.keep_val_curves) r.val_curves[size_t(b) * (E + 1) + e] = wga;
                  const Pick p{wga, e, cfg.gammas[b / NL], cfg.lambdas[b % NL]};
                  if (better(p, best)) {
                    best = p;
                    std::copy(x.begin() + b * blk, x.begin() + (b + 1) * blk, best_x.begin());
                  }
                }
              });
  r.head = params_head(best_x.data(), K, cols, d, &init);
  r.gamma = best.gamma, r.lambda = best.lambda, r.epoch = best.epoch, r.val_worst_group = best.wga;
  const std::vector<double> mu = afr_weights(r.p_true.data(), stage2.y, stage2.n, K, best.gamma);
  double sq = 0;
  r.class_mass.assign(K, 0.0);
  for (int i = 0; i < stage2.n; ++i) sq += mu[i] * mu[i], r.class_mass[stage2.y[i]] += mu[i];
  r.ess = 1.0 / sq;
  return r;
}

}  // namespace sb
