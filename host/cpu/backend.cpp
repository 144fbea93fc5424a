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
    x_.clear(), labels_.clear(), N_ = 0;
    eval_sets_.clear();
  }

  void get_params(float* params) const override { std::copy(params_.begin(), params_.end(), params); }

  void set_train_data(const float* x, const int32_t* labels, int N) override {
    require_reset();
    check_train_data("cpu backend", x, labels, N, shape_.classes);
    x_.assign(x, x + size_t(S_) * N * shape_.length);
    labels_.assign(labels, labels + N);
    N_ = N;
  }

  void train_step(const int32_t* batch_index, int B, float lr, float* loss) override {
    require_reset();
    check_train_step("cpu backend", batch_index, S_, B, N_);
    ensure_buffers(train_buffers_, B);
    const int t = ++step_;
    const int L = shape_.length, K = shape_.classes;
    auto step_seed = [&](int s, ThreadBuffers& tb) {
      const int32_t* rows = batch_index + size_t(s) * B;
      const float* xs = x_.data() + size_t(s) * N_ * L;  // this seed's copy of the training inputs
      gather_batch(xs, labels_.data(), L, rows, B, tb.x.data(), tb.labels.data());
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

  int add_eval_set(const float* x, const int32_t* labels, int N, bool per_seed) override {
    require_reset();
    check_eval_set("cpu backend", x, labels, N, shape_.classes);
    EvalSet set;
    set.x.assign(x, x + (per_seed ? size_t(S_) : 1) * N * shape_.length);
    set.labels.assign(labels, labels + N);
    set.per_seed = per_seed;
    eval_sets_.push_back(std::move(set));
    return int(eval_sets_.size()) - 1;
  }

  // Through predict and evaluate_logits: exactly what scoring predict's logits gives.
  void evaluate_set(int id, SetMetrics* out) override {
    require_reset();
    check_eval_set_id("cpu backend", id, eval_sets_.size(), N_ > 0);
    const bool train = id == kTrainingSet;
    const float* x = train ? x_.data() : eval_sets_[size_t(id)].x.data();
    const std::vector<int32_t>& labels = train ? labels_ : eval_sets_[size_t(id)].labels;
    const int N = int(labels.size()), K = shape_.classes;
    std::vector<float> logits(size_t(S_) * N * K);
    predict(x, N, train || eval_sets_[size_t(id)].per_seed, logits.data());
    for (int s = 0; s < S_; ++s) out[s] = evaluate_logits(logits.data() + size_t(s) * N * K, labels.data(), N, K);
  }

 private:
  struct EvalSet {
    std::vector<float> x;  // (S, N, L) or (N, L)
    std::vector<int32_t> labels;
    bool per_seed = false;
  };

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
  int S_ = 0, N_ = 0, step_ = 0;
  size_t P_ = 0;
  AdamConfig adam_;
  std::vector<float> params_, m_, v_;  // (S, P) each
  std::vector<float> x_;               // (S, N, L)
  std::vector<int32_t> labels_;        // (N)
  std::vector<std::unique_ptr<ThreadBuffers>> train_buffers_, predict_buffers_;
  std::vector<EvalSet> eval_sets_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) { return std::make_unique<CpuBackend>(threads); }

}  // namespace sb
