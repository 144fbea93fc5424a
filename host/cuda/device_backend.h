// What the two CUDA backends (cuda_backend.cpp: our kernels; cudnn_backend.cpp: cuDNN/cuBLAS) share: the device, the
// model's state on it (parameters, gradients, Adam moments: S*P floats each, in the backend's own layout), the
// training set, each step's losses on their way to the host, the evaluation sets, and the Backend calls that are the
// same for both. A backend adds its passes: train_step, reset's parameter upload, and evaluate(), which runs
// predict / features / saliency / evaluate_set over chunks of samples.
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
#include "cuda/eval_sets.h"
#include "kernels/cuda_check.h"
#include "core/nvtx.h"

namespace sb::gpu {

class DeviceBackend : public Backend {
 public:
  // A backend's destructor waits for the device (cudaDeviceSynchronize) before its buffers, and these, are freed.
  std::string name() const override { return name_; }
  int threads() const override { return threads_; }

  void set_train_data(const float* x, const int32_t* labels, int N) override {
    require_reset();
    check_train_data(who_, x, labels, N, shape_.classes);
    SB_CUDA_CHECK(cudaDeviceSynchronize());
    train_data_changing();
    N_ = 0;  // no training set until the new one is complete
    train_total_.clear();
    const size_t nx = size_t(S_) * N * shape_.length;
    x_train_ = DeviceArray<float>(nx);
    labels_train_ = DeviceArray<int32_t>(size_t(N));
    copy_to_device(x_train_.data(), x, nx * sizeof(float));
    copy_to_device(labels_train_.data(), labels, size_t(N) * sizeof(int32_t));
    train_total_ = class_totals(labels, N, shape_.classes);
    N_ = N;
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

  int add_eval_set(const float* x, const int32_t* labels, int N, bool per_seed) override {
    require_reset();
    check_eval_set(who_, x, labels, N, shape_.classes);
    SB_CUDA_CHECK(cudaDeviceSynchronize());
    eval_sets_.push_back(upload_eval_set(x, labels, N, per_seed, S_, shape_.length, shape_.classes));
    return int(eval_sets_.size()) - 1;
  }

  void evaluate_set(int id, SetMetrics* out) override {
    require_reset();
    check_eval_set_id(who_, id, eval_sets_.size(), N_ > 0);
    const NvtxRange range(ranges_[3].c_str());
    EvalScores scores(S_, shape_.classes);
    if (id == kTrainingSet) {
      run_evaluate(Output::scores, x_train_.data(), true, labels_train_.data(), N_, true, nullptr, &scores);
      scores.finish(train_total_, out);
      return;
    }
    const DeviceEvalSet& set = eval_sets_[size_t(id)];
    run_evaluate(Output::scores, set.x.data(), true, set.labels.data(), set.N(), set.per_seed, nullptr, &scores);
    scores.finish(set.total, out);
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

  // Called by set_train_data after the device is idle and before the old training set is freed.
  virtual void train_data_changing() {}

  // reset()'s argument checks, before anything is freed: a rejected reset leaves the backend as it was.
  void check_reset(const ConvBaseShape& shape, int S, const float* params) const {
    if (S < 1) throw std::invalid_argument(who_ + ": the number of seeds must be positive");
    if (!params) throw std::invalid_argument(who_ + ": null parameters");
    check_convbase_shape(shape);
  }

  // The first half of reset(), after check_reset: waits for the device, drops the training and evaluation sets,
  // takes the model's sizes and allocates gradients, Adam moments (zeroed) and the loss buffers. The backend frees
  // its own buffers before and uploads params_ (in its layout) after.
  void begin_reset(const ConvBaseShape& shape, int S, const AdamConfig& adam) {
    SB_CUDA_CHECK(cudaDeviceSynchronize());
    x_train_ = DeviceArray<float>{};
    labels_train_ = DeviceArray<int32_t>{};
    train_total_.clear();
    eval_sets_.clear();
    params_ = DeviceArray<float>{};
    grads_ = DeviceArray<float>{};
    m_ = DeviceArray<float>{};
    v_ = DeviceArray<float>{};
    shape_ = shape, S_ = S, P_ = shape.num_params(), adam_ = adam, step_ = 0, N_ = 0;
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
  int S_ = 0, N_ = 0, step_ = 0;
  size_t P_ = 0;
  AdamConfig adam_;
  DeviceArray<float> params_, grads_, m_, v_;  // S * P each, in the backend's layout
  DeviceArray<float> x_train_;                 // (S, N, L)
  DeviceArray<int32_t> labels_train_;          // (N)
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

  const std::string ranges_[4];  // NVTX range names: "cuda:predict", ...
  std::vector<int64_t> train_total_;      // (K): training samples of each class
  std::vector<DeviceEvalSet> eval_sets_;  // add_eval_set's, until the next reset
};

}  // namespace sb::gpu
