// The cuDNN side shared by the cudnn backend (host/cuda/cudnn_backend.cpp) and bench_kernels: owning handles of
// cuDNN objects, and one ConvBase convolution layer as cuDNN runs it (a 2-D convolution with H = 1, padding
// (0, 1), stride (1, 2), cross-correlation, fp32 FMA math, the first deterministic algorithm of cuDNN's
// heuristics) for S seeds, grouped (one call, the S filters one grouped filter) or one call per seed.
// Only compiled with cuDNN (SB_HAVE_CUDNN).
#pragma once
#include <cudnn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "core/model.h"
#include "kernels/cuda_check.h"

namespace sb::gpu {

// ---- Owning handles (destructors ignore errors: they run during unwinding and at exit).

// A cuDNN object with a create / destroy pair: the handle and every descriptor kind.
template <class T, cudnnStatus_t (*Create)(T*), cudnnStatus_t (*Destroy)(T)>
class CudnnObject {
 public:
  CudnnObject() { SB_CUDNN_CHECK(Create(&h_)); }
  ~CudnnObject() {
    if (h_) Destroy(h_);
  }
  CudnnObject(const CudnnObject&) = delete;
  CudnnObject& operator=(const CudnnObject&) = delete;
  T get() const { return h_; }

 private:
  T h_ = nullptr;
};
using CudnnHandle = CudnnObject<cudnnHandle_t, cudnnCreate, cudnnDestroy>;
using TensorDesc = CudnnObject<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor>;
using FilterDesc = CudnnObject<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor>;
using ConvDesc =
    CudnnObject<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor, cudnnDestroyConvolutionDescriptor>;
using ActivationDesc =
    CudnnObject<cudnnActivationDescriptor_t, cudnnCreateActivationDescriptor, cudnnDestroyActivationDescriptor>;
using OpTensorDesc =
    CudnnObject<cudnnOpTensorDescriptor_t, cudnnCreateOpTensorDescriptor, cudnnDestroyOpTensorDescriptor>;

// ---- Descriptor helpers. Every tensor is 4-D NCHW float with H = 1.

inline void set_packed(const TensorDesc& d, int n, int c, int w) {
  SB_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d.get(), CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, c, 1, w));
}

inline void set_strided(const TensorDesc& d, int n, int c, int w, int n_stride, int c_stride) {
  SB_CUDNN_CHECK(cudnnSetTensor4dDescriptorEx(d.get(), CUDNN_DATA_FLOAT, n, c, 1, w, n_stride, c_stride, w, 1));
}

// The first of cuDNN's heuristic ranking that runs, is deterministic and uses fp32 FMA math (never tensor cores).
template <class Perf>
const Perf& first_deterministic(const Perf* perf, int count, const std::string& what) {
  for (int i = 0; i < count; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].determinism == CUDNN_DETERMINISTIC &&
        (perf[i].mathType == CUDNN_FMA_MATH || perf[i].mathType == CUDNN_DEFAULT_MATH))
      return perf[i];
  throw std::runtime_error("cuDNN offers no deterministic fp32 algorithm for " + what);
}

// One convolution layer at a batch size: descriptors for one call (all seeds grouped, or one seed) and algorithms.
struct ConvLayer {
  int cin = 0, cout = 0, k = 0, lin = 0, lout = 0;
  TensorDesc x, y, bias;  // x (B, G*cin, 1, lin), y (B, G*cout, 1, lout), bias (1, G*cout, 1, 1); G = S or 1
  TensorDesc y_all;       // the outputs of every seed, (S*B, cout, 1, lout): for the ReLU, elementwise
  FilterDesc w;           // (G*cout, cin, 1, k): group g's filters are seed g's (cout, cin, k), PyTorch's layout
  ConvDesc conv;
  cudnnConvolutionFwdAlgo_t fwd{};
  cudnnConvolutionBwdDataAlgo_t bwd_data{};
  cudnnConvolutionBwdFilterAlgo_t bwd_filter{};
  size_t workspace = 0;  // bytes: the most any of the three algorithms needs
  int calls = 1;         // cuDNN calls per pass: 1 grouped, S per seed

  static constexpr float kOne = 1.0f, kZero = 0.0f;  // alpha, beta (beta 0 overwrites the output)

  // Descriptors and algorithms for S seeds of B samples, grouped (one call) or one call per seed; `handle` picks
  // the algorithms (cuDNN's heuristics, deterministic ones only).
  void build(cudnnHandle_t handle, int S, bool grouped, int B, int in_channels, int out_channels, int kernel,
             int in_length) {
    ConvLayer& l = *this;
    const int G = grouped ? S : 1;
    calls = grouped ? 1 : S;
    cin = in_channels, cout = out_channels, k = kernel, lin = in_length, lout = ConvBaseShape::out_len(lin, k);
    set_packed(l.x, B, G * cin, lin);
    set_packed(l.y, B, G * cout, l.lout);
    set_packed(l.bias, 1, G * cout, 1);
    set_packed(l.y_all, S * B, cout, l.lout);
    SB_CUDNN_CHECK(cudnnSetFilter4dDescriptor(l.w.get(), CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, G * cout, cin, 1, k));
    SB_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(l.conv.get(), 0, ConvBaseShape::pad, 1, ConvBaseShape::stride, 1, 1,
                                                   CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    SB_CUDNN_CHECK(cudnnSetConvolutionMathType(l.conv.get(), CUDNN_FMA_MATH));  // no TF32 tensor cores
    SB_CUDNN_CHECK(cudnnSetConvolutionGroupCount(l.conv.get(), G));
    int n = 0, c = 0, h = 0, w = 0;
    SB_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(l.conv.get(), l.x.get(), l.w.get(), &n, &c, &h, &w));
    if (n != B || c != G * cout || h != 1 || w != l.lout)
      throw std::logic_error("cuDNN's convolution output (" + std::to_string(n) + ", " +
                             std::to_string(c) + ", " + std::to_string(h) + ", " + std::to_string(w) +
                             ") is not ConvBase's (" + std::to_string(B) + ", " + std::to_string(G * cout) + ", 1, " +
                             std::to_string(l.lout) + ")");

    const std::string what = "Conv1d(" + std::to_string(cin) + " -> " + std::to_string(cout) + ", k" +
                             std::to_string(k) + ") on " + std::to_string(lin) + " samples x " + std::to_string(B) +
                             (grouped ? " grouped over " + std::to_string(S) + " seeds" : "");
    int count = 0;
    size_t bytes = 0;
    {
      cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
      SB_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(handle, l.x.get(), l.w.get(), l.conv.get(), l.y.get(),
                                                            CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &count, perf));
      const auto& best = first_deterministic(perf, count, "the forward pass of " + what);
      l.fwd = best.algo;
      SB_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(handle, l.x.get(), l.w.get(), l.conv.get(), l.y.get(),
                                                             l.fwd, &bytes));
      l.workspace = std::max({l.workspace, bytes, best.memory});
    }
    {
      cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
      SB_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(handle, l.w.get(), l.y.get(), l.conv.get(), l.x.get(),
                                                                 CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &count, perf));
      const auto& best = first_deterministic(perf, count, "the input gradient of " + what);
      l.bwd_data = best.algo;
      SB_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(handle, l.w.get(), l.y.get(), l.conv.get(), l.x.get(),
                                                                  l.bwd_data, &bytes));
      l.workspace = std::max({l.workspace, bytes, best.memory});
    }
    {
      cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
      SB_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle, l.x.get(), l.y.get(), l.conv.get(),
                                                                   l.w.get(), CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
                                                                   &count, perf));
      const auto& best = first_deterministic(perf, count, "the weight gradient of " + what);
      l.bwd_filter = best.algo;
      SB_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(handle, l.x.get(), l.y.get(), l.conv.get(),
                                                                    l.w.get(), l.bwd_filter, &bytes));
      l.workspace = std::max({l.workspace, bytes, best.memory});
    }
    if (std::getenv("SB_CUDNN_VERBOSE"))  // which algorithms the heuristics chose, for the benchmark's notes
      std::fprintf(stderr,
                   "cudnn: %s: algorithms forward %d, backward data %d, backward filter %d; %zu bytes"
                   " of workspace\n",
                   what.c_str(), int(l.fwd), int(l.bwd_data), int(l.bwd_filter), l.workspace);
  }


  // One seed's weights, in floats: the distance between seeds' filters in a tensor-major buffer.
  size_t weight_size() const { return size_t(cout) * cin * k; }

  // y = conv(x) + bias for every seed (one grouped call, or one call per seed), then ReLU in place.
  // ws: a workspace of at least `workspace` bytes.
  void forward(cudnnHandle_t h, cudnnActivationDescriptor_t relu, int B, const float* x, size_t x_seed_stride,
               const float* w, const float* bias, float* y, void* ws, size_t ws_bytes) const {
    const ConvLayer& l = *this;
    const size_t y_seed = size_t(B) * l.cout * l.lout;
    for (int s = 0; s < calls; ++s) {
      float* ys = y + s * y_seed;
      SB_CUDNN_CHECK(cudnnConvolutionForward(h, &kOne, l.x.get(), x + s * x_seed_stride, l.w.get(),
                                             w + s * weight_size(), l.conv.get(), l.fwd, ws, ws_bytes, &kZero, l.y.get(), ys));
      SB_CUDNN_CHECK(cudnnAddTensor(h, &kOne, l.bias.get(), bias + size_t(s) * l.cout, &kOne, l.y.get(), ys));
    }
    SB_CUDNN_CHECK(cudnnActivationForward(h, relu, &kOne, l.y_all.get(), y, &kZero, l.y_all.get(), y));
  }

  // From dy, the gradient of the layer's pre-activation: dw and dbias (if dw is not null; overwritten) and dx, the
  // gradient of the layer's input (if not null; overwritten, before any ReLU mask).
  void backward(cudnnHandle_t h, int B, const float* x, size_t x_seed_stride, const float* dy, const float* w,
                float* dw, float* dbias, float* dx, void* ws, size_t ws_bytes) const {
    const ConvLayer& l = *this;
    const size_t y_seed = size_t(B) * l.cout * l.lout, dx_seed = size_t(B) * l.cin * l.lin;
    for (int s = 0; s < calls; ++s) {
      const float* dys = dy + s * y_seed;
      if (dw) {
        SB_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, &kOne, l.x.get(), x + s * x_seed_stride, l.y.get(), dys,
                                                      l.conv.get(), l.bwd_filter, ws, ws_bytes,
                                                      &kZero, l.w.get(), dw + s * weight_size()));
        SB_CUDNN_CHECK(
            cudnnConvolutionBackwardBias(h, &kOne, l.y.get(), dys, &kZero, l.bias.get(), dbias + size_t(s) * l.cout));
      }
      if (dx)
        SB_CUDNN_CHECK(cudnnConvolutionBackwardData(h, &kOne, l.w.get(), w + s * weight_size(), l.y.get(), dys,
                                                    l.conv.get(), l.bwd_data, ws, ws_bytes,
                                                    &kZero, l.x.get(), dx + s * dx_seed));
    }
  }

  // d = d * (a > 0) in place: the ReLU backward of the layer whose output is a. cuDNN reads the mask from y (and
  // x); a is passed for both, the post-activation, which is positive exactly where the pre-activation was.
  void relu_backward(cudnnHandle_t h, cudnnActivationDescriptor_t relu, const float* a, float* d) const {
    const ConvLayer& l = *this;
    SB_CUDNN_CHECK(cudnnActivationBackward(h, relu, &kOne, l.y_all.get(), a, l.y_all.get(), d,
                                           l.y_all.get(), a, &kZero, l.y_all.get(), d));
  }
};

}  // namespace sb::gpu
