// The "cuda" backend: ConvBase for S seeds on one GPU with the kernels of kernels/, every launch covering all the
// seeds of a group. It mirrors the CPU backend (host/cpu/backend.cpp) step by step:
//   gather -> conv1 -> conv2 -> conv3 -> head -> softmax CE -> head backward -> conv3..conv1 backward -> Adam
// Device layouts, seed first, sample-major (PyTorch's NCL) within a seed:
//   params, grads, Adam m and v   (S, P)          x_train (S, N, L), labels (N)
//   xb (S, B, L)   a1 (S, B, C, L1)   a2 (S, B, C, L2)   a3 (S, B, C*L3) = the head input z   logits (S, B, K)
//   wgrad_workspace (S, W): the conv weight gradients' split-sum partials (conv1d_backward_weights_workspace)
// Seeds are split into contiguous groups, each with its own stream, slices of every buffer, and (after its first
// step at a batch size) a CUDA graph of its training step. A step's host inputs (batch rows and Adam scalars) go
// through a ring of pinned staging slots (step_inputs.h) with one cudaMemcpyAsync per group, so train_step
// without a loss never waits for the device. Every kernel sums in a fixed order and no seed reads another's data, so a seed's numbers
// do not depend on S, on the grouping, or on graphs versus plain launches.
#include <cuda_runtime.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core/backend.h"
#include "core/model.h"
#include "cuda/backend_cuda.h"
#include "cuda/cuda_handles.h"
#include "cuda/device_backend.h"
#include "cuda/device_memory.h"
#include "cuda/device_sets.h"
#include "cuda/step_inputs.h"
#include "kernels/adam.h"
#include "kernels/conv1d.h"
#include "kernels/cuda_check.h"
#include "kernels/gather.h"
#include "kernels/linear.h"
#include "core/nvtx.h"
#include "kernels/softmax_ce.h"

namespace sb {
namespace {

using gpu::DeviceArray;
using gpu::EventHandle;
using gpu::PinnedBuffer;
using gpu::StreamHandle;

// ---- Owning handles of CUDA objects (destructors ignore errors: they run during unwinding and at exit).

class GraphExecHandle {
 public:
  GraphExecHandle() = default;
  ~GraphExecHandle() { reset(); }
  GraphExecHandle(const GraphExecHandle&) = delete;
  GraphExecHandle& operator=(const GraphExecHandle&) = delete;
  cudaGraphExec_t get() const { return g_; }
  void reset(cudaGraphExec_t g = nullptr) {
    if (g_) cudaGraphExecDestroy(g_);
    g_ = g;
  }

 private:
  cudaGraphExec_t g_ = nullptr;
};

// Seeds [s0, s0 + S) with their stream, step input, staging ring and captured step.
struct SeedGroup {
  int s0 = 0, S = 0;
  StreamHandle stream;
  gpu::StepInputs inputs;  // Adam scalars and the group's batch rows (S, B_capacity)
  GraphExecHandle graph;
  int graph_batch = 0;  // batch size the graph was captured for (0: none)
  int eager_batch = 0;  // batch size of the last plain (uncaptured) step: capture happens on the next one
};

// Activations of a forward pass and the input gradients of a backward pass, for S seeds of up to `capacity`
// samples. Slices for seeds [s0, ...) of a pass over B samples start at s0 * (per-seed size at B).
struct PassBuffers {
  int capacity = 0;
  DeviceArray<float> x, a1, a2, a3, logits, dlogits, d3, d2, d1, dx;
  DeviceArray<int32_t> labels;
  DeviceArray<float> loss;        // (S): a chunk's mean loss per seed (evaluate_set)
  DeviceArray<int32_t> correct;   // (S, K): its correct counts per class
  DeviceArray<int8_t> pred;        // (S, chunk): its predictions (evaluate_set with pred)
  // Training passes only (weight gradients): W floats per seed, enough for any of the three conv layers at any
  // batch up to capacity; seeds [s0, ...) use the slice from s0 * W. Allocated with the rest, before any capture.
  DeviceArray<float> wgrad_workspace;
  size_t wgrad_workspace_per_seed = 0;
};

void check_options(const CudaBackendOptions& options) {
  if (options.streams < 1) throw std::invalid_argument("cuda backend: streams must be positive");
  if (options.eval_chunk < 0) throw std::invalid_argument("cuda backend: eval_chunk must not be negative");
  gpu::split_rule_note();  // a bad SB_SPLIT_* value is refused here, not in the middle of a training step
}

class CudaBackend final : public gpu::DeviceBackend {
 public:
  CudaBackend(int threads, const CudaBackendOptions& options) : DeviceBackend("cuda", threads), options_(options) {}

  ~CudaBackend() override { cudaDeviceSynchronize(); }  // no buffer is freed under a running kernel

  std::string device() const override {
    const int g = groups_.empty() ? (options_.stream_per_seed ? -1 : options_.streams) : int(groups_.size());
    const std::string streams = g < 0 ? "a stream per seed" : std::to_string(g) + (g == 1 ? " stream" : " streams");
    const std::string split = gpu::split_rule_note();
    return device_name_ + ", " + streams + (options_.graphs ? ", CUDA graphs" : "") + (split.empty() ? "" : ", " + split);
  }

  void reset(const ConvBaseShape& shape, int S, const float* params, const AdamConfig& adam) override {
    check_reset(shape, S, params);
    if (S > 65535) throw std::invalid_argument("cuda backend: at most 65535 seeds (one grid dimension)");
    SB_CUDA_CHECK(cudaDeviceSynchronize());
    groups_.clear();
    train_ = PassBuffers{};
    eval_ = PassBuffers{};
    begin_reset(shape, S, adam);
    upload_params(params);

    const int G = options_.stream_per_seed ? S : std::min(options_.streams, S);
    for (int g = 0; g < G; ++g) {
      auto group = std::make_unique<SeedGroup>();
      group->s0 = int(long(S) * g / G);
      group->S = int(long(S) * (g + 1) / G) - group->s0;
      groups_.push_back(std::move(group));
    }
  }

  void upload_params(const float* params) override {
    const size_t n = size_t(S_) * P_;
    if (params_.size() != n) params_ = DeviceArray<float>(n);
    gpu::copy_to_device(params_.data(), params, n * sizeof(float));
  }

  void get_params(float* params) const override {
    require_reset();
    gpu::copy_to_host(params, params_.data(), size_t(S_) * P_ * sizeof(float));  // waits for every stream
  }

  void train_step(const int32_t* batch_index, int B, float lr, float* loss) override {
    require_reset();
    check_train_step("cuda backend", batch_index, S_, B, train_rows());
    const NvtxRange range("cuda:train_step");  // nested in the study's train_step
    ensure_train_capacity(B);
    const int t = ++step_;
    const gpu::AdamStepScalars scalars = gpu::adam_step_scalars(lr, adam_.beta1, adam_.beta2, t);

    for (auto& group : groups_) {
      SeedGroup& g = *group;
      g.inputs.stage(scalars, batch_index + size_t(g.s0) * B, size_t(g.S) * B, g.stream.get());
      run_step(g, B);
      if (loss)
        SB_CUDA_CHECK(cudaMemcpyAsync(loss_pinned() + g.s0, train_loss(g), size_t(g.S) * sizeof(float),
                                      cudaMemcpyDeviceToHost, g.stream.get()));
    }
    if (loss) {
      for (auto& group : groups_) SB_CUDA_CHECK(cudaStreamSynchronize(group->stream.get()));
      std::memcpy(loss, loss_pinned(), size_t(S_) * sizeof(float));
    }
  }

 private:
  // The graphs captured so far hold the old training set's buffers and N.
  void train_data_changing() override { invalidate_graphs(); }

  // Pointers of one pass over seeds [s0, s0 + S) with B samples each.
  struct Pass {
    int S, B;
    const float* params;                 // (S, P)
    const float* x;                      // (S, B, L), or (B, L) when x_seed_stride is 0
    size_t x_seed_stride;
    float *a1, *a2, *a3, *logits;        // forward outputs
    float *dlogits, *d3, *d2, *d1;       // gradients (d* of the pre-activations after the ReLU masks)
    float* wgrad_workspace;              // (S, W) for conv1d_backward_weights, or null (one chain per output)
  };

  Pass slice(PassBuffers& buf, int s0, int S, int B, const float* x, size_t x_seed_stride) const {
    const int C = shape_.channels, K = shape_.classes;
    const size_t n1 = size_t(B) * C * shape_.l1(), n2 = size_t(B) * C * shape_.l2(), n3 = size_t(B) * shape_.feature_dim();
    const size_t nk = size_t(B) * K, off = size_t(s0);
    float* ws = buf.wgrad_workspace.data() ? buf.wgrad_workspace.data() + off * buf.wgrad_workspace_per_seed : nullptr;
    return Pass{S,
                B,
                params_.data() + off * P_,
                x,
                x_seed_stride,
                buf.a1.data() + off * n1,
                buf.a2.data() + off * n2,
                buf.a3.data() + off * n3,
                buf.logits.data() + off * nk,
                buf.dlogits.data() + off * nk,
                buf.d3.data() + off * n3,
                buf.d2.data() + off * n2,
                buf.d1.data() + off * n1,
                ws};
  }

  gpu::ConvDims conv1_dims(int S, int B) const {
    return {S, B, 1, shape_.channels, ConvBaseShape::k1, shape_.length};
  }
  gpu::ConvDims conv2_dims(int S, int B) const {
    return {S, B, shape_.channels, shape_.channels, ConvBaseShape::k2, shape_.l1()};
  }
  gpu::ConvDims conv3_dims(int S, int B) const {
    return {S, B, shape_.channels, shape_.channels, ConvBaseShape::k3, shape_.l2()};
  }
  gpu::LinearDims head_dims(int S, int B) const { return {S, B, shape_.feature_dim(), shape_.classes}; }

  // conv1 -> ReLU -> conv2 -> ReLU -> conv3 -> ReLU (-> head, when with_logits), as convbase_forward.
  void forward(const Pass& p, bool with_logits, cudaStream_t st) const {
    const ConvBaseShape& s = shape_;
    const size_t P = P_;
    const float* w = p.params;
    gpu::conv1d_forward(conv1_dims(p.S, p.B), p.x, p.x_seed_stride, w + s.off_w1(), w + s.off_b1(), P, true, p.a1, st);
    gpu::conv1d_forward(conv2_dims(p.S, p.B), p.a1, size_t(p.B) * s.channels * s.l1(), w + s.off_w2(), w + s.off_b2(),
                        P, true, p.a2, st);
    gpu::conv1d_forward(conv3_dims(p.S, p.B), p.a2, size_t(p.B) * s.channels * s.l2(), w + s.off_w3(), w + s.off_b3(),
                        P, true, p.a3, st);
    if (with_logits)
      gpu::linear_forward(head_dims(p.S, p.B), p.a3, size_t(p.B) * s.feature_dim(), w + s.off_wh(), w + s.off_bh(), P,
                          p.logits, st);
  }

  // The input gradients from p.dlogits down to d1 (the gradient of conv1's pre-activation), as convbase_backward.
  // With grads (S, P), also every weight gradient; p.x is then conv1's input.
  void backward(const Pass& p, float* grads, cudaStream_t st) const {
    const ConvBaseShape& s = shape_;
    const size_t P = P_;
    const float* w = p.params;
    float* g = grads;
    const size_t a1_stride = size_t(p.B) * s.channels * s.l1(), a2_stride = size_t(p.B) * s.channels * s.l2();
    if (g) gpu::linear_backward_weights(head_dims(p.S, p.B), p.dlogits, p.a3, g + s.off_wh(), g + s.off_bh(), P, st);
    gpu::linear_backward_input(head_dims(p.S, p.B), p.dlogits, w + s.off_wh(), P, p.a3, p.d3, st);
    float* ws = p.wgrad_workspace;  // each layer's split partials, one layer at a time (stream order)
    if (g)
      gpu::conv1d_backward_weights(conv3_dims(p.S, p.B), p.d3, p.a2, a2_stride, g + s.off_w3(), g + s.off_b3(), P, st,
                                   ws);
    gpu::conv1d_backward_input(conv3_dims(p.S, p.B), p.d3, w + s.off_w3(), P, p.a2, false, p.d2, st);
    if (g)
      gpu::conv1d_backward_weights(conv2_dims(p.S, p.B), p.d2, p.a1, a1_stride, g + s.off_w2(), g + s.off_b2(), P, st,
                                   ws);
    gpu::conv1d_backward_input(conv2_dims(p.S, p.B), p.d2, w + s.off_w2(), P, p.a1, false, p.d1, st);
    if (g)
      gpu::conv1d_backward_weights(conv1_dims(p.S, p.B), p.d1, p.x, p.x_seed_stride, g + s.off_w1(), g + s.off_b1(), P,
                                   st, ws);
  }

  // ---- Training

  float* train_loss(const SeedGroup& g) { return train_loss_.data() + g.s0; }

  // Every launch of one group's training step, on its stream; nothing else (it is what a graph captures).
  void enqueue_step(const SeedGroup& g, int B) {
    cudaStream_t st = g.stream.get();
    const int L = shape_.length, K = shape_.classes;
    float* xb = train_.x.data() + size_t(g.s0) * B * L;
    int32_t* yb = train_.labels.data() + size_t(g.s0) * B;
    const gpu::DeviceSet& set = train_set();
    const int N = set.N();
    const size_t x_seed_stride = set.per_seed ? size_t(N) * L : 0;  // D_sp: each seed its own; D_base: shared
    gpu::gather_batch(g.S, B, N, L, set.x.data() + size_t(g.s0) * x_seed_stride, x_seed_stride, set.labels.data(),
                      g.inputs.rows(), xb, yb, st);
    const Pass p = slice(train_, g.s0, g.S, B, xb, size_t(B) * L);
    forward(p, true, st);
    gpu::SoftmaxCrossEntropyArgs ce;
    ce.S = g.S, ce.B = B, ce.K = K;
    ce.logits = p.logits, ce.labels = yb, ce.label_seed_stride = size_t(B);
    ce.dlogits = p.dlogits, ce.loss = train_loss(g);
    gpu::softmax_cross_entropy(ce, st);
    float* grads = grads_.data() + size_t(g.s0) * P_;
    backward(p, grads, st);
    const size_t n = size_t(g.S) * P_, off = size_t(g.s0) * P_;
    gpu::adam_update(params_.data() + off, grads, m_.data() + off, v_.data() + off, n, adam_.beta1, adam_.beta2,
                     adam_.eps, g.inputs.scalars(), st);
  }

  // Plain launches for the first step at a batch size (kernels load lazily; nothing to capture yet), a captured
  // graph from the second on.
  void run_step(SeedGroup& g, int B) {
    if (!options_.graphs) {
      enqueue_step(g, B);
      return;
    }
    if (g.graph.get() && g.graph_batch == B) {
      SB_CUDA_CHECK(cudaGraphLaunch(g.graph.get(), g.stream.get()));
      return;
    }
    if (g.eager_batch != B) {
      enqueue_step(g, B);
      g.eager_batch = B;
      return;
    }
    const NvtxRange range("cuda:capture");
    g.graph.reset();
    g.graph_batch = 0;
    cudaGraph_t graph = nullptr;
    SB_CUDA_CHECK(cudaStreamBeginCapture(g.stream.get(), cudaStreamCaptureModeThreadLocal));
    try {
      enqueue_step(g, B);
    } catch (...) {
      cudaStreamEndCapture(g.stream.get(), &graph);  // leave the stream usable
      if (graph) cudaGraphDestroy(graph);
      throw;
    }
    SB_CUDA_CHECK(cudaStreamEndCapture(g.stream.get(), &graph));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    SB_CUDA_CHECK(err);
    g.graph.reset(exec);
    g.graph_batch = B;
    SB_CUDA_CHECK(cudaGraphLaunch(exec, g.stream.get()));
  }

  void invalidate_graphs() {
    for (auto& g : groups_) g->graph.reset(), g->graph_batch = 0, g->eager_batch = 0;
  }

  // Buffers for batches of up to B samples (grown, never shrunk; growing drops the graphs, which hold pointers).
  void ensure_train_capacity(int B) {
    if (train_.capacity >= B) return;
    SB_CUDA_CHECK(cudaDeviceSynchronize());
    invalidate_graphs();
    allocate_pass(train_, B);
    train_.wgrad_workspace_per_seed = wgrad_workspace_per_seed(B);
    train_.wgrad_workspace = DeviceArray<float>(size_t(S_) * train_.wgrad_workspace_per_seed);
    for (auto& g : groups_) {
      g->inputs.allocate(size_t(g->S) * B);
    }
  }

  // Floats of conv weight-gradient workspace one seed needs at any batch size up to capacity (the split plan
  // follows B*Lout and is not monotone in it everywhere, so every size is asked; a few hundred integer
  // computations, once per growth).
  size_t wgrad_workspace_per_seed(int capacity) const {
    size_t w = 0;
    for (int B = 1; B <= capacity; ++B)
      for (const gpu::ConvDims& d : {conv1_dims(1, B), conv2_dims(1, B), conv3_dims(1, B)})
        w = std::max(w, gpu::conv1d_backward_weights_workspace(d));
    return w;
  }

  void allocate_pass(PassBuffers& buf, int capacity) {
    buf = PassBuffers{};  // free first: peak memory is one set
    const size_t SB = size_t(S_) * capacity;
    const size_t n1 = SB * shape_.channels * shape_.l1(), n2 = SB * shape_.channels * shape_.l2();
    const size_t n3 = SB * shape_.feature_dim(), nk = SB * shape_.classes, nx = SB * shape_.length;
    buf.x = DeviceArray<float>(nx);
    buf.a1 = DeviceArray<float>(n1);
    buf.a2 = DeviceArray<float>(n2);
    buf.a3 = DeviceArray<float>(n3);
    buf.logits = DeviceArray<float>(nk);
    buf.dlogits = DeviceArray<float>(nk);
    buf.d3 = DeviceArray<float>(n3);
    buf.d2 = DeviceArray<float>(n2);
    buf.d1 = DeviceArray<float>(n1);
    buf.dx = DeviceArray<float>(nx);
    buf.labels = DeviceArray<int32_t>(SB);
    buf.loss = DeviceArray<float>(size_t(S_));
    buf.correct = DeviceArray<int32_t>(size_t(S_) * shape_.classes);
    buf.pred = DeviceArray<int8_t>(SB);
    buf.capacity = capacity;
  }

  // ---- Evaluation: all seeds in one launch per layer, in chunks of samples, on the first group's stream.

  int eval_chunk(int N) const {
    if (options_.eval_chunk > 0) return std::min(options_.eval_chunk, N);
    constexpr double kBudgetFloats = 128.0 * 1024 * 1024;  // 512 MiB of activations and gradients
    const ConvBaseShape& s = shape_;
    const double per_sample =
        2.0 * s.length + 2.0 * s.channels * (s.l1() + s.l2() + s.l3()) + 2.0 * s.classes + 1.0;  // one seed
    const double chunk = std::clamp(kBudgetFloats / (per_sample * S_), 1.0, 8192.0);
    return std::min(int(chunk), N);
  }

  void evaluate(Output what, const float* x, bool x_on_device, const int32_t* labels, int N, bool per_seed, float* out,
                gpu::EvalScores* scores) override {
    const int L = shape_.length, K = shape_.classes, F = shape_.feature_dim();
    SB_CUDA_CHECK(cudaDeviceSynchronize());  // training steps still running on the group streams
    const int chunk = eval_chunk(N);
    if (eval_.capacity < chunk) allocate_pass(eval_, chunk);
    cudaStream_t st = groups_[0]->stream.get();
    const size_t fsz = sizeof(float);
    for (int r0 = 0; r0 < N; r0 += chunk) {
      const int n = std::min(chunk, N - r0);
      // x rows [r0, r0 + n) of every seed -> (S, n, L), or of the shared (N, L) -> (n, L)
      const cudaMemcpyKind in = x_on_device ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice;
      if (per_seed)
        SB_CUDA_CHECK(cudaMemcpy2DAsync(eval_.x.data(), size_t(n) * L * fsz, x + size_t(r0) * L, size_t(N) * L * fsz,
                                        size_t(n) * L * fsz, size_t(S_), in, st));
      else
        SB_CUDA_CHECK(cudaMemcpyAsync(eval_.x.data(), x + size_t(r0) * L, size_t(n) * L * fsz, in, st));
      const Pass p = slice(eval_, 0, S_, n, eval_.x.data(), per_seed ? size_t(n) * L : 0);
      forward(p, what != Output::features, st);
      // Copies (S, n, W) on the device to rows [r0, r0 + n) of out (S, N, W).
      auto copy_out = [&](const float* src, int W) {
        SB_CUDA_CHECK(cudaMemcpy2DAsync(out + size_t(r0) * W, size_t(N) * W * fsz, src, size_t(n) * W * fsz,
                                        size_t(n) * W * fsz, size_t(S_), cudaMemcpyDeviceToHost, st));
      };
      if (what == Output::logits) copy_out(p.logits, K);
      if (what == Output::features) copy_out(p.a3, F);
      if (what == Output::scores)
        scores->score_chunk(p.logits, labels + r0, r0, n, eval_.loss.data(), eval_.correct.data(), eval_.pred.data(),
                            st);
      if (what == Output::saliency) {
        SB_CUDA_CHECK(cudaMemcpyAsync(eval_.labels.data(), labels + r0, size_t(n) * sizeof(int32_t),
                                      cudaMemcpyHostToDevice, st));
        gpu::true_logit_gradient(S_, n, K, eval_.labels.data(), 0, p.dlogits, st);  // d logit_y / d logits
        backward(p, nullptr, st);
        gpu::conv1d_backward_input(conv1_dims(S_, n), p.d1, p.params + shape_.off_w1(), P_, nullptr, true,
                                   eval_.dx.data(), st);  // |d logit_y / d x|, (S, n, L)
        copy_out(eval_.dx.data(), L);
      }
    }
    SB_CUDA_CHECK(cudaStreamSynchronize(st));
  }

  // Besides DeviceBackend's state (params_, grads_, m_, v_ are (S, P) here):
  CudaBackendOptions options_;
  PassBuffers train_, eval_;
  std::vector<std::unique_ptr<SeedGroup>> groups_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_kernels_backend(int threads, const CudaBackendOptions& options) {
  check_options(options);  // before looking for a device
  return std::make_unique<CudaBackend>(threads, options);
}

}  // namespace sb
