// Kept sets on the device (Backend::add_set, add_spurious_set) for both CUDA backends, and the sum of the fused
// cross-entropy kernel's per-chunk scores (each seed's mean loss, per-class correct counts and, if asked for, the
// predictions) into SetMetrics. Scoring a set then moves S * (K + 1) numbers per chunk back instead of inputs in and
// logits out.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <numeric>
#include <vector>

#include "core/metrics.h"
#include "cuda/device_memory.h"
#include "kernels/cuda_check.h"
#include "kernels/softmax_ce.h"

namespace sb::gpu {

struct DeviceSet {
  DeviceArray<float> x;              // (S, N, L) per seed, or (N, L) shared
  DeviceArray<int32_t> labels;       // (N)
  std::vector<int32_t> host_labels;  // (N): saliency's, and the spurious transform's label check
  std::vector<int64_t> total;        // (K): samples of each class
  bool per_seed = false;
  int N() const { return int(host_labels.size()); }
};

// Samples of each class among labels (N).
inline std::vector<int64_t> class_totals(const int32_t* labels, int N, int K) {
  std::vector<int64_t> total(size_t(K), 0);
  for (int i = 0; i < N; ++i) ++total[size_t(labels[i])];
  return total;
}

// The set's copy on the device; the arguments are checked (check_set) by the caller.
inline DeviceSet upload_set(const float* x, const int32_t* labels, int N, bool per_seed, int S, int L, int K) {
  DeviceSet set;
  const size_t nx = (per_seed ? size_t(S) : 1) * N * L;
  set.x = DeviceArray<float>(nx);
  set.labels = DeviceArray<int32_t>(size_t(N));
  copy_to_device(set.x.data(), x, nx * sizeof(float));
  copy_to_device(set.labels.data(), labels, size_t(N) * sizeof(int32_t));
  set.host_labels.assign(labels, labels + N);
  set.total = class_totals(labels, N, K);
  set.per_seed = per_seed;
  return set;
}

// Scores of one set, summed over its chunks in order (so the same on every run).
class EvalScores {
 public:
  // pred (S, N), if not null: the host array that receives the predictions of a set of N samples.
  EvalScores(int S, int K, int8_t* pred = nullptr, int N = 0)
      : S_(S), K_(K), N_(N), pred_(pred), loss_sum_(size_t(S), 0.0), correct_(size_t(S) * K, 0) {}

  // Scores rows [r0, r0 + n) of the set: logits (S, n, K) against labels (n, device, shared by the seeds) with the
  // fused CE kernel into loss (S), correct (S, K) and pred (S, n) (device scratch), then adds them.
  void score_chunk(const float* logits, const int32_t* labels, int r0, int n, float* loss, int32_t* correct,
                   int8_t* pred, cudaStream_t stream) {
    SoftmaxCrossEntropyArgs ce;
    ce.S = S_, ce.B = n, ce.K = K_;
    ce.logits = logits, ce.labels = labels, ce.label_seed_stride = 0;
    ce.loss = loss, ce.correct = correct;
    if (pred_) ce.pred = pred;
    softmax_cross_entropy(ce, stream);
    if (pred_)  // (S, n) -> rows [r0, r0 + n) of (S, N)
      SB_CUDA_CHECK(cudaMemcpy2DAsync(pred_ + r0, size_t(N_), pred, size_t(n), size_t(n), size_t(S_),
                                      cudaMemcpyDeviceToHost, stream));
    add_chunk(loss, correct, n, stream);
  }

  // Metrics of the set whose class k has total[k] samples.
  void finish(const std::vector<int64_t>& total, SetMetrics* out) const {
    const int N = int(std::accumulate(total.begin(), total.end(), int64_t(0)));
    for (int s = 0; s < S_; ++s)
      out[s] = metrics_from_counts(correct_.data() + size_t(s) * K_, total.data(), K_, N, loss_sum_[size_t(s)]);
  }

 private:
  // After the CE kernel wrote a chunk of n samples' scores (loss (S) means, correct (S, K)) on `stream`: waits for
  // them and adds them.
  void add_chunk(const float* loss, const int32_t* correct, int n, cudaStream_t stream) {
    std::vector<float> l(static_cast<size_t>(S_));
    std::vector<int32_t> c(static_cast<size_t>(S_) * K_);
    SB_CUDA_CHECK(cudaMemcpyAsync(l.data(), loss, l.size() * sizeof(float), cudaMemcpyDeviceToHost, stream));
    SB_CUDA_CHECK(cudaMemcpyAsync(c.data(), correct, c.size() * sizeof(int32_t), cudaMemcpyDeviceToHost, stream));
    SB_CUDA_CHECK(cudaStreamSynchronize(stream));
    for (int s = 0; s < S_; ++s) loss_sum_[size_t(s)] += double(l[size_t(s)]) * n;
    for (size_t i = 0; i < c.size(); ++i) correct_[i] += c[i];
  }

  int S_, K_, N_;
  int8_t* pred_;
  std::vector<double> loss_sum_;
  std::vector<int64_t> correct_;
};

}  // namespace sb::gpu
