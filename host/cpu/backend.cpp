// The CPU backend: every seed trained by one thread with the layer twins of host/cpu/, seeds spread
// over OpenMP threads. A seed's numbers never depend on the thread count or on the other seeds: each seed
// is computed start to finish by one thread in a fixed order, and nothing is reduced across seeds.
#include "cpu/backend.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/adam.h"
#include "cpu/convbase.h"
#include "cpu/gather.h"
#include "cpu/simd.h"
#include "cpu/softmax_ce.h"
#include "cpu/spurious.h"

namespace sb {
namespace {

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  return "unknown CPU";
}

// Buffers of one thread for a batch of up to max_batch samples.
struct ThreadBuffers {
  ThreadBuffers(const ConvBaseShape& shape, int max_batch)
      : ws(shape, max_batch), x(size_t(max_batch) * shape.length), labels(max_batch),
        logits(size_t(max_batch) * shape.classes), dlogits(size_t(max_batch) * shape.classes),
        grads(shape.num_params()) {}
  ConvBaseWorkspace ws;
  std::vector<float> x;          // (B, L): this seed's batch rows
  std::vector<int32_t> labels;   // (B)
  std::vector<float> logits, dlogits;  // (B, classes)
  std::vector<float> grads;      // (P)
};

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : threads_(threads > 0 ? threads : std::max(1, omp_get_num_procs())) {}

  std::string name() const override { return "cpu"; }
  std::string device() const override {
    return cpu_model_name() + " (" + simd_level_name(simd_level()) + " kernels)";
  }
  int threads() const override { return threads_; }

  void reset(const ConvBaseShape& shape, int S, const float* params, const AdamConfig& adam) override {
    if (S < 1) throw std::invalid_argument("cpu backend: the number of seeds must be positive");
    if (!params) throw std::invalid_argument("cpu backend: null parameters");
    ConvBaseWorkspace check(shape, 1);  // validates the shape
    shape_ = shape, S_ = S, P_ = shape.num_params(), adam_ = adam, step_ = 0;
    params_.assign(params, params + size_t(S) * P_);
    m_.assign(size_t(S) * P_, 0.0f);
    v_.assign(size_t(S) * P_, 0.0f);
    train_buffers_.clear();
    predict_buffers_.clear();
    sets_.clear(), train_ = -1;
  }

  void load_params(const float* params) override {
    require_reset();
    if (!params) throw std::invalid_argument("cpu backend: null parameters");
    params_.assign(params, params + size_t(S_) * P_);
    std::fill(m_.begin(), m_.end(), 0.0f);
    std::fill(v_.begin(), v_.end(), 0.0f);
    step_ = 0;
  }

  void get_params(float* params) const override {
    require_reset();
    std::copy(params_.begin(), params_.end(), params);
  }

  void get_adam_state(float* m, float* v, int* step) const override {
    require_reset();
    std::copy(m_.begin(), m_.end(), m);
    std::copy(v_.begin(), v_.end(), v);
    *step = step_;
  }

  void set_adam_state(const float* m, const float* v, int step) override {
    require_reset();
    if (!m || !v || step < 0) throw std::invalid_argument("cpu backend: bad Adam state");
    m_.assign(m, m + m_.size());
    v_.assign(v, v + v_.size());
    step_ = step;
  }

  int add_set(const float* x, const int32_t* labels, int N, bool per_seed) override {
    require_reset();
    check_set("cpu backend", x, labels, N, shape_.classes);
    Set set;
    set.x.assign(x, x + (per_seed ? size_t(S_) : 1) * N * shape_.length);
    set.labels.assign(labels, labels + N);
    set.per_seed = per_seed;
    sets_.push_back(std::move(set));
    return int(sets_.size()) - 1;
  }

  // Seeds spread over the threads as the study did before the backend made its sets; each seed's set is
  // make_spurious_set's, whatever the thread.
  int add_spurious_set(SpuriousSetKind kind, const SpuriousConfig& cfg, int clean, uint64_t base_seed, uint32_t seed0,
                       int32_t* planted) override {
    require_reset();
    const Set& base = kept("cpu backend", clean);
    check_spurious_source("cpu backend", base.per_seed, base.labels.data(), base.N(), cfg, shape_.length,
                          shape_.classes);
    const int N = base.N(), L = shape_.length;
    Set set;
    set.x.resize(size_t(S_) * N * L);
    set.labels = base.labels;
    set.per_seed = true;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads_)
    for (int s = 0; s < S_; ++s) {
      SpuriousSet one = make_spurious_set(kind, cfg, base.x.data(), base.labels.data(), N, L, base_seed,
                                          seed0 + uint32_t(s));
      std::copy(one.x.begin(), one.x.end(), set.x.begin() + size_t(s) * N * L);
      if (planted) std::copy(one.planted_class.begin(), one.planted_class.end(), planted + size_t(s) * N);
    }
    sets_.push_back(std::move(set));
    return int(sets_.size()) - 1;
  }

  void train_on(int id) override {
    require_reset();
    check_set_id("cpu backend", id, sets_.size(), train_ >= 0);
    if (id != kTrainingSet) train_ = id;
  }

  void train_step(const int32_t* batch_index, int B, float lr, float* loss) override {
    require_reset();
    const Set* train = train_ >= 0 ? &sets_[size_t(train_)] : nullptr;
    const int N = train ? train->N() : 0;
    check_train_step("cpu backend", batch_index, S_, B, N);
    ensure_buffers(train_buffers_, B);
    const int t = ++step_;
    const int L = shape_.length, K = shape_.classes;
    auto step_seed = [&](int s, ThreadBuffers& tb) {
      const int32_t* rows = batch_index + size_t(s) * B;
      const float* xs = train->x.data() + (train->per_seed ? size_t(s) * N * L : 0);  // this seed's training inputs
      gather_batch(xs, train->labels.data(), L, rows, B, tb.x.data(), tb.labels.data());
      float* p = params_.data() + size_t(s) * P_;
      convbase_forward(shape_, p, tb.x.data(), B, tb.logits.data(), tb.ws);
      const float l = softmax_cross_entropy(tb.logits.data(), tb.labels.data(), nullptr, B, K, tb.dlogits.data());
      if (loss) loss[s] = l;
      convbase_backward(shape_, p, tb.x.data(), tb.dlogits.data(), B, tb.grads.data(), tb.ws);
      adam_step(p, tb.grads.data(), m_.data() + size_t(s) * P_, v_.data() + size_t(s) * P_, P_, lr, adam_.beta1,
                adam_.beta2, adam_.eps, t);
    };
    if (S_ >= threads_) {
      set_layer_threads(1);
#pragma omp parallel for num_threads(threads_) schedule(dynamic, 1)
      for (int s = 0; s < S_; ++s) step_seed(s, *train_buffers_[omp_get_thread_num()]);
    } else {
      // Fewer seeds than threads: one seed at a time, each layer split over the threads (same numbers either
      // way). Outside any parallel region, so the layers' regions reuse OpenMP's thread pool. A step makes
      // about ten parallel regions: worth it only when layers are wide (C = 25 takes ~0.2 ms a step).
      set_layer_threads(shape_.channels >= 64 ? threads_ : 1);
      for (int s = 0; s < S_; ++s) step_seed(s, *train_buffers_[0]);
    }
  }

  void predict(const float* x, int N, bool per_seed, float* logits) override {
    const int K = shape_.classes;
    for_each_chunk(x, N, per_seed, [&](int s, int r0, int n, const float* xs, ThreadBuffers& tb) {
      convbase_forward(shape_, params_.data() + size_t(s) * P_, xs, n, logits + (size_t(s) * N + r0) * K, tb.ws);
    });
  }

  void features(const float* x, int N, bool per_seed, float* z) override {
    const int F = shape_.feature_dim();
    for_each_chunk(x, N, per_seed, [&](int s, int r0, int n, const float* xs, ThreadBuffers& tb) {
      convbase_forward(shape_, params_.data() + size_t(s) * P_, xs, n, tb.logits.data(), tb.ws,
                       z + (size_t(s) * N + r0) * F);
    });
  }

  void saliency(const float* x, const int32_t* labels, int N, bool per_seed, float* sal) override {
    const int K = shape_.classes, L = shape_.length;
    for_each_chunk(x, N, per_seed, [&](int s, int r0, int n, const float* xs, ThreadBuffers& tb) {
      const float* p = params_.data() + size_t(s) * P_;
      convbase_forward(shape_, p, xs, n, tb.logits.data(), tb.ws);
      std::fill(tb.dlogits.begin(), tb.dlogits.begin() + size_t(n) * K, 0.0f);
      for (int i = 0; i < n; ++i) tb.dlogits[size_t(i) * K + labels[r0 + i]] = 1.0f;  // d logit_y
      float* out = sal + (size_t(s) * N + r0) * L;
      convbase_backward(shape_, p, xs, tb.dlogits.data(), n, tb.grads.data(), tb.ws, out);
      for (size_t i = 0; i < size_t(n) * L; ++i) out[i] = std::fabs(out[i]);
    });
  }

  // Through predict and evaluate_logits: exactly what scoring predict's logits gives.
  void evaluate_set(int id, SetMetrics* out, int8_t* pred) override {
    const Set& set = kept("cpu backend", id);
    const int N = set.N(), K = shape_.classes;
    std::vector<float> logits(size_t(S_) * N * K);
    predict(set.x.data(), N, set.per_seed, logits.data());
    for (int s = 0; s < S_; ++s) out[s] = evaluate_logits(logits.data() + size_t(s) * N * K, set.labels.data(), N, K);
    if (pred)
      for (size_t i = 0; i < size_t(S_) * N; ++i) pred[i] = int8_t(predicted_class(logits.data() + i * K, K));
  }

  void set_features(int id, float* z) override {
    const Set& set = kept("cpu backend", id);
    features(set.x.data(), set.N(), set.per_seed, z);
  }

  void set_saliency(int id, float* sal) override {
    const Set& set = kept("cpu backend", id);
    saliency(set.x.data(), set.labels.data(), set.N(), set.per_seed, sal);
  }

 private:
  struct Set {
    std::vector<float> x;  // (S, N, L) or (N, L)
    std::vector<int32_t> labels;
    bool per_seed = false;
    int N() const { return int(labels.size()); }
  };

  const Set& kept(const std::string& who, int id) const {
    require_reset();
    check_set_id(who, id, sets_.size(), train_ >= 0);
    return sets_[size_t(id == kTrainingSet ? train_ : id)];
  }

  // Runs fn(seed, first row, rows, x of those rows, thread buffers) over (seed, chunk) pairs in parallel.
  // Chunks bound the workspace (about C x 512 floats per activation row); a sample's outputs do not
  // depend on the chunk it is in, so the pairs can run in any order on any thread.
  template <class Fn>
  void for_each_chunk(const float* x, int N, bool per_seed, Fn fn) {
    require_reset();
    if (N < 1) return;
    const int chunk = std::clamp(12800 / shape_.channels, 16, 512);
    const int chunks = (N + chunk - 1) / chunk;
    ensure_buffers(predict_buffers_, std::min(chunk, N));
    const int L = shape_.length;
    const long tasks = long(S_) * chunks;
#pragma omp parallel for num_threads(threads_) schedule(dynamic, 1)
    for (long task = 0; task < tasks; ++task) {
      const int s = int(task / chunks), r0 = int(task % chunks) * chunk, n = std::min(chunk, N - r0);
      const float* xs = x + (per_seed ? size_t(s) * N * L : 0) + size_t(r0) * L;
      fn(s, r0, n, xs, *predict_buffers_[omp_get_thread_num()]);
    }
  }

  void require_reset() const {
    if (S_ == 0) throw std::logic_error("cpu backend: reset() must come first");
  }
  // One buffer set per thread, for batches of up to B samples.
  void ensure_buffers(std::vector<std::unique_ptr<ThreadBuffers>>& buffers, int B) {
    if (!buffers.empty() && buffers[0]->ws.max_batch >= B) return;
    buffers.clear();
    for (int i = 0; i < threads_; ++i) buffers.push_back(std::make_unique<ThreadBuffers>(shape_, B));
  }

  int threads_;
  ConvBaseShape shape_;
  int S_ = 0, step_ = 0;
  size_t P_ = 0;
  AdamConfig adam_;
  std::vector<float> params_, m_, v_;  // (S, P) each
  std::vector<std::unique_ptr<ThreadBuffers>> train_buffers_, predict_buffers_;
  std::vector<Set> sets_;              // kept sets (add_set, add_spurious_set) since the last reset
  int train_ = -1;                     // the training set's index in sets_, or -1
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) { return std::make_unique<CpuBackend>(threads); }

}  // namespace sb
