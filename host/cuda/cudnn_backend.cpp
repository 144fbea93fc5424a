// The "cudnn" baseline backend (issue 3): ConvBase for S seeds through cuDNN convolutions and cuBLAS GEMMs, to set
// beside our kernels (the "cuda" backend, host/cuda/cuda_backend.cpp). It mirrors that backend step by step and reuses
// its kernels where the libraries have nothing to offer (gather, fused softmax CE, Adam, the saliency one-hot):
//   gather -> conv1 -> conv2 -> conv3 -> head -> softmax CE -> head backward -> conv3..conv1 backward -> Adam
//
// The convolutions over the seeds run one of two ways (BackendOptions::cudnn_conv):
//   grouped   one cuDNN call per layer and pass for all the seeds: the S filters of a layer are one grouped filter
//             (S*Cout, Cin, 1, k) with group count S; activations are (B, S, C, L), i.e. NCHW with N = B,
//             C = S*C, H = 1, W = L (group s reads channels [s*Cin, (s+1)*Cin) and writes [s*Cout, (s+1)*Cout)).
//   per-seed  S calls per layer on (S, B, C, L), each seed's (B, C, 1, L) packed: what a loop over PyTorch models
//             does. Only the convolutions (with their bias) loop; ReLU, the head, CE and Adam are batched in both
//             modes, so the two differ in exactly what the benchmark asks about.
// Conv1d(stride 2, padding 1) is a 2-D convolution with H = 1: padding (0, 1), stride (1, 2), cross-correlation
// (PyTorch's "convolution"), fp32 data and compute.
//
// Device layouts (B samples per seed):
//   params, grads, Adam m and v   tensor-major: for each tensor in state_dict order, the S seeds' copies one after
//                                 another, so each layer's filters are the grouped filter as they lie (reset() and
//                                 get_params() convert from / to the interface's (S, P); Adam is elementwise)
//   x (S, B, L) as gathered       xc: conv1's input, (B, S, L) when grouped (cudnnTransformTensor), x itself per-seed
//   a1, a2, a3 and d1, d2, d3     (B, S, C, Ll) grouped, (S, B, C, Ll) per-seed; a3 is the head input z (row b of
//                                 seed s: F = C*L3 floats in PyTorch's flatten order either way)
//   logits, dlogits (S, B, K)     written by the head GEMMs whatever the conv layout, as the fused CE kernel reads
//
// Numbers: fp32 throughout, no TF32 (CUDNN_FMA_MATH on every convolution; cuBLAS's default math does not use TF32
// for SGEMM). Algorithms come from cuDNN's heuristics (cudnnGet*Algorithm_v7, not cudnnFind*, whose timing could
// pick differently from one run to the next), keeping only those it reports deterministic, so running the same
// seed twice gives the same bits. Plain launches on one stream (no graphs: a baseline); train_step without a loss
// never waits for the device (step inputs go through pinned staging slots, as in the cuda backend).
#include <stdexcept>

#include "cuda/backend_cuda.h"

#ifndef SB_HAVE_CUDNN

namespace sb {

std::unique_ptr<Backend> make_cudnn_backend(const BackendOptions&) {
  throw std::runtime_error(
      "backend 'cudnn' is not available: this build has no cuDNN (install cuDNN 8 or newer, or point CUDNN_ROOT at "
      "it, and reconfigure)");
}

}  // namespace sb

#else  // SB_HAVE_CUDNN

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <omp.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/backend.h"
#include "core/model.h"
#include "kernels/adam.h"
#include "kernels/cuda_check.h"  // SB_CUDA_CHECK, SB_CUBLAS_CHECK, SB_CUDNN_CHECK: failures throw with file:line
#include "cuda/cuda_handles.h"
#include "cuda/cudnn_conv.h"
#include "cuda/device_backend.h"
#include "cuda/device_memory.h"
#include "cuda/device_sets.h"
#include "cuda/step_inputs.h"
#include "kernels/gather.h"
#include "core/nvtx.h"
#include "kernels/softmax_ce.h"

namespace sb {
namespace {

using gpu::DeviceArray;
using gpu::PinnedBuffer;
using gpu::StreamHandle;
using gpu::ActivationDesc;
using gpu::ConvLayer;
using gpu::CudnnHandle;
using gpu::OpTensorDesc;
using gpu::TensorDesc;
using gpu::set_packed;
using gpu::set_strided;

// ---- Owning handles (destructors ignore errors: they run during unwinding and at exit).

class CublasHandle {
 public:
  CublasHandle() { SB_CUBLAS_CHECK(cublasCreate(&h_)); }
  ~CublasHandle() { cublasDestroy(h_); }
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  cublasHandle_t get() const { return h_; }

 private:
  cublasHandle_t h_ = nullptr;
};

// Everything cuDNN needs for passes over B samples per seed.
struct Plan {
  int B = 0;
  ConvLayer layer[3];
  TensorDesc x_seed_major;  // grouped: (S, B, L) seen as (B, S, 1, L): conv1's input before its layout change
  TensorDesc z_conv;        // grouped: a3 as (B, S, 1, F), packed
  TensorDesc z_seed_major;  // grouped: (S, B, F) seen as (B, S, 1, F): the features' layout change
  TensorDesc x_flat;        // every seed's (B, L) inputs, (S*B, 1, 1, L) packed: for |saliency|, elementwise
};

// Activations and gradients of passes over up to `capacity` samples of every seed.
struct PassBuffers {
  int capacity = 0;
  DeviceArray<float> x, xc, a1, a2, a3, d1, d2, d3, logits, dlogits;
  DeviceArray<float> dxc, scratch;  // evaluation only: conv1's input gradient, and layout changes / |.|
  DeviceArray<float> ones;          // (S, capacity) ones: the head's bias as a rank-1 GEMM, its gradient as a GEMV
                                    // (a copy per seed rather than a zero batch stride, which cuBLAS's guide does not
                                    // spell out; a few bytes per sample)
  DeviceArray<int32_t> labels;      // (S, capacity) in training, (capacity) shared in saliency
  DeviceArray<float> loss;          // (S): an evaluation chunk's mean loss per seed (evaluate_set)
  DeviceArray<int32_t> correct;     // (S, K): its correct counts per class
  DeviceArray<int8_t> pred;        // (S, chunk): its predictions (evaluate_set with pred)
};

constexpr size_t kMaxPlans = 8;   // cached batch sizes (training, evaluation chunks); more and the cache restarts

std::string cudnn_version_string() {
  const size_t v = cudnnGetVersion();  // major*10000 + minor*100 + patch since cuDNN 9, major*1000 + ... before
  const size_t major = v >= 90000 ? v / 10000 : v / 1000, minor = (v >= 90000 ? v % 10000 : v % 1000) / 100;
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(v % 100);
}

// The convolution mode, checked before anything looks for a device.
bool grouped_mode(const BackendOptions& options) {
  if (options.cudnn_conv != "grouped" && options.cudnn_conv != "per-seed")
    throw std::invalid_argument("cudnn backend: convolution mode '" + options.cudnn_conv +
                                "' (known: grouped, per-seed)");
  return options.cudnn_conv == "grouped";
}

class CudnnBackend final : public gpu::DeviceBackend {
 public:
  CudnnBackend(const BackendOptions& options, bool grouped)
      : DeviceBackend("cudnn", options.threads), grouped_(grouped) {
    stream_ = std::make_unique<StreamHandle>();
    cudnn_ = std::make_unique<CudnnHandle>();
    cublas_ = std::make_unique<CublasHandle>();
    SB_CUDNN_CHECK(cudnnSetStream(cudnn_->get(), stream_->get()));
    SB_CUBLAS_CHECK(cublasSetStream(cublas_->get(), stream_->get()));
    SB_CUBLAS_CHECK(cublasSetMathMode(cublas_->get(), CUBLAS_DEFAULT_MATH));  // fp32 SGEMM: no TF32
    // ReLU keeps NaN (as relu_forward: 0 > x ? 0 : x); its backward passes dy where the output is positive.
    relu_ = std::make_unique<ActivationDesc>();
    SB_CUDNN_CHECK(cudnnSetActivationDescriptor(relu_->get(), CUDNN_ACTIVATION_RELU, CUDNN_PROPAGATE_NAN, 0.0));
    // |x| = max(x, -x), for saliency: cudnnOpTensor computes op(alpha1 A, alpha2 B) with A = B = x.
    max_ = std::make_unique<OpTensorDesc>();
    SB_CUDNN_CHECK(cudnnSetOpTensorDescriptor(max_->get(), CUDNN_OP_TENSOR_MAX, CUDNN_DATA_FLOAT, CUDNN_PROPAGATE_NAN));
  }

  ~CudnnBackend() override { cudaDeviceSynchronize(); }  // no buffer is freed under a running kernel

  std::string device() const override {
    return device_name_ + ", cuDNN " + cudnn_version_string() + (grouped_ ? " grouped conv" : " per-seed conv");
  }

  void reset(const ConvBaseShape& shape, int S, const float* params, const AdamConfig& adam) override {
    check_reset(shape, S, params);
    SB_CUDA_CHECK(cudaDeviceSynchronize());
    plans_.clear();
    train_ = PassBuffers{};
    eval_ = PassBuffers{};
    inputs_ = gpu::StepInputs{};
    begin_reset(shape, S, adam);
    upload_params(params);
  }

  void upload_params(const float* params) override {
    std::vector<float> tensor_major(size_t(S_) * P_);
    to_tensor_major(params, tensor_major.data());
    if (params_.size() != tensor_major.size()) params_ = DeviceArray<float>(tensor_major.size());
    gpu::copy_to_device(params_.data(), tensor_major.data(), tensor_major.size() * sizeof(float));
  }

  void get_params(float* params) const override {
    require_reset();
    const std::vector<float> tensor_major = params_.download();  // waits for the stream
    to_seed_major(tensor_major.data(), params);
  }

  // Adam's moments are kept tensor-major like the parameters.
  void moments_to_host(const DeviceArray<float>& d, float* host) const override { to_seed_major(d.download().data(), host); }
  void moments_from_host(const float* host, DeviceArray<float>& d) override {
    std::vector<float> tensor_major(size_t(S_) * P_);
    to_tensor_major(host, tensor_major.data());
    gpu::copy_to_device(d.data(), tensor_major.data(), tensor_major.size() * sizeof(float));
  }

  void train_step(const int32_t* batch_index, int B, float lr, float* loss) override {
    require_reset();
    check_train_step("cudnn backend", batch_index, S_, B, train_rows());
    const NvtxRange range("cudnn:train_step");
    ensure_train_capacity(B);
    const Plan& plan = plan_for(B);
    const int t = ++step_;
    const gpu::AdamStepScalars scalars = gpu::adam_step_scalars(lr, adam_.beta1, adam_.beta2, t);
    cudaStream_t st = stream_->get();

    inputs_.stage(scalars, batch_index, size_t(S_) * B, st);

    enqueue_step(plan, B);
    if (loss) {
      SB_CUDA_CHECK(
          cudaMemcpyAsync(loss_pinned(), train_loss_.data(), size_t(S_) * sizeof(float), cudaMemcpyDeviceToHost, st));
      SB_CUDA_CHECK(cudaStreamSynchronize(st));
      std::memcpy(loss, loss_pinned(), size_t(S_) * sizeof(float));
    }
  }

 private:
  // ---- Parameters: (S, P) on the host, tensor-major on the device.

  // One seed's tensor inside its P parameters. The tensor-major copy of tensor t starts at S * t.off (offsets are
  // running sums of sizes), seed s's at S * t.off + s * t.size.
  struct TensorSpan {
    size_t off, size;
  };
  std::vector<TensorSpan> tensor_spans() const {
    const ConvBaseShape& s = shape_;
    const size_t C = s.channels;
    return {{s.off_w1(), C * ConvBaseShape::k1},
            {s.off_b1(), C},
            {s.off_w2(), C * C * ConvBaseShape::k2},
            {s.off_b2(), C},
            {s.off_w3(), C * C * ConvBaseShape::k3},
            {s.off_b3(), C},
            {s.off_wh(), size_t(s.classes) * s.feature_dim()},
            {s.off_bh(), size_t(s.classes)}};
  }
  void to_tensor_major(const float* seed_major, float* tensor_major) const {
    for (const TensorSpan& t : tensor_spans())
      for (int s = 0; s < S_; ++s)
        std::memcpy(tensor_major + size_t(S_) * t.off + s * t.size, seed_major + s * P_ + t.off,
                    t.size * sizeof(float));
  }
  void to_seed_major(const float* tensor_major, float* seed_major) const {
    for (const TensorSpan& t : tensor_spans())
      for (int s = 0; s < S_; ++s)
        std::memcpy(seed_major + s * P_ + t.off, tensor_major + size_t(S_) * t.off + s * t.size,
                    t.size * sizeof(float));
  }
  // All seeds' copies of the tensor at per-seed offset `off` (grads_ and params_ share the layout).
  float* tensor(float* base, size_t off) const { return base + size_t(S_) * off; }
  const float* tensor(const float* base, size_t off) const { return base + size_t(S_) * off; }

  // ---- Plans: descriptors and algorithms per batch size.

  const Plan& plan_for(int B) {
    for (const auto& p : plans_)
      if (p->B == B) return *p;
    if (plans_.size() >= kMaxPlans) {
      SB_CUDA_CHECK(cudaStreamSynchronize(stream_->get()));  // descriptors are host objects; be safe anyway
      plans_.clear();
    }
    auto plan = std::make_unique<Plan>();
    plan->B = B;
    const ConvBaseShape& s = shape_;
    const int C = s.channels, L = s.length, F = s.feature_dim();
    if (size_t(S_) * B * std::max({size_t(C) * s.l1(), size_t(L), size_t(F)}) > size_t(INT_MAX))
      throw std::invalid_argument("cudnn backend: " + std::to_string(S_) + " seeds of " + std::to_string(B) +
                                  " samples exceed cuDNN's 32-bit tensor sizes");
    cudnnHandle_t h = cudnn_->get();
    plan->layer[0].build(h, S_, grouped_, B, 1, C, ConvBaseShape::k1, L);
    plan->layer[1].build(h, S_, grouped_, B, C, C, ConvBaseShape::k2, s.l1());
    plan->layer[2].build(h, S_, grouped_, B, C, C, ConvBaseShape::k3, s.l2());
    if (grouped_) {
      set_strided(plan->x_seed_major, B, S_, L, L, B * L);  // element (b, s, 0, p) at s*B*L + b*L + p
      set_packed(plan->z_conv, B, S_, F);
      set_strided(plan->z_seed_major, B, S_, F, F, B * F);
    }
    set_packed(plan->x_flat, S_ * B, 1, L);
    size_t workspace = 0;
    for (const ConvLayer& l : plan->layer) workspace = std::max(workspace, l.workspace);
    if (workspace > workspace_.size()) {
      SB_CUDA_CHECK(cudaStreamSynchronize(stream_->get()));  // the old workspace may be in use
      workspace_ = DeviceArray<unsigned char>(workspace);
    }
    plans_.push_back(std::move(plan));
    return *plans_.back();
  }

  // ---- Layers. alpha/beta follow cuDNN's and cuBLAS's convention out = alpha*op + beta*out: beta 0 overwrites
  // (out is not read), beta 1 accumulates.

  static constexpr float kOne = 1.0f, kZero = 0.0f, kMinusOne = -1.0f;

  // Pointers of one pass over B samples of every seed.
  struct Pass {
    int B;
    const float* x;        // conv1's input in the conv layout (grouped: (B, S, L); per-seed: (S, B, L) or shared)
    size_t x_seed_stride;  // per-seed: B*L, or 0 for one (B, L) shared by the seeds
    float* a[3];           // post-ReLU activations of conv1..conv3
    float* d[3];           // their gradients, then (after the ReLU backward) those of the pre-activations
    float* logits;         // (S, B, K)
    float* dlogits;        // (S, B, K)
    const float* ones;     // (S, B): seed s's B ones at s*B
  };

  Pass pass(PassBuffers& buf, int B, const float* x, size_t x_seed_stride) const {
    return Pass{B,
                x,
                x_seed_stride,
                {buf.a1.data(), buf.a2.data(), buf.a3.data()},
                {buf.d1.data(), buf.d2.data(), buf.d3.data()},
                buf.logits.data(),
                buf.dlogits.data(),
                buf.ones.data()};
  }

  // The head input z = a3: seed s's row b at z + s*z_seed_stride + b*ldz.
  int head_ldz() const { return grouped_ ? S_ * shape_.feature_dim() : shape_.feature_dim(); }
  long long head_z_seed_stride(int B) const {
    return grouped_ ? shape_.feature_dim() : (long long)B * shape_.feature_dim();
  }

  // cuBLAS is column-major: a row-major (r x c) matrix with row stride ld is, to cuBLAS, its transpose (c x r) with
  // leading dimension ld. Per seed s, with z (B x F, row stride ldz), W (K x F, row stride F), logits (B x K, K):
  //   logits = 1 bias^T + z W^T   <=>  logits^T (K x B) = bias (K x 1) 1^T (1 x B) + W (K x F) z^T (F x B)
  // cuBLAS sees logits^T as (K x B, ld K), z^T as (F x B, ld ldz) and W^T as (F x K, ld F), so the product is
  // op(A) = T applied to A = W^T (lda F), op(B) = N with B = z^T (ldb ldz): m = K, n = B, k = F.
  void head_forward(const Pass& p, const float* wh, const float* bh) const {
    const int K = shape_.classes, F = shape_.feature_dim(), B = p.B;
    cublasHandle_t h = cublas_->get();
    // logits^T = bias 1^T: m = K, n = B, k = 1; A = bias (K x 1, lda K), B = ones (1 x B, ldb 1, stride B).
    SB_CUBLAS_CHECK(cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_N, K, B, 1, &kOne, bh, K, K, p.ones, 1, B,
                                              &kZero, p.logits, K, (long long)B * K, S_));
    // logits^T += W z^T (beta 1).
    SB_CUBLAS_CHECK(cublasSgemmStridedBatched(h, CUBLAS_OP_T, CUBLAS_OP_N, K, B, F, &kOne, wh, F, (long long)K * F,
                                              p.a[2], head_ldz(), head_z_seed_stride(B), &kOne, p.logits, K,
                                              (long long)B * K, S_));
  }

  // The head's backward, per seed, from dlogits (B x K row-major, which cuBLAS sees as dlogits^T, K x B, ld K):
  //   dW (K x F) = dlogits^T z    <=>  dW^T (F x K, what cuBLAS sees of row-major dW, ld F) = z^T dlogits
  //       z^T is cuBLAS's view of z (F x B, ld ldz): op N; dlogits is the transpose of its view: op T, ldb K.
  //       m = F, n = K, k = B.
  //   dbias (K) = dlogits^T 1: a GEMV with cuBLAS's (K x B, ld K) view of dlogits, op N, and the ones vector.
  //   dz (B x F) = dlogits W      <=>  dz^T (F x B, ld ldz) = W^T (F x K, ld F, op N) dlogits^T (K x B, ld K, op N)
  //       m = F, n = B, k = K; dz is written in a3's layout (into d3).
  void head_backward(const Pass& p, const float* wh, float* dwh, float* dbh) const {
    const int K = shape_.classes, F = shape_.feature_dim(), B = p.B;
    const int ldz = head_ldz();
    const long long z_seed = head_z_seed_stride(B), logit_seed = (long long)B * K;
    cublasHandle_t h = cublas_->get();
    if (dwh) {
      SB_CUBLAS_CHECK(cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_T, F, K, B, &kOne, p.a[2], ldz, z_seed,
                                                p.dlogits, K, logit_seed, &kZero, dwh, F, (long long)K * F, S_));
      SB_CUBLAS_CHECK(cublasSgemvStridedBatched(h, CUBLAS_OP_N, K, B, &kOne, p.dlogits, K, logit_seed, p.ones, 1, B,
                                                &kZero, dbh, 1, K, S_));
    }
    SB_CUBLAS_CHECK(cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_N, F, B, K, &kOne, wh, F, (long long)K * F,
                                              p.dlogits, K, logit_seed, &kZero, p.d[2], ldz, z_seed, S_));
  }

  // conv1 -> ReLU -> conv2 -> ReLU -> conv3 -> ReLU (-> head, when with_logits), as convbase_forward.
  void forward(const Plan& plan, const Pass& p, bool with_logits) {
    const ConvBaseShape& s = shape_;
    const float* w = params_.data();
    cudnnHandle_t h = cudnn_->get();
    cudnnActivationDescriptor_t relu = relu_->get();
    void* ws = workspace_.data();
    const size_t ws_bytes = workspace_.size();
    const size_t a1_seed = size_t(p.B) * s.channels * s.l1(), a2_seed = size_t(p.B) * s.channels * s.l2();
    plan.layer[0].forward(h, relu, p.B, p.x, p.x_seed_stride, tensor(w, s.off_w1()), tensor(w, s.off_b1()), p.a[0],
                          ws, ws_bytes);
    plan.layer[1].forward(h, relu, p.B, p.a[0], a1_seed, tensor(w, s.off_w2()), tensor(w, s.off_b2()), p.a[1], ws,
                          ws_bytes);
    plan.layer[2].forward(h, relu, p.B, p.a[1], a2_seed, tensor(w, s.off_w3()), tensor(w, s.off_b3()), p.a[2], ws,
                          ws_bytes);
    if (with_logits) head_forward(p, tensor(w, s.off_wh()), tensor(w, s.off_bh()));
  }

  // From p.dlogits down to conv1: with grads, every weight gradient (overwritten); with dx, conv1's input gradient
  // (saliency; in conv1's input layout, per seed even when x is shared).
  void backward(const Plan& plan, const Pass& p, float* grads, float* dx) {
    const ConvBaseShape& s = shape_;
    const float* w = params_.data();
    float* g = grads;  // null in evaluation
    auto grad = [&](size_t off) { return g ? tensor(g, off) : nullptr; };
    cudnnHandle_t h = cudnn_->get();
    cudnnActivationDescriptor_t relu = relu_->get();
    void* ws = workspace_.data();
    const size_t ws_bytes = workspace_.size();
    const size_t a1_seed = size_t(p.B) * s.channels * s.l1(), a2_seed = size_t(p.B) * s.channels * s.l2();
    head_backward(p, tensor(w, s.off_wh()), grad(s.off_wh()), grad(s.off_bh()));
    plan.layer[2].relu_backward(h, relu, p.a[2], p.d[2]);
    plan.layer[2].backward(h, p.B, p.a[1], a2_seed, p.d[2], tensor(w, s.off_w3()), grad(s.off_w3()), grad(s.off_b3()),
                           p.d[1], ws, ws_bytes);
    plan.layer[1].relu_backward(h, relu, p.a[1], p.d[1]);
    plan.layer[1].backward(h, p.B, p.a[0], a1_seed, p.d[1], tensor(w, s.off_w2()), grad(s.off_w2()), grad(s.off_b2()),
                           p.d[0], ws, ws_bytes);
    plan.layer[0].relu_backward(h, relu, p.a[0], p.d[0]);
    if (g || dx)
      plan.layer[0].backward(h, p.B, p.x, p.x_seed_stride, p.d[0], tensor(w, s.off_w1()), grad(s.off_w1()),
                             grad(s.off_b1()), dx, ws, ws_bytes);
  }

  // ---- Training

  // Every launch of one training step, on the stream, after the step input's copy.
  void enqueue_step(const Plan& plan, int B) {
    cudaStream_t st = stream_->get();
    const int L = shape_.length, K = shape_.classes;
    const int32_t* rows = inputs_.rows();
    const gpu::AdamStepScalars* scalars = inputs_.scalars();
    const gpu::DeviceSet& set = train_set();
    gpu::gather_batch(S_, B, set.N(), L, set.x.data(), set.per_seed ? size_t(set.N()) * L : 0, set.labels.data(), rows,
                      train_.x.data(), train_.labels.data(), st);  // x (S, B, L), labels (S, B)
    const Pass p = grouped_ ? pass(train_, B, to_conv_layout(plan, train_.x.data(), train_.xc.data()), 0)
                            : pass(train_, B, train_.x.data(), size_t(B) * L);
    forward(plan, p, true);
    gpu::SoftmaxCrossEntropyArgs ce;
    ce.S = S_, ce.B = B, ce.K = K;
    ce.logits = p.logits, ce.labels = train_.labels.data(), ce.label_seed_stride = size_t(B);
    ce.dlogits = p.dlogits, ce.loss = train_loss_.data();
    gpu::softmax_cross_entropy(ce, st);
    backward(plan, p, grads_.data(), nullptr);
    gpu::adam_update(params_.data(), grads_.data(), m_.data(), v_.data(), size_t(S_) * P_, adam_.beta1, adam_.beta2,
                     adam_.eps, scalars, st);
  }

  // Grouped: xc (B, S, 1, L) packed = x (S, B, L) transposed, conv1's input. Returns xc.
  const float* to_conv_layout(const Plan& plan, const float* x, float* xc) const {
    SB_CUDNN_CHECK(
        cudnnTransformTensor(cudnn_->get(), &kOne, plan.x_seed_major.get(), x, &kZero, plan.layer[0].x.get(), xc));
    return xc;
  }

  // Buffers for batches of up to B samples (grown, never shrunk), and the staging slots of step inputs.
  void ensure_train_capacity(int B) {
    if (train_.capacity >= B) return;
    SB_CUDA_CHECK(cudaDeviceSynchronize());
    allocate_pass(train_, B, false);
    inputs_.allocate(size_t(S_) * B);
  }

  void allocate_pass(PassBuffers& buf, int capacity, bool evaluation) {
    buf = PassBuffers{};  // free first: peak memory is one set
    const ConvBaseShape& s = shape_;
    const size_t SB = size_t(S_) * capacity;
    const size_t n1 = SB * s.channels * s.l1(), n2 = SB * s.channels * s.l2(), n3 = SB * s.feature_dim();
    const size_t nk = SB * s.classes, nx = SB * s.length;
    buf.x = DeviceArray<float>(nx);
    if (grouped_) buf.xc = DeviceArray<float>(nx);
    buf.a1 = DeviceArray<float>(n1);
    buf.a2 = DeviceArray<float>(n2);
    buf.a3 = DeviceArray<float>(n3);
    buf.d1 = DeviceArray<float>(n1);
    buf.d2 = DeviceArray<float>(n2);
    buf.d3 = DeviceArray<float>(n3);
    buf.logits = DeviceArray<float>(nk);
    buf.dlogits = DeviceArray<float>(nk);
    if (evaluation) {
      buf.dxc = DeviceArray<float>(nx);
      buf.scratch = DeviceArray<float>(SB * std::max(s.length, s.feature_dim()));
    }
    buf.ones = DeviceArray<float>(std::vector<float>(SB, 1.0f));
    buf.labels = DeviceArray<int32_t>(evaluation ? size_t(capacity) : SB);
    if (evaluation) {
      buf.loss = DeviceArray<float>(size_t(S_));
      buf.correct = DeviceArray<int32_t>(size_t(S_) * s.classes);
      buf.pred = DeviceArray<int8_t>(SB);
    }
    buf.capacity = capacity;
  }

  // ---- Evaluation: all seeds at once, in chunks of samples.

  int eval_chunk(int N) const {
    constexpr double kBudgetFloats = 128.0 * 1024 * 1024;  // 512 MiB of activations and gradients
    const ConvBaseShape& s = shape_;
    const double per_sample = 4.0 * s.length + s.feature_dim() + 2.0 * s.channels * (s.l1() + s.l2() + s.l3()) +
                              2.0 * s.classes + 2.0;  // one seed: x, xc, dxc, scratch, a*, d*, logits, dlogits, ones
    const double chunk = std::clamp(kBudgetFloats / (per_sample * S_), 1.0, 8192.0);
    return std::min(int(chunk), N);
  }

  void evaluate(Output what, const float* x, bool x_on_device, const int32_t* labels, int N, bool per_seed, float* out,
                gpu::EvalScores* scores) override {
    const int L = shape_.length, K = shape_.classes, F = shape_.feature_dim();
    const int chunk = eval_chunk(N);
    if (eval_.capacity < chunk) {
      SB_CUDA_CHECK(cudaStreamSynchronize(stream_->get()));
      allocate_pass(eval_, chunk, true);
    }
    cudaStream_t st = stream_->get();  // after the training steps queued on it
    const size_t fsz = sizeof(float);
    const cudaMemcpyKind in = x_on_device ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice;
    for (int r0 = 0; r0 < N; r0 += chunk) {
      const int n = std::min(chunk, N - r0);
      const Plan& plan = plan_for(n);
      const float* xc = nullptr;  // conv1's input
      size_t x_seed_stride = 0;
      if (per_seed) {
        // x rows [r0, r0 + n) of every seed -> (S, n, L)
        SB_CUDA_CHECK(cudaMemcpy2DAsync(eval_.x.data(), size_t(n) * L * fsz, x + size_t(r0) * L, size_t(N) * L * fsz,
                                        size_t(n) * L * fsz, size_t(S_), in, st));
        xc = grouped_ ? to_conv_layout(plan, eval_.x.data(), eval_.xc.data()) : eval_.x.data();
        x_seed_stride = grouped_ ? 0 : size_t(n) * L;
      } else if (!grouped_) {  // the shared (n, L) rows, read by every seed's convolution (seed stride 0)
        SB_CUDA_CHECK(cudaMemcpyAsync(eval_.x.data(), x + size_t(r0) * L, size_t(n) * L * fsz, in, st));
        xc = eval_.x.data();
      } else {  // grouped, shared: xc (n, S, L) holds each row S times
        float* xg = eval_.xc.data();
        const size_t pitch = size_t(S_) * L * fsz;
        SB_CUDA_CHECK(cudaMemcpy2DAsync(xg, pitch, x + size_t(r0) * L, size_t(L) * fsz, size_t(L) * fsz, size_t(n),
                                        in, st));  // seed 0's slot of every row
        for (int k = 1; k < S_; k *= 2)  // seeds [0, k) are filled: copy them to [k, k + m), log2(S) copies
          SB_CUDA_CHECK(cudaMemcpy2DAsync(xg + size_t(k) * L, pitch, xg, pitch, size_t(std::min(k, S_ - k)) * L * fsz,
                                          size_t(n), cudaMemcpyDeviceToDevice, st));
        xc = xg;
      }
      const Pass p = pass(eval_, n, xc, x_seed_stride);
      forward(plan, p, what != Output::features);
      // Copies (S, n, W) on the device to rows [r0, r0 + n) of out (S, N, W).
      auto copy_out = [&](const float* src, int W) {
        SB_CUDA_CHECK(cudaMemcpy2DAsync(out + size_t(r0) * W, size_t(N) * W * fsz, src, size_t(n) * W * fsz,
                                        size_t(n) * W * fsz, size_t(S_), cudaMemcpyDeviceToHost, st));
      };
      if (what == Output::logits) copy_out(p.logits, K);
      if (what == Output::scores)  // the (S, n, K) logits the head wrote
        scores->score_chunk(p.logits, labels + r0, r0, n, eval_.loss.data(), eval_.correct.data(), eval_.pred.data(),
                            st);
      if (what == Output::features) {
        const float* z = p.a[2];
        if (grouped_) {  // (n, S, F) -> (S, n, F)
          SB_CUDNN_CHECK(cudnnTransformTensor(cudnn_->get(), &kOne, plan.z_conv.get(), z, &kZero,
                                              plan.z_seed_major.get(), eval_.scratch.data()));
          z = eval_.scratch.data();
        }
        copy_out(z, F);
      }
      if (what == Output::saliency) {
        SB_CUDA_CHECK(
            cudaMemcpyAsync(eval_.labels.data(), labels + r0, size_t(n) * sizeof(int32_t), cudaMemcpyHostToDevice, st));
        gpu::true_logit_gradient(S_, n, K, eval_.labels.data(), 0, p.dlogits, st);  // d logit_y / d logits
        backward(plan, p, nullptr, eval_.dxc.data());  // d logit_y / d x in conv1's input layout
        // |dx| = max(dx, -dx) into scratch, elementwise over every seed's inputs.
        SB_CUDNN_CHECK(cudnnOpTensor(cudnn_->get(), max_->get(), &kOne, plan.x_flat.get(), eval_.dxc.data(), &kMinusOne,
                                     plan.x_flat.get(), eval_.dxc.data(), &kZero, plan.x_flat.get(),
                                     eval_.scratch.data()));
        const float* sal = eval_.scratch.data();
        if (grouped_) {  // (n, S, L) -> (S, n, L)
          SB_CUDNN_CHECK(cudnnTransformTensor(cudnn_->get(), &kOne, plan.layer[0].x.get(), sal, &kZero,
                                              plan.x_seed_major.get(), eval_.dxc.data()));
          sal = eval_.dxc.data();
        }
        copy_out(sal, L);
      }
    }
    SB_CUDA_CHECK(cudaStreamSynchronize(st));
  }

  // Besides DeviceBackend's state (params_, grads_, m_, v_ tensor-major here):
  const bool grouped_;
  // Declared before this class's buffers and plans, so destroyed after them; DeviceBackend's buffers outlive them
  // all, which is safe because the destructor waits for the device first.
  std::unique_ptr<StreamHandle> stream_;
  std::unique_ptr<CudnnHandle> cudnn_;
  std::unique_ptr<CublasHandle> cublas_;
  std::unique_ptr<ActivationDesc> relu_;
  std::unique_ptr<OpTensorDesc> max_;
  gpu::StepInputs inputs_;                    // Adam scalars and batch rows (S, B_capacity)
  DeviceArray<unsigned char> workspace_;  // cuDNN's, the largest any plan needs
  std::vector<std::unique_ptr<Plan> > plans_;
  PassBuffers train_, eval_;
};

}  // namespace

std::unique_ptr<Backend> make_cudnn_backend(const BackendOptions& options) {
  const bool grouped = grouped_mode(options);
  return std::make_unique<CudnnBackend>(options, grouped);
}

}  // namespace sb

#endif  // SB_HAVE_CUDNN
