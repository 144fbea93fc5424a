#include "study/toy.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "core/philox.h"
#include "cpu/adam.h"
#include "cpu/convbase.h"
#include "cpu/simd.h"

namespace sb {

const char* toy_regime_name(ToyRegime regime) {
  switch (regime) {
    case ToyRegime::plain: return "plain";
    case ToyRegime::domain_randomization: return "domain-randomization";
    case ToyRegime::augmentation: return "augmentation";
  }
  return "?";
}

ToyRegime parse_toy_regime(const std::string& name) {
  for (ToyRegime r : {ToyRegime::plain, ToyRegime::domain_randomization, ToyRegime::augmentation})
    if (name == toy_regime_name(r)) return r;
  throw std::invalid_argument("unknown regime '" + name + "' (known: plain, domain-randomization, augmentation)");
}

const std::vector<std::string>& toy_known_models() {
  static const std::vector<std::string> models = {"linear", "mlp"};  // index = model id of the init stream
  return models;
}

void validate(const ToyConfig& cfg) {
  auto fail = [](const std::string& m) { throw std::invalid_argument(m); };
  auto positive = [&](double v, const char* flag) {
    if (!(v > 0) || !std::isfinite(v)) fail(std::string(flag) + " must be a positive number");
  };
  if (cfg.seeds <= 0) fail("--seeds must be a positive integer, got " + std::to_string(cfg.seeds));
  if (cfg.samples < 4)
    fail("--samples must be at least 4 (the exact fit has 4 unknowns), got " + std::to_string(cfg.samples));
  if (cfg.epochs <= 0) fail("--epochs must be a positive integer, got " + std::to_string(cfg.epochs));
  if (cfg.batch <= 0) fail("--batch must be a positive integer, got " + std::to_string(cfg.batch));
  if (cfg.batch > cfg.samples)
    fail("--batch " + std::to_string(cfg.batch) + " is larger than the training set (" + std::to_string(cfg.samples) +
         " samples)");
  positive(cfg.lr, "--lr");
  if (cfg.lr_step <= 0) fail("--lr-step must be a positive integer, got " + std::to_string(cfg.lr_step));
  positive(cfg.lr_gamma, "--lr-gamma");
  positive(cfg.k, "--k");
  positive(cfg.train_factor, "--train-factor");
  positive(cfg.ood_factor, "--ood-factor");
  positive(cfg.dr_min, "--dr-min");
  positive(cfg.dr_max, "--dr-max");
  if (cfg.dr_min > cfg.dr_max) fail("--dr-min must not exceed --dr-max");
  if (!(cfg.aug_sd >= 0) || !std::isfinite(cfg.aug_sd)) fail("--aug-sd must be a non-negative number");
  if (cfg.uniform && !(cfg.uniform_lo < cfg.uniform_hi && std::isfinite(cfg.uniform_lo) && std::isfinite(cfg.uniform_hi)))
    fail("--uniform A,B needs finite A < B");
  if (cfg.hidden.empty()) fail("--hidden needs at least one layer size");
  for (int h : cfg.hidden)
    if (h <= 0 || h > 4096) fail("--hidden sizes must be in [1, 4096], got " + std::to_string(h));
  if (cfg.models.empty()) fail("--models is empty");
  if (cfg.regimes.empty()) fail("--regimes is empty");
  for (size_t i = 0; i < cfg.models.size(); ++i) {
    const auto& m = cfg.models[i];
    if (std::find(toy_known_models().begin(), toy_known_models().end(), m) == toy_known_models().end())
      fail("unknown model '" + m + "' (known: linear, mlp)");
    if (std::find(cfg.models.begin(), cfg.models.begin() + i, m) != cfg.models.begin() + i)
      fail("model '" + m + "' is listed twice in --models");
  }
  for (size_t i = 0; i < cfg.regimes.size(); ++i) {
    parse_toy_regime(cfg.regimes[i]);
    if (std::find(cfg.regimes.begin(), cfg.regimes.begin() + i, cfg.regimes[i]) != cfg.regimes.begin() + i)
      fail("regime '" + cfg.regimes[i] + "' is listed twice in --regimes");
  }
}

// ---- Data

ToyData make_toy_data(const ToyConfig& cfg, uint32_t seed_index) {
  const uint32_t data_index = cfg.shared_data ? 0u : seed_index;
  const int N = cfg.samples;
  const float lo = float(cfg.uniform_lo), hi = float(cfg.uniform_hi);
  std::vector<float> z_train(N);  // the train set's standard-normal x3 noise, reused by train_dr
  auto draw = [&](int set_id, double factor, ToySet& s, float* z_out) {
    const float sigma = float(cfg.k / factor);
    RngStream rng(cfg.seed, data_index, Purpose::toy_data, uint64_t(set_id) << 32);
    s.n = N;
    s.x.resize(size_t(N) * 3);
    s.y.resize(N);
    for (int i = 0; i < N; ++i) {
      const float x1 = cfg.uniform ? rng.uniform(lo, hi) : rng.normal();
      const float x2 = cfg.uniform ? rng.uniform(lo, hi) : rng.normal();
      const float e = rng.normal(), z = rng.normal();
      const float y = x1 + 2.0f * x2 + 3.0f + e;
      s.x[3 * i] = x1, s.x[3 * i + 1] = x2, s.x[3 * i + 2] = y + sigma * z;
      s.y[i] = y;
      if (z_out) z_out[i] = z;
    }
  };
  ToyData d;
  draw(0, cfg.train_factor, d.train, z_train.data());
  draw(1, cfg.train_factor, d.iid, nullptr);
  draw(2, cfg.ood_factor, d.ood, nullptr);
  // Domain randomization: the same samples, each from its own domain (factor), so the x3 noise is rescaled.
  d.train_dr = d.train;
  RngStream frng(cfg.seed, data_index, Purpose::toy_dr_factor);
  for (int i = 0; i < N; ++i) {
    const float f = frng.uniform(float(cfg.dr_min), float(cfg.dr_max));
    d.train_dr.x[3 * i + 2] = d.train.y[i] + float(cfg.k / f) * z_train[i];
  }
  return d;
}

// ---- Models

size_t ToyNet::weight_offset(int layer) const {
  size_t off = 0;
  for (int l = 0; l < layer; ++l) off += size_t(dims[l + 1]) * dims[l] + dims[l + 1];
  return off;
}

int ToyNet::max_width() const { return *std::max_element(dims.begin(), dims.end()); }

ToyNet toy_net(const std::string& model, const std::vector<int>& hidden) {
  if (model == "linear") return ToyNet{{3, 1}};
  if (model == "mlp") {
    ToyNet net{{3}};
    net.dims.insert(net.dims.end(), hidden.begin(), hidden.end());
    net.dims.push_back(1);
    return net;
  }
  throw std::invalid_argument("unknown model '" + model + "' (known: linear, mlp)");
}

void toy_init_params(const ToyNet& net, uint64_t seed, uint32_t seed_index, uint32_t model_id, float* params) {
  RngStream rng(seed, seed_index, Purpose::toy_init, uint64_t(model_id) << 32);
  for (int l = 0; l < net.layers(); ++l) {
    const float bound = 1.0f / std::sqrt(float(net.dims[l]));
    const size_t n = size_t(net.dims[l + 1]) * net.dims[l] + net.dims[l + 1];  // W then b
    float* p = params + net.weight_offset(l);
    for (size_t i = 0; i < n; ++i) p[i] = rng.uniform(-bound, bound);
  }
}

constexpr int kLanes = 16;  // one lane chunk: a v16 (one zmm, two ymm or four xmm)
int round_lanes(int n) { return (n + kLanes - 1) / kLanes * kLanes; }

ToyWorkspace::ToyWorkspace(const ToyNet& net, int max_batch_)
    : max_batch(max_batch_), ld(round_lanes(max_batch_)) {
  for (int w : net.dims) act.emplace_back(size_t(w) * ld, 0.0f);
  act_t.assign(size_t(ld) * net.max_width(), 0.0f);
  d0.assign(size_t(net.max_width()) * ld, 0.0f);
  d1.assign(size_t(net.max_width()) * ld, 0.0f);
}

namespace {

// ---- Kernels of one batch, feature-major: activations (width, ld) hold sample b of feature f at f*ld + b;
// Bp = B rounded up to a lane chunk of 16. Padding columns of the inputs are zero, of every gradient zero,
// so they add nothing to weight gradients. Written once over a GCC vector type of the level's native width
// and compiled for three instruction sets (AVX-512F, AVX2+FMA, SSE2), chosen by simd_level() like the CPU layers
// kernels. Forward values are the same at every level with FMA; lane_dot's grouping follows the width.
typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4), may_alias));
typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4), may_alias));
typedef float v4 __attribute__((vector_size(16)));
typedef float v4u __attribute__((vector_size(16), aligned(4), may_alias));
struct Avx512 { typedef v16 V; typedef v16u VU; static constexpr int W = 16; };
struct Avx2 { typedef v8 V; typedef v8u VU; static constexpr int W = 8; };
struct Sse2 { typedef v4 V; typedef v4u VU; static constexpr int W = 4; };
#define SB_TOY_INLINE inline __attribute__((always_inline))

// out (R, N) = A (R, K) X (K, N) [+ bias], A(r, k) = a[r*ars + k*acs]; X and out rows ldx, ldo floats apart;
// N a multiple of 16. Every output element sums k in order from bias[r] (or 0) whatever the tile, so a
// sample's values depend neither on B nor on the other samples.
template <typename T, int RB, int CB>
SB_TOY_INLINE void gemm_tile(int K, const float* a, size_t ars, size_t acs, const float* x, size_t ldx,
                             const float* bias, float* out, size_t ldo) {
  typedef typename T::V V;
  typedef typename T::VU VU;
  V acc[RB][CB];
  for (int i = 0; i < RB; ++i)
    for (int q = 0; q < CB; ++q) acc[i][q] = V{} + (bias ? bias[i] : 0.0f);
  for (int k = 0; k < K; ++k) {
    V xv[CB];
    for (int q = 0; q < CB; ++q) xv[q] = *reinterpret_cast<const VU*>(x + k * ldx + T::W * q);
    for (int i = 0; i < RB; ++i) {
      const float w = a[i * ars + k * acs];
      for (int q = 0; q < CB; ++q) acc[i][q] += w * xv[q];
    }
  }
  for (int i = 0; i < RB; ++i)
    for (int q = 0; q < CB; ++q) *reinterpret_cast<VU*>(out + i * ldo + T::W * q) = acc[i][q];
}

template <typename T, int RB>
SB_TOY_INLINE void gemm_rows(int N, int K, const float* a, size_t ars, size_t acs, const float* x, size_t ldx,
                             const float* bias, float* out, size_t ldo) {
  int c = 0;
  for (; c + 2 * T::W <= N; c += 2 * T::W) gemm_tile<T, RB, 2>(K, a, ars, acs, x + c, ldx, bias, out + c, ldo);
  for (; c < N; c += T::W) gemm_tile<T, RB, 1>(K, a, ars, acs, x + c, ldx, bias, out + c, ldo);
}

template <typename T>
SB_TOY_INLINE void gemm(int R, int N, int K, const float* a, size_t ars, size_t acs, const float* x, size_t ldx,
                        const float* bias, float* out, size_t ldo) {
  int r = 0;
  for (; r + 4 <= R; r += 4)
    gemm_rows<T, 4>(N, K, a + r * ars, ars, acs, x, ldx, bias ? bias + r : nullptr, out + r * ldo, ldo);
  for (; r < R; ++r)
    gemm_rows<T, 1>(N, K, a + r * ars, ars, acs, x, ldx, bias ? bias + r : nullptr, out + r * ldo, ldo);
}

// sum_b u[b] * v[b] (v == nullptr: sum_b u[b]) over Bp lanes: per lane first, then a fixed pairwise tree.
template <typename T>
SB_TOY_INLINE float lane_dot(const float* u, const float* v, int Bp) {
  typedef typename T::VU VU;
  typename T::V s = typename T::V{};
  for (int c = 0; c < Bp; c += T::W) {
    if (v)
      s += *reinterpret_cast<const VU*>(u + c) * *reinterpret_cast<const VU*>(v + c);
    else
      s += *reinterpret_cast<const VU*>(u + c);
  }
  float t[T::W];
  *reinterpret_cast<VU*>(t) = s;
  for (int w = T::W / 2; w >= 1; w /= 2)
    for (int i = 0; i < w; ++i) t[i] += t[i + w];
  return t[0];
}

// act[0] (3, ld) holds the inputs; act[L] row 0 gets yhat. ReLU after every layer but the last.
template <typename T>
SB_TOY_INLINE void forward_body(const ToyNet& net, const float* params, ToyWorkspace& ws, int Bp) {
  const int L = net.layers(), ld = ws.ld;
  for (int l = 0; l < L; ++l) {
    const int K = net.dims[l], M = net.dims[l + 1];
    float* out = ws.act[l + 1].data();
    gemm<T>(M, Bp, K, params + net.weight_offset(l), K, 1, ws.act[l].data(), ld, params + net.bias_offset(l), out, ld);
    if (l + 1 < L)
      for (int j = 0; j < M; ++j)
        for (int b = 0; b < Bp; ++b) out[j * ld + b] = std::max(out[j * ld + b], 0.0f);
  }
}

// From dyhat in ws.d0 row 0 (zero padding) after forward_body: grad (P) if not null, and the input gradient
// (3, ld) if want_dx (returned; else nullptr).
template <typename T>
SB_TOY_INLINE const float* backward_body(const ToyNet& net, const float* params, ToyWorkspace& ws, int Bp,
                                         float* grad, bool want_dx) {
  const int L = net.layers(), ld = ws.ld;
  float* d = ws.d0.data();  // (M, ld): gradient of layer l's pre-activation
  float* dnext = ws.d1.data();
  for (int l = L - 1; l >= 0; --l) {
    const int K = net.dims[l], M = net.dims[l + 1];
    const float* in = ws.act[l].data();
    if (grad) {
      float* dw = grad + net.weight_offset(l);
      float* db = grad + net.bias_offset(l);
      // dW (M, K) = d (M, Bp) in^T: whole lane chunks of k from the transposed inputs, the rest as dots.
      const int Kv = K / kLanes * kLanes;
      if (Kv > 0) {
        float* in_t = ws.act_t.data();  // (Bp, K)
        for (int k = 0; k < K; ++k)
          for (int b = 0; b < Bp; ++b) in_t[size_t(b) * K + k] = in[size_t(k) * ld + b];
        gemm<T>(M, Kv, Bp, d, ld, 1, in_t, K, nullptr, dw, K);
      }
      for (int j = 0; j < M; ++j) {
        for (int k = Kv; k < K; ++k) dw[j * K + k] = lane_dot<T>(d + size_t(j) * ld, in + size_t(k) * ld, Bp);
        db[j] = lane_dot<T>(d + size_t(j) * ld, nullptr, Bp);
      }
    }
    if (l == 0 && !want_dx) break;
    // din (K, Bp) = W^T d, then through the ReLU that produced this layer's input.
    gemm<T>(K, Bp, M, params + net.weight_offset(l), 1, K, d, ld, nullptr, dnext, ld);
    if (l > 0)
      for (int k = 0; k < K; ++k)
        for (int b = 0; b < Bp; ++b)
          if (!(in[size_t(k) * ld + b] > 0.0f)) dnext[size_t(k) * ld + b] = 0.0f;
    std::swap(d, dnext);
  }
  return want_dx ? d : nullptr;
}

using ForwardFn = void (*)(const ToyNet&, const float*, ToyWorkspace&, int);
using BackwardFn = const float* (*)(const ToyNet&, const float*, ToyWorkspace&, int, float*, bool);

__attribute__((target("avx512f"))) void forward_avx512(const ToyNet& n, const float* p, ToyWorkspace& ws, int Bp) {
  forward_body<Avx512>(n, p, ws, Bp);
}
__attribute__((target("avx2,fma"))) void forward_avx2(const ToyNet& n, const float* p, ToyWorkspace& ws, int Bp) {
  forward_body<Avx2>(n, p, ws, Bp);
}
void forward_sse2(const ToyNet& n, const float* p, ToyWorkspace& ws, int Bp) { forward_body<Sse2>(n, p, ws, Bp); }

__attribute__((target("avx512f"))) const float* backward_avx512(const ToyNet& n, const float* p, ToyWorkspace& ws,
                                                                int Bp, float* g, bool dx) {
  return backward_body<Avx512>(n, p, ws, Bp, g, dx);
}
__attribute__((target("avx2,fma"))) const float* backward_avx2(const ToyNet& n, const float* p, ToyWorkspace& ws,
                                                               int Bp, float* g, bool dx) {
  return backward_body<Avx2>(n, p, ws, Bp, g, dx);
}
const float* backward_sse2(const ToyNet& n, const float* p, ToyWorkspace& ws, int Bp, float* g, bool dx) {
  return backward_body<Sse2>(n, p, ws, Bp, g, dx);
}

void forward(const ToyNet& net, const float* params, ToyWorkspace& ws, int Bp) {
  static const ForwardFn fns[] = {forward_sse2, forward_avx2, forward_avx512};  // indexed by SimdLevel
  fns[int(simd_level())](net, params, ws, Bp);
}

const float* backward(const ToyNet& net, const float* params, ToyWorkspace& ws, int Bp, float* grad, bool want_dx) {
  static const BackwardFn fns[] = {backward_sse2, backward_avx2, backward_avx512};
  return fns[int(simd_level())](net, params, ws, Bp, grad, want_dx);
}

// x (B, 3) into act[0] (3, ld), zero padding columns up to Bp.
void load_inputs(const float* x, int B, int Bp, ToyWorkspace& ws) {
  float* a = ws.act[0].data();
  for (int k = 0; k < 3; ++k) {
    for (int b = 0; b < B; ++b) a[k * ws.ld + b] = x[3 * b + k];
    for (int b = B; b < Bp; ++b) a[k * ws.ld + b] = 0.0f;
  }
}

void check_batch(const ToyWorkspace& ws, int B) {
  if (B < 1 || B > ws.max_batch)
    throw std::invalid_argument("toy: batch of " + std::to_string(B) + " samples does not fit the workspace (" +
                                std::to_string(ws.max_batch) + ")");
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

double toy_mse_grad(const ToyNet& net, const float* params, const float* x, const float* y, int B, ToyWorkspace& ws,
                    float* grad) {
  check_batch(ws, B);
  const int Bp = round_lanes(B);
  load_inputs(x, B, Bp, ws);
  forward(net, params, ws, Bp);
  const float* yhat = ws.act[net.layers()].data();
  float* dyhat = ws.d0.data();
  double loss = 0;
  for (int b = 0; b < B; ++b) {
    const float r = yhat[b] - y[b];
    loss += double(r) * r;
    dyhat[b] = 2.0f * r / float(B);  // d mean((yhat - y)^2) / d yhat
  }
  for (int b = B; b < Bp; ++b) dyhat[b] = 0.0f;
  backward(net, params, ws, Bp, grad, false);
  return loss / B;
}

void toy_predict(const ToyNet& net, const float* params, const float* x, int n, ToyWorkspace& ws, float* yhat) {
  for (int i = 0; i < n; i += ws.max_batch) {
    const int B = std::min(ws.max_batch, n - i), Bp = round_lanes(B);
    load_inputs(x + size_t(i) * 3, B, Bp, ws);
    forward(net, params, ws, Bp);
    std::copy_n(ws.act[net.layers()].data(), B, yhat + i);
  }
}

ToyWeights toy_effective_weights(const ToyNet& net, const float* params, const ToySet& set, ToyWorkspace& ws) {
  ToyWeights out;
  if (net.layers() == 1) {  // linear: the parameters themselves
    for (int j = 0; j < 3; ++j) out.w[j] = params[j];
    out.bias = params[3];
    return out;
  }
  double gsum[3] = {0, 0, 0}, xsum[3] = {0, 0, 0}, ysum = 0;
  for (int i = 0; i < set.n; i += ws.max_batch) {
    const int B = std::min(ws.max_batch, set.n - i), Bp = round_lanes(B);
    load_inputs(set.x.data() + size_t(i) * 3, B, Bp, ws);
    forward(net, params, ws, Bp);
    const float* yhat = ws.act[net.layers()].data();
    float* dyhat = ws.d0.data();
    for (int b = 0; b < Bp; ++b) dyhat[b] = b < B ? 1.0f : 0.0f;
    const float* dx = backward(net, params, ws, Bp, nullptr, true);
    for (int b = 0; b < B; ++b) {
      ysum += yhat[b];
      for (int j = 0; j < 3; ++j) gsum[j] += dx[j * ws.ld + b], xsum[j] += set.x[size_t(i + b) * 3 + j];
    }
  }
  out.bias = ysum / set.n;
  for (int j = 0; j < 3; ++j) {
    out.w[j] = gsum[j] / set.n;
    out.bias -= out.w[j] * xsum[j] / set.n;
  }
  return out;
}

const ToySet& toy_training_set(const ToyData& data, ToyRegime regime) {
  return regime == ToyRegime::domain_randomization ? data.train_dr : data.train;
}

namespace {
double rmse_of(const float* yhat, const ToySet& s) {
  double ss = 0;
  for (int i = 0; i < s.n; ++i) ss += (double(yhat[i]) - s.y[i]) * (double(yhat[i]) - s.y[i]);
  return std::sqrt(ss / s.n);
}
}  // namespace

ToyMetrics evaluate_toy_model(const ToyNet& net, const float* params, const ToyData& data, ToyRegime regime,
                              ToyWorkspace& ws) {
  ToyMetrics m;
  std::vector<float> yhat(data.train.n);
  auto rmse = [&](const ToySet& s) {
    yhat.resize(s.n);
    toy_predict(net, params, s.x.data(), s.n, ws, yhat.data());
    return rmse_of(yhat.data(), s);
  };
  m.rmse_train = rmse(toy_training_set(data, regime));
  m.rmse_iid = rmse(data.iid);
  m.rmse_ood = rmse(data.ood);
  m.weights = toy_effective_weights(net, params, data.iid, ws);
  return m;
}

std::vector<double> train_toy_model(const ToyConfig& cfg, const ToyNet& net, const ToyData& data, ToyRegime regime,
                                    uint32_t seed_index, float* params, ToyWorkspace& ws) {
  const FlushDenormals flush;  // the Adam moments of dead ReLU units decay towards denormals
  const ToySet& train = toy_training_set(data, regime);
  const int N = train.n, B = cfg.batch, batches = (N + B - 1) / B;
  const size_t P = net.num_params();
  std::vector<int32_t> perm(N);
  std::vector<float> xb(size_t(B) * 3), yb(B), grad(P), m(P, 0.0f), v(P, 0.0f);
  std::vector<double> epoch_loss(cfg.epochs);
  int t = 0;
  for (int epoch = 0; epoch < cfg.epochs; ++epoch) {
    const float lr = float(double(cfg.lr) * std::pow(double(cfg.lr_gamma), epoch / cfg.lr_step));  // StepLR
    // Each epoch reads its own region of the order and augmentation streams: epoch e never depends on earlier ones.
    std::iota(perm.begin(), perm.end(), 0);
    RngStream order(cfg.seed, seed_index, Purpose::toy_order, uint64_t(epoch) << 32);
    for (int i = N - 1; i > 0; --i) std::swap(perm[i], perm[order.below(uint32_t(i) + 1)]);
    RngStream aug(cfg.seed, seed_index, Purpose::toy_augment, uint64_t(epoch) << 32);
    const float aug_sd = float(cfg.aug_sd);
    double loss_sum = 0;
    for (int bi = 0; bi < batches; ++bi) {
      const int first = bi * B, Bn = std::min(B, N - first);  // the last batch may be partial
      for (int b = 0; b < Bn; ++b) {
        const int r = perm[first + b];
        std::copy_n(train.x.data() + size_t(r) * 3, 3, xb.data() + size_t(b) * 3);
        yb[b] = train.y[r];
        if (regime == ToyRegime::augmentation) xb[size_t(b) * 3 + 2] += aug_sd * aug.normal();
      }
      loss_sum += toy_mse_grad(net, params, xb.data(), yb.data(), Bn, ws, grad.data());
      adam_step(params, grad.data(), m.data(), v.data(), P, lr, cfg.adam.beta1, cfg.adam.beta2, cfg.adam.eps, ++t);
    }
    epoch_loss[epoch] = loss_sum / batches;
  }
  return epoch_loss;
}

// ---- Exact least squares

ToyWeights toy_exact_fit(const ToyConfig& cfg, const ToyData& data, ToyRegime regime) {
  const ToySet& s = toy_training_set(data, regime);
  // Normal equations A w = c over rows [x1, x2, x3, 1].
  double A[4][5] = {};
  for (int i = 0; i < s.n; ++i) {
    const double r[4] = {s.x[3 * i], s.x[3 * i + 1], s.x[3 * i + 2], 1.0};
    for (int a = 0; a < 4; ++a) {
      for (int b = 0; b < 4; ++b) A[a][b] += r[a] * r[b];
      A[a][4] += r[a] * s.y[i];
    }
  }
  // Augmentation: E over the noise of sum (w.x + w3 a - y)^2 adds n s^2 w3^2 (the noise has mean 0).
  if (regime == ToyRegime::augmentation) A[2][2] += double(s.n) * cfg.aug_sd * cfg.aug_sd;
  const double scale = A[3][3];  // = n
  for (int col = 0; col < 4; ++col) {  // Gaussian elimination with partial pivoting
    int piv = col;
    for (int r = col + 1; r < 4; ++r)
      if (std::fabs(A[r][col]) > std::fabs(A[piv][col])) piv = r;
    if (!(std::fabs(A[piv][col]) > 1e-12 * scale))
      throw std::runtime_error("toy: the exact least-squares fit is singular (too few distinct samples)");
    std::swap(A[col], A[piv]);
    for (int r = 0; r < 4; ++r) {
      if (r == col) continue;
      const double f = A[r][col] / A[col][col];
      for (int c = col; c < 5; ++c) A[r][c] -= f * A[col][c];
    }
  }
  ToyWeights w;
  for (int j = 0; j < 3; ++j) w.w[j] = A[j][4] / A[j][j];
  w.bias = A[3][4] / A[3][3];
  return w;
}

ToyMetrics evaluate_toy_linear(const ToyWeights& fit, const ToyData& data, ToyRegime regime) {
  auto rmse = [&](const ToySet& s) {
    double ss = 0;
    for (int i = 0; i < s.n; ++i) {
      const double r = fit.w[0] * s.x[3 * i] + fit.w[1] * s.x[3 * i + 1] + fit.w[2] * s.x[3 * i + 2] + fit.bias - s.y[i];
      ss += r * r;
    }
    return std::sqrt(ss / s.n);
  };
  ToyMetrics m;
  m.rmse_train = rmse(toy_training_set(data, regime));
  m.rmse_iid = rmse(data.iid);
  m.rmse_ood = rmse(data.ood);
  m.weights = fit;
  return m;
}

ToyClosedForm toy_closed_form(const ToyConfig& cfg) {
  ToyClosedForm c;
  c.sigma_train = cfg.k / cfg.train_factor;
  c.sigma_ood = cfg.k / cfg.ood_factor;
  const double w3 = 1.0 / (1.0 + c.sigma_train * c.sigma_train);
  c.weights.w[0] = 1.0 - w3;
  c.weights.w[1] = 2.0 * (1.0 - w3);
  c.weights.w[2] = w3;
  c.weights.bias = 3.0 * (1.0 - w3);
  // Residual y - yhat = (1 - w3) e - w3 n with n ~ N(0, sigma_set^2).
  auto rmse = [&](double sigma) { return std::sqrt((1 - w3) * (1 - w3) + w3 * w3 * sigma * sigma); };
  c.rmse_iid = rmse(c.sigma_train);
  c.rmse_ood = rmse(c.sigma_ood);
  return c;
}

// ---- The study

const std::vector<std::string>& toy_metric_names() {
  static const std::vector<std::string> names = {"rmse_train", "rmse_iid", "rmse_ood", "w1", "w2", "w3", "bias"};
  return names;
}

double toy_metric(const ToyMetrics& m, const std::string& name) {
  if (name == "rmse_train") return m.rmse_train;
  if (name == "rmse_iid") return m.rmse_iid;
  if (name == "rmse_ood") return m.rmse_ood;
  if (name == "w1") return m.weights.w[0];
  if (name == "w2") return m.weights.w[1];
  if (name == "w3") return m.weights.w[2];
  if (name == "bias") return m.weights.bias;
  throw std::invalid_argument("toy: unknown metric '" + name + "'");
}

std::vector<double> toy_values(const ToyResult& r, const std::string& model, const std::string& regime,
                               const std::string& metric) {
  std::vector<double> v;
  for (const ToyRun& run : r.runs)
    if (run.model == model && run.regime == regime) v.push_back(toy_metric(run.metrics, metric));
  return v;
}

ToyResult run_toy_study(const ToyConfig& cfg, int threads, const ToyProgressFn& progress) {
  validate(cfg);
  const auto t_start = std::chrono::steady_clock::now();
  const int S = cfg.seeds;
  const int nt = threads > 0 ? threads : std::max(1, omp_get_num_procs());
  ToyResult res;
  res.threads = nt;

  // Under shared_data one copy serves every seed.
  std::vector<ToyData> data(cfg.shared_data ? 1 : S);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
  for (int s = 0; s < int(data.size()); ++s) data[s] = make_toy_data(cfg, uint32_t(s));
  auto data_of = [&](int s) -> const ToyData& { return data[cfg.shared_data ? 0 : s]; };
  res.data_s = seconds_since(t_start);

  constexpr int kEvalBatch = 256;
  const int ws_batch = std::max(cfg.batch, kEvalBatch);
  for (const auto& model : cfg.models) {
    const ToyNet net = toy_net(model, cfg.hidden);
    const uint32_t model_id =
        uint32_t(std::find(toy_known_models().begin(), toy_known_models().end(), model) - toy_known_models().begin());
    for (const auto& regime_name : cfg.regimes) {
      const ToyRegime regime = parse_toy_regime(regime_name);
      const auto t0 = std::chrono::steady_clock::now();
      const size_t base = res.runs.size();
      res.runs.resize(base + S);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
      for (int s = 0; s < S; ++s) {
        ToyWorkspace ws(net, ws_batch);
        std::vector<float> params(net.num_params());
        // The same initial weights for every regime of a seed: a paired comparison.
        toy_init_params(net, cfg.seed, uint32_t(s), model_id, params.data());
        ToyRun& run = res.runs[base + s];
        run.seed_index = s, run.model = model, run.regime = regime_name;
        run.train_loss = train_toy_model(cfg, net, data_of(s), regime, uint32_t(s), params.data(), ws);
        run.metrics = evaluate_toy_model(net, params.data(), data_of(s), regime, ws);
      }
      const double wall = seconds_since(t0);
      res.wall_s[model + "/" + regime_name] = wall;
      if (progress) progress(model, regime_name, wall);
    }
  }

  // The exact fit of every regime run, and of plain always (the reference the study reports).
  std::vector<std::string> exact_regimes = cfg.regimes;
  if (std::find(exact_regimes.begin(), exact_regimes.end(), "plain") == exact_regimes.end())
    exact_regimes.insert(exact_regimes.begin(), "plain");
  for (const auto& regime_name : exact_regimes) {
    const ToyRegime regime = parse_toy_regime(regime_name);
    const size_t base = res.runs.size();
    res.runs.resize(base + S);
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int s = 0; s < S; ++s) {
      ToyRun& run = res.runs[base + s];
      run.seed_index = s, run.model = "exact", run.regime = regime_name;
      run.metrics = evaluate_toy_linear(toy_exact_fit(cfg, data_of(s), regime), data_of(s), regime);
    }
  }
  res.total_s = seconds_since(t_start);
  return res;
}

}  // namespace sb
