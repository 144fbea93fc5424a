// What the two CUDA backends (cuda_backend.cpp: our kernels; cudnn_backend.cpp: cuDNN/cuBLAS) share: the device, the
// model's state on it (parameters, gradients, Adam moments: S*P floats each, in the backend's own layout), the kept
// sets (the training set among them; D_sp and the shifted test sets made here by kernels/spurious_cuda.h), each step's
// losses on their way to the host, and the Backend calls that are the same for both. A backend adds its passes:
// train_step, the parameter upload (upload_params), and evaluate(), which runs predict / features / saliency /
// evaluate_set over chunks of samples.
#pragma once
#include <cuda_runtime.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/model.h"
#include "cuda/cuda_handles.h"
#include "cuda/device_memory.h"
#include "cuda/device_sets.h"
#include "kernels/cuda_check.h"
#include "kernels/spurious_cuda.h"
#include "core/nvtx.h"

namespace sb::gpu {

class DeviceBackend : public Backend {
 public:
  // A backend's destructor waits for the device (cudaDeviceSynchronize) before its buffers, and these, are freed.
  std::string name() const override { return name_; }
  int threads() const override { return threads_; }

  void load_params(const float* params) override {
    require_reset();
    if (!params) throw std::invalid_argument(who_ + ": null parameters");
    SB_CUDA_CHECK(cudaDeviceSynchronize());  // no step still reads the old parameters or moments
    const size_t n = size_t(S_) * P_;
    fill_device_bytes(m_.data(), 0, n * sizeof(float));
    fill_device_bytes(v_.data(), 0, n * sizeof(float));
    step_ = 0;
    upload_params(params);
  }

  void get_adam_state(float* m, float* v, int* step) const override {
    require_reset();
    SB_CUDA_CHECK(cudaDeviceSynchronize());
    moments_to_host(m_, m);
    moments_to_host(v_, v);
    *step = step_;
  }

  void set_adam_state(const float* m, const float* v, int step) override {
    require_reset();
    if (!m || !v || step < 0) throw std::invalid_argument(who_ + ": bad Adam state");
    SB_CUDA_CHECK(cudaDeviceSynchronize());  // no step still reads the moments
    moments_from_host(m, m_);
    moments_from_host(v, v_);
    step_ = step;
  }

  int add_set(const float* x, const int32_t* labels, int N, bool per_seed) override {
    require_reset();
    check_set(who_, x, labels, N, shape_.classes);
    SB_CUDA_CHECK(cudaDeviceSynchronize());
    sets_.push_back(upload_set(x, labels, N, per_seed, S_, shape_.length, shape_.classes));
    return int(sets_.size()) - 1;
  }

  // Built on the legacy default stream between two device-wide waits: once per study, so nothing to overlap.
  int add_spurious_set(SpuriousSetKind kind, const SpuriousConfig& cfg, int clean, uint64_t base_seed, uint32_t seed0,
                       int32_t* planted) override {
    require_reset();
    const DeviceSet& base = kept(clean);
    check_spurious_source(who_, base.per_seed, base.host_labels.data(), base.N(), cfg, shape_.length, shape_.classes);
    const int N = base.N(), L = shape_.length;
    DeviceSet set;
    set.x = DeviceArray<float>(size_t(S_) * N * L);
    set.labels = DeviceArray<int32_t>(size_t(N));
    set.host_labels = base.host_labels;
    set.total = base.total;
    set.per_seed = true;
    DeviceArray<int32_t> d_planted(size_t(S_) * N);
    SB_CUDA_CHECK(cudaDeviceSynchronize());
    SB_CUDA_CHECK(cudaMemcpy(set.labels.data(), base.labels.data(), size_t(N) * sizeof(int32_t),
                             cudaMemcpyDeviceToDevice));
    make_spurious_set_cuda(kind, cfg, base.x.data(), base.labels.data(), N, L, base_seed, seed0, S_, set.x.data(),
                           d_planted.data(), nullptr);
    SB_CUDA_CHECK(cudaDeviceSynchronize());
    if (planted) copy_to_host(planted, d_planted.data(), size_t(S_) * N * sizeof(int32_t));
    sets_.push_back(std::move(set));
    return int(sets_.size()) - 1;
  }

  void train_on(int id) override {
    require_reset();
    check_set_id(who_, id, sets_.size(), train_ >= 0);
    if (id == kTrainingSet || id == train_) return;
    SB_CUDA_CHECK(cudaDeviceSynchronize());
    train_data_changing();
    train_ = id;
  }

  void predict(const float* x, int N, bool per_seed, float* logits) override {
    const NvtxRange range(ranges_[0].c_str());
    run_evaluate(Output::logits, x, false, nullptr, N, per_seed, logits, nullptr);
  }

  void features(const float* x, int N, bool per_seed, float* z) override {
    const NvtxRange range(ranges_[1].c_str());
    run_evaluate(Output::features, x, false, nullptr, N, per_seed, z, nullptr);
  }

  void saliency(const float* x, const int32_t* labels, int N, bool per_seed, float* sal) override {
    const NvtxRange range(ranges_[2].c_str());
    run_evaluate(Output::saliency, x, false, labels, N, per_seed, sal, nullptr);
  }

  void evaluate_set(int id, SetMetrics* out, int8_t* pred) override {
    const DeviceSet& set = kept(id);
    const NvtxRange range(ranges_[3].c_str());
    EvalScores scores(S_, shape_.classes, pred, set.N());
    run_evaluate(Output::scores, set.x.data(), true, set.labels.data(), set.N(), set.per_seed, nullptr, &scores);
    scores.finish(set.total, out);
  }

  void set_features(int id, float* z) override {
    const DeviceSet& set = kept(id);
    const NvtxRange range(ranges_[1].c_str());
    run_evaluate(Output::features, set.x.data(), true, nullptr, set.N(), set.per_seed, z, nullptr);
  }

  void set_saliency(int id, float* sal) override {
    const DeviceSet& set = kept(id);
    const NvtxRange range(ranges_[2].c_str());
    run_evaluate(Output::saliency, set.x.data(), true, set.host_labels.data(), set.N(), set.per_seed, sal, nullptr);
  }

 protected:
  // name: "cuda" or "cudnn"; threads as Backend::threads() reports them (0 = all cores). Throws
  // std::runtime_error when no device is usable.
  DeviceBackend(const std::string& name, int threads)
      : name_(name), who_(name + " backend"), threads_(threads > 0 ? threads : std::max(1, omp_get_num_procs())),
        ranges_{name + ":predict", name + ":features", name + ":saliency", name + ":evaluate_set"} {
    int n = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess || n == 0) {
      cudaGetLastError();
      throw std::runtime_error("backend '" + name + "' needs a CUDA device, and none is usable on this machine");
    }
    int device = 0;
    SB_CUDA_CHECK(cudaGetDevice(&device));
    cudaDeviceProp prop{};
    SB_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    device_name_ = std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ")";
  }

  // What evaluate() produces: predict's logits, features, saliency, or evaluate_set's scores.
  enum class Output { logits, features, saliency, scores };

  // The chunked passes behind predict / features / saliency / evaluate_set, called with checked arguments and
  // N >= 1: x on the host, or (x_on_device) an evaluation set's; labels: saliency's on the host (in range), or the
  // scores' on the device; out: (S, N, width) on the host, or scores.
  virtual void evaluate(Output what, const float* x, bool x_on_device, const int32_t* labels, int N, bool per_seed,
                        float* out, EvalScores* scores) = 0;

  // Called by train_on after the device is idle and before the training set changes.
  virtual void train_data_changing() {}

  // Params (S, P) in the backend's layout into params_ (allocated on first use, then the same buffer, so captured
  // graphs stay valid); the caller has waited for the device.
  virtual void upload_params(const float* params) = 0;

  // An Adam moment between the interface's (S, P) on the host and the backend's layout on the device (the same unless
  // a backend overrides these); the device is idle.
  virtual void moments_to_host(const DeviceArray<float>& d, float* host) const {
    gpu::copy_to_host(host, d.data(), size_t(S_) * P_ * sizeof(float));
  }
  virtual void moments_from_host(const float* host, DeviceArray<float>& d) {
    gpu::copy_to_device(d.data(), host, size_t(S_) * P_ * sizeof(float));
  }

  // The training set of train_on, and its rows (0 before there is one).
  const DeviceSet& train_set() const { return sets_[size_t(train_)]; }
  int train_rows() const { return train_ >= 0 ? train_set().N() : 0; }

  // reset()'s argument checks, before anything is freed: a rejected reset leaves the backend as it was.
  void check_reset(const ConvBaseShape& shape, int S, const float* params) const {
    if (S < 1) throw std::invalid_argument(who_ + ": the number of seeds must be positive");
    if (!params) throw std::invalid_argument(who_ + ": null parameters");
    check_convbase_shape(shape);
  }

  // The first half of reset(), after check_reset: waits for the device, drops the kept sets, takes the model's sizes
  // and allocates gradients, Adam moments (zeroed) and the loss buffers. The backend frees its own buffers before and
  // calls upload_params after.
  void begin_reset(const ConvBaseShape& shape, int S, const AdamConfig& adam) {
    SB_CUDA_CHECK(cudaDeviceSynchronize());
    sets_.clear();
    train_ = -1;
    params_ = DeviceArray<float>{};
    grads_ = DeviceArray<float>{};
    m_ = DeviceArray<float>{};
    v_ = DeviceArray<float>{};
    shape_ = shape, S_ = S, P_ = shape.num_params(), adam_ = adam, step_ = 0;
    const size_t n = size_t(S) * P_;
    grads_ = DeviceArray<float>(n);
    m_ = DeviceArray<float>(n);
    v_ = DeviceArray<float>(n);
    fill_device_bytes(m_.data(), 0, n * sizeof(float));
    fill_device_bytes(v_.data(), 0, n * sizeof(float));
    train_loss_ = DeviceArray<float>(size_t(S));
    loss_pinned_ = PinnedBuffer(size_t(S) * sizeof(float));
  }

  void require_reset() const {
    if (S_ == 0) throw std::logic_error(who_ + ": reset() must come first");
  }

  float* loss_pinned() const { return reinterpret_cast<float*>(loss_pinned_.data()); }

  const std::string name_, who_;  // "cuda", "cuda backend" (the start of every error message)
  const int threads_;
  std::string device_name_;  // "NVIDIA H200 (sm_90)"
  ConvBaseShape shape_;
  int S_ = 0, step_ = 0;
  size_t P_ = 0;
  AdamConfig adam_;
  DeviceArray<float> params_, grads_, m_, v_;  // S * P each, in the backend's layout
  DeviceArray<float> train_loss_;              // (S): each seed's mean batch loss of the last step
  PinnedBuffer loss_pinned_;                   // (S) floats: where train_loss_ lands on the host

 private:
  void run_evaluate(Output what, const float* x, bool x_on_device, const int32_t* labels, int N, bool per_seed,
                    float* out, EvalScores* scores) {
    require_reset();
    if (N < 1) return;
    if (!x || (what == Output::scores ? !scores || !labels : !out) || (what == Output::saliency && !labels))
      throw std::invalid_argument(who_ + ": null input or output");
    if (what == Output::saliency)
      for (int i = 0; i < N; ++i)
        if (labels[i] < 0 || labels[i] >= shape_.classes)
          throw std::invalid_argument(who_ + ": saliency label " + std::to_string(labels[i]) + " outside [0, " +
                                      std::to_string(shape_.classes) + ")");
    evaluate(what, x, x_on_device, labels, N, per_seed, out, scores);
  }

  // Kept set `id` (or the training set), checked.
  const DeviceSet& kept(int id) const {
    require_reset();
    check_set_id(who_, id, sets_.size(), train_ >= 0);
    return sets_[size_t(id == kTrainingSet ? train_ : id)];
  }

  const std::string ranges_[4];  // NVTX range names: "cuda:predict", ...
  std::vector<DeviceSet> sets_;  // add_set's and add_spurious_set's, until the next reset
  int train_ = -1;               // the training set's index in sets_, or -1
};

}  // namespace sb::gpu
