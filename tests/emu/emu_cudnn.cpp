// CPU emulation of the cuDNN and cuBLAS calls of the cudnn backend (shim/cudnn.h, shim/cublas_v2.h; README.md here).
//
// What it checks, as the libraries do or document: descriptor dimensions and the convolution's shape rules (group
// count divides the channels, output dims are the forward formula's), leading dimensions, algorithm and workspace
// (an algorithm the heuristics did not offer, or a workspace smaller than it asked for, is an error). What a real
// GPU would turn into a fault or garbage aborts instead: a tensor that reaches outside the emulated device memory,
// an output that overlaps an input where the library does not allow it, overlapping output batches.
// What it computes: the documented maths, alpha/beta scaled (beta 0 never reads the output), sums in double (so,
// like cuDNN, not in the CPU backend's order). The heuristics rank a non-deterministic or unsupported algorithm
// first and a deterministic one asking for a workspace second, so the backend's choice of algorithm is exercised:
// a non-deterministic one runs, with results that change by an ulp from call to call.
#include <cublas_v2.h>
#include <cudnn.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <vector>

bool emu_is_device(const void* p, size_t bytes);

struct cudnnContext {
  cudaStream_t stream = nullptr;
};
struct cublasContext {
  cudaStream_t stream = nullptr;
};
struct cudnnTensorStruct {
  bool set = false;
  int n = 0, c = 0, h = 0, w = 0;
  long long ns = 0, cs = 0, hs = 0, ws = 0;
  long long at(int in, int ic, int ih, int iw) const { return in * ns + ic * cs + ih * hs + iw * ws; }
  long long count() const { return (long long)n * c * h * w; }
  long long extent() const { return (n - 1) * ns + (c - 1) * cs + (h - 1) * hs + (w - 1) * ws + 1; }  // elements
  bool same_dims(const cudnnTensorStruct& o) const { return n == o.n && c == o.c && h == o.h && w == o.w; }
  bool same_layout(const cudnnTensorStruct& o) const {
    return same_dims(o) && ns == o.ns && cs == o.cs && hs == o.hs && ws == o.ws;
  }
};
struct cudnnFilterStruct {
  bool set = false;
  int k = 0, c = 0, h = 0, w = 0;  // NCHW: element (k, c, r, s) at ((k*c + c)*h + r)*w + s
  long long count() const { return (long long)k * c * h * w; }
};
struct cudnnConvolutionStruct {
  bool set = false;
  int pad_h = 0, pad_w = 0, u = 1, v = 1, dil_h = 1, dil_w = 1, groups = 1;
  cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};
struct cudnnActivationStruct {
  bool set = false;
  cudnnActivationMode_t mode = CUDNN_ACTIVATION_RELU;
  cudnnNanPropagation_t nan = CUDNN_NOT_PROPAGATE_NAN;
};
struct cudnnOpTensorStruct {
  bool set = false;
  cudnnOpTensorOp_t op = CUDNN_OP_TENSOR_ADD;
  cudnnNanPropagation_t nan = CUDNN_NOT_PROPAGATE_NAN;
};

namespace {

[[noreturn]] void die(const char* call, const char* what) {
  std::fprintf(stderr, "EMU: %s: %s\n", call, what);
  std::abort();
}

// A buffer of `elements` floats must lie in one emulated device allocation: a real GPU would fault or corrupt.
void require_device(const void* p, long long elements, const char* call, const char* what) {
  if (elements <= 0) return;
  if (!p || !emu_is_device(p, size_t(elements) * sizeof(float))) {
    std::fprintf(stderr, "EMU: %s: %s (%lld floats at %p) is not inside device memory\n", call, what, elements, p);
    std::abort();
  }
}

// The elements (float offsets from a base pointer) a buffer touches: a strided tensor or matrix may interleave with
// another without sharing an element, so overlaps are decided element by element.
struct Footprint {
  const float* base;
  std::vector<long long> offsets;
};
bool overlap(const Footprint& a, const Footprint& b) {
  if (a.offsets.empty() || b.offsets.empty()) return false;
  const float* lo = std::min(a.base + a.offsets.front(), b.base + b.offsets.front());
  std::vector<long long> mine;
  mine.reserve(a.offsets.size());
  for (long long o : a.offsets) mine.push_back(a.base + o - lo);
  std::sort(mine.begin(), mine.end());
  for (long long o : b.offsets)
    if (std::binary_search(mine.begin(), mine.end(), (long long)(b.base + o - lo))) return true;
  return false;
}
Footprint footprint(const void* p, const cudnnTensorStruct& t) {
  Footprint f{static_cast<const float*>(p), {}};
  f.offsets.reserve(size_t(t.count()));
  for (int n = 0; n < t.n; ++n)
    for (int c = 0; c < t.c; ++c)
      for (int h = 0; h < t.h; ++h)
        for (int w = 0; w < t.w; ++w) f.offsets.push_back(t.at(n, c, h, w));
  std::sort(f.offsets.begin(), f.offsets.end());
  return f;
}
Footprint contiguous(const void* p, long long elements) {
  Footprint f{static_cast<const float*>(p), {}};
  for (long long i = 0; i < elements; ++i) f.offsets.push_back(i);
  return f;
}
// A column-major (rows x cols) matrix with leading dimension ld, in each of `batches` batches `stride` apart.
Footprint matrices(const float* p, int rows, int cols, int ld, long long stride, int batches) {
  Footprint f{p, {}};
  for (int b = 0; b < batches; ++b)
    for (int c = 0; c < cols; ++c)
      for (int r = 0; r < rows; ++r) f.offsets.push_back(b * stride + r + (long long)c * ld);
  std::sort(f.offsets.begin(), f.offsets.end());
  return f;
}
// True when some element appears twice: batches (or strides) of an output that write the same place.
bool self_overlap(const Footprint& f) { return std::adjacent_find(f.offsets.begin(), f.offsets.end()) != f.offsets.end(); }

// out = alpha * value + beta * out; beta 0 does not read out (it may hold NaN), as both libraries document.
inline void store(float* out, double value, float alpha, float beta) {
  *out = beta == 0.0f ? float(alpha * value) : float(alpha * value + double(beta) * *out);
}

int conv_out(int in, int pad, int filter, int stride, int dil) { return 1 + (in + 2 * pad - ((filter - 1) * dil + 1)) / stride; }

// The shape rules of one convolution; x is the input, y the output (of the forward pass).
cudnnStatus_t check_conv(const cudnnTensorStruct& x, const cudnnFilterStruct& w, const cudnnConvolutionStruct& cv,
                         const cudnnTensorStruct& y) {
  if (!x.set || !w.set || !cv.set || !y.set) return CUDNN_STATUS_BAD_PARAM;
  if (x.c != w.c * cv.groups || w.k % cv.groups != 0) return CUDNN_STATUS_BAD_PARAM;
  if (y.n != x.n || y.c != w.k || y.h != conv_out(x.h, cv.pad_h, w.h, cv.u, cv.dil_h) ||
      y.w != conv_out(x.w, cv.pad_w, w.w, cv.v, cv.dil_w))
    return CUDNN_STATUS_BAD_PARAM;
  return CUDNN_STATUS_SUCCESS;
}

// Calls f(n, k, oh, ow, ci, ih, iw, filter index) for every product of a convolution: x element (n, ci, ih, iw) times
// filter element `widx` adds to y element (n, k, oh, ow).
template <class F>
void for_each_product(const cudnnTensorStruct& x, const cudnnFilterStruct& w, const cudnnConvolutionStruct& cv,
                      const cudnnTensorStruct& y, F f) {
  const int k_per_group = w.k / cv.groups;
  for (int n = 0; n < y.n; ++n)
    for (int k = 0; k < w.k; ++k) {
      const int g = k / k_per_group;
      for (int oh = 0; oh < y.h; ++oh)
        for (int ow = 0; ow < y.w; ++ow)
          for (int c = 0; c < w.c; ++c)
            for (int r = 0; r < w.h; ++r) {
              const int ih = oh * cv.u - cv.pad_h + r * cv.dil_h;
              if (ih < 0 || ih >= x.h) continue;
              for (int s = 0; s < w.w; ++s) {
                const int iw = ow * cv.v - cv.pad_w + s * cv.dil_w;
                if (iw < 0 || iw >= x.w) continue;
                // Cross-correlation uses the filter as it lies; convolution flips it.
                const int fr = cv.mode == CUDNN_CROSS_CORRELATION ? r : w.h - 1 - r;
                const int fs = cv.mode == CUDNN_CROSS_CORRELATION ? s : w.w - 1 - s;
                f(n, k, oh, ow, g * w.c + c, ih, iw, ((long long)(k * w.c + c) * w.h + fr) * w.w + fs);
              }
            }
    }
}

// ---- Algorithms. The heuristics list, best first: one the backend must skip, then one it may take, which asks for
// a workspace proportional to the output so that too small a workspace is caught.
template <class Algo>
struct AlgoOffer {
  Algo algo;
  cudnnStatus_t status;
  cudnnDeterminism_t determinism;
};
size_t workspace_for(long long out_elements) { return size_t(out_elements) * sizeof(float) + 256; }

template <class Perf, class Algo>
cudnnStatus_t heuristics(const AlgoOffer<Algo> (&offers)[2], const cudnnConvolutionStruct& cv, long long out_elements,
                         int requested, int* returned, Perf* perf) {
  if (requested < 1 || !returned || !perf) return CUDNN_STATUS_BAD_PARAM;
  *returned = std::min(requested, 2);
  for (int i = 0; i < *returned; ++i) {
    perf[i] = Perf{};
    perf[i].algo = offers[i].algo;
    perf[i].status = offers[i].status;
    perf[i].time = -1.0f;
    perf[i].memory = offers[i].status == CUDNN_STATUS_SUCCESS ? workspace_for(out_elements) : 0;
    perf[i].determinism = offers[i].determinism;
    perf[i].mathType = cv.math;
  }
  return CUDNN_STATUS_SUCCESS;
}

const AlgoOffer<cudnnConvolutionFwdAlgo_t> kFwd[2] = {
    {CUDNN_CONVOLUTION_FWD_ALGO_FFT, CUDNN_STATUS_NOT_SUPPORTED, CUDNN_DETERMINISTIC},
    {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, CUDNN_STATUS_SUCCESS, CUDNN_DETERMINISTIC}};
const AlgoOffer<cudnnConvolutionBwdDataAlgo_t> kBwdData[2] = {
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, CUDNN_STATUS_SUCCESS, CUDNN_NON_DETERMINISTIC},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, CUDNN_STATUS_SUCCESS, CUDNN_DETERMINISTIC}};
const AlgoOffer<cudnnConvolutionBwdFilterAlgo_t> kBwdFilter[2] = {
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, CUDNN_STATUS_SUCCESS, CUDNN_NON_DETERMINISTIC},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, CUDNN_STATUS_SUCCESS, CUDNN_DETERMINISTIC}};

template <class Algo>
bool offered(const AlgoOffer<Algo> (&offers)[2], Algo algo) {
  for (const auto& o : offers)
    if (o.algo == algo && o.status == CUDNN_STATUS_SUCCESS) return true;
  return false;
}
template <class Algo>
bool deterministic(const AlgoOffer<Algo> (&offers)[2], Algo algo) {
  for (const auto& o : offers)
    if (o.algo == algo) return o.determinism == CUDNN_DETERMINISTIC;
  return true;
}

// A non-deterministic algorithm (atomics: the order of the sum changes from call to call) is run as one: each
// output moves by an ulp or not, differently on every call, so a backend that picked one loses bitwise
// reproducibility, as it would on a GPU.
uint64_t g_nondeterministic_calls = 0;
float jitter(float v, uint64_t call, size_t i) {
  uint64_t h = (call + 1) * 0x9E3779B97F4A7C15ull ^ (uint64_t(i) + 1) * 0xBF58476D1CE4E5B9ull;
  h ^= h >> 31;
  return (h & 1) ? std::nextafter(v, h & 2 ? INFINITY : -INFINITY) : v;
}

// The workspace a call was given: at least what the algorithm asked for, in device memory, and scribbled on (NaN) so
// that nothing can rely on what it held.
cudnnStatus_t use_workspace(void* ws, size_t bytes, long long out_elements, const char* call) {
  const size_t need = workspace_for(out_elements);
  if (bytes < need || !ws) return CUDNN_STATUS_BAD_PARAM;
  if (!emu_is_device(ws, bytes)) die(call, "the workspace is not device memory");
  std::fill_n(static_cast<float*>(ws), need / sizeof(float), std::numeric_limits<float>::quiet_NaN());
  return CUDNN_STATUS_SUCCESS;
}

float relu(float x, cudnnNanPropagation_t nan) {
  if (std::isnan(x)) return nan == CUDNN_PROPAGATE_NAN ? x : 0.0f;
  return x > 0.0f ? x : 0.0f;
}

// Every element (n, c, h, w) of a 4-D tensor, in order.
template <class F>
void for_each(const cudnnTensorStruct& t, F f) {
  for (int n = 0; n < t.n; ++n)
    for (int c = 0; c < t.c; ++c)
      for (int h = 0; h < t.h; ++h)
        for (int w = 0; w < t.w; ++w) f(n, c, h, w);
}

// Index of (n, c, h, w) in a tensor broadcast over C's dims (each of its dims is C's or 1).
long long broadcast_at(const cudnnTensorStruct& a, int n, int c, int h, int w) {
  return a.at(a.n == 1 ? 0 : n, a.c == 1 ? 0 : c, a.h == 1 ? 0 : h, a.w == 1 ? 0 : w);
}
bool broadcasts_to(const cudnnTensorStruct& a, const cudnnTensorStruct& c) {
  return (a.n == c.n || a.n == 1) && (a.c == c.c || a.c == 1) && (a.h == c.h || a.h == 1) && (a.w == c.w || a.w == 1);
}

// An output's footprint; an output whose strides put two elements in one place is undefined on a GPU.
Footprint output_footprint(const void* p, const cudnnTensorStruct& t, const char* call) {
  Footprint f = footprint(p, t);
  if (self_overlap(f)) die(call, "the output's strides put two elements in one place");
  return f;
}

// The checks of one convolution call (forward, backward data or filter), in the order cuDNN would meet them:
// shapes, algorithm, device memory of x (input), w (filter) and y (output of the forward pass), the written one
// sharing no element with the other two, and the workspace (filled with NaN).
enum class ConvOut { y, dx, dw };
template <class Algo>
cudnnStatus_t check_conv_call(const char* call, const AlgoOffer<Algo> (&offers)[2], Algo algo,
                              const cudnnTensorStruct& xd, const void* x, const cudnnFilterStruct& wd, const void* w,
                              const cudnnConvolutionStruct& cv, const cudnnTensorStruct& yd, const void* y, ConvOut out,
                              void* ws, size_t ws_bytes) {
  if (const cudnnStatus_t s = check_conv(xd, wd, cv, yd)) return s;
  if (!offered(offers, algo)) return CUDNN_STATUS_NOT_SUPPORTED;
  require_device(x, xd.extent(), call, "x");
  require_device(w, wd.count(), call, "w");
  require_device(y, yd.extent(), call, "y");
  const Footprint fx = footprint(x, xd), fw = contiguous(w, wd.count()), fy = footprint(y, yd);
  const Footprint& written = out == ConvOut::y ? fy : out == ConvOut::dx ? fx : fw;
  if (self_overlap(written)) die(call, "the output's strides put two elements in one place");
  for (const Footprint* read : {&fx, &fw, &fy})
    if (read != &written && overlap(written, *read)) die(call, "the output overlaps an input");
  const long long out_elements = out == ConvOut::y ? yd.count() : out == ConvOut::dx ? xd.count() : wd.count();
  return use_workspace(ws, ws_bytes, out_elements, call);
}

float scalar(const void* p) { return *static_cast<const float*>(p); }

// One convolution pass on the handle's stream: every product x * w of the forward pass lands, summed in double, in
// the output `out` names (y: forward; dx: x's gradient from y's, dy; dw: w's gradient), which then gets
// alpha * sum + beta * itself. x, w and y as in the forward pass (for dx, x is dx and y is dy).
void enqueue_conv(cudnnHandle_t h, ConvOut out, bool nondeterministic, const void* alpha, const void* beta,
                  const cudnnTensorStruct& X, const void* x, const cudnnFilterStruct& W, const void* w,
                  const cudnnConvolutionStruct& CV, const cudnnTensorStruct& Y, const void* y) {
  const uint64_t call = nondeterministic ? ++g_nondeterministic_calls : 0;
  const float a = scalar(alpha), b = scalar(beta);
  const float* xp = static_cast<const float*>(x);
  const float* wp = static_cast<const float*>(w);
  const float* yp = static_cast<const float*>(y);
  float* dst = const_cast<float*>(out == ConvOut::y ? yp : out == ConvOut::dx ? xp : wp);
  emu_enqueue(h->stream, [=]() {
    // Logical (packed NCHW) index of a tensor element; the filter is packed already.
    auto packed = [](const cudnnTensorStruct& t, int n, int c, int hh, int ww) {
      return ((size_t(n) * t.c + c) * t.h + hh) * t.w + ww;
    };
    std::vector<double> acc(size_t(out == ConvOut::y ? Y.count() : out == ConvOut::dx ? X.count() : W.count()), 0.0);
    for_each_product(X, W, CV, Y, [&](int n, int k, int oh, int ow, int ci, int ih, int iw, long long wi) {
      switch (out) {
        case ConvOut::y: acc[packed(Y, n, k, oh, ow)] += double(xp[X.at(n, ci, ih, iw)]) * wp[wi]; break;
        case ConvOut::dx: acc[packed(X, n, ci, ih, iw)] += double(yp[Y.at(n, k, oh, ow)]) * wp[wi]; break;
        case ConvOut::dw: acc[size_t(wi)] += double(xp[X.at(n, ci, ih, iw)]) * yp[Y.at(n, k, oh, ow)]; break;
      }
    });
    if (nondeterministic)
      for (size_t i = 0; i < acc.size(); ++i) acc[i] = jitter(float(acc[i]), call, i);
    if (out == ConvOut::dw) {
      for (size_t i = 0; i < acc.size(); ++i) store(dst + i, acc[i], a, b);
      return;
    }
    const cudnnTensorStruct& T = out == ConvOut::y ? Y : X;
    for_each(T, [&](int n, int c, int hh, int ww) { store(dst + T.at(n, c, hh, ww), acc[packed(T, n, c, hh, ww)], a, b); });
  });
}

}  // namespace

// ---------------------------------------------------------------------------------------------------- cuDNN: setup

size_t cudnnGetVersion() { return 90000; }
const char* cudnnGetErrorString(cudnnStatus_t s) {
  switch (s) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    default: return "CUDNN_STATUS (emulated)";
  }
}
cudnnStatus_t cudnnCreate(cudnnHandle_t* h) { *h = new cudnnContext; return CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnDestroy(cudnnHandle_t h) { delete h; return CUDNN_STATUS_SUCCESS; }
cudnnStatus_t cudnnSetStream(cudnnHandle_t h, cudaStream_t s) { h->stream = s; return CUDNN_STATUS_SUCCESS; }

#define SB_EMU_DESCRIPTOR(Type, Struct, Create, Destroy)                    \
  cudnnStatus_t Create(Type* d) { *d = new Struct; return CUDNN_STATUS_SUCCESS; } \
  cudnnStatus_t Destroy(Type d) { delete d; return CUDNN_STATUS_SUCCESS; }
SB_EMU_DESCRIPTOR(cudnnTensorDescriptor_t, cudnnTensorStruct, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor)
SB_EMU_DESCRIPTOR(cudnnFilterDescriptor_t, cudnnFilterStruct, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor)
SB_EMU_DESCRIPTOR(cudnnConvolutionDescriptor_t, cudnnConvolutionStruct, cudnnCreateConvolutionDescriptor,
                  cudnnDestroyConvolutionDescriptor)
SB_EMU_DESCRIPTOR(cudnnActivationDescriptor_t, cudnnActivationStruct, cudnnCreateActivationDescriptor,
                  cudnnDestroyActivationDescriptor)
SB_EMU_DESCRIPTOR(cudnnOpTensorDescriptor_t, cudnnOpTensorStruct, cudnnCreateOpTensorDescriptor,
                  cudnnDestroyOpTensorDescriptor)
#undef SB_EMU_DESCRIPTOR

cudnnStatus_t cudnnSetTensor4dDescriptorEx(cudnnTensorDescriptor_t d, cudnnDataType_t type, int n, int c, int h, int w,
                                           int ns, int cs, int hs, int ws) {
  if (type != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;  // the emulation knows fp32 only
  if (n < 1 || c < 1 || h < 1 || w < 1 || ns < 1 || cs < 1 || hs < 1 || ws < 1) return CUDNN_STATUS_BAD_PARAM;
  if ((long long)n * c * h * w > std::numeric_limits<int>::max()) return CUDNN_STATUS_NOT_SUPPORTED;
  d->set = true, d->n = n, d->c = c, d->h = h, d->w = w, d->ns = ns, d->cs = cs, d->hs = hs, d->ws = ws;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t format, cudnnDataType_t type,
                                         int n, int c, int h, int w) {
  if (format == CUDNN_TENSOR_NCHW) return cudnnSetTensor4dDescriptorEx(d, type, n, c, h, w, c * h * w, h * w, w, 1);
  if (format == CUDNN_TENSOR_NHWC) return cudnnSetTensor4dDescriptorEx(d, type, n, c, h, w, h * w * c, 1, w * c, c);
  return CUDNN_STATUS_NOT_SUPPORTED;
}
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t type, cudnnTensorFormat_t format,
                                         int k, int c, int h, int w) {
  if (type != CUDNN_DATA_FLOAT || format != CUDNN_TENSOR_NCHW) return CUDNN_STATUS_NOT_SUPPORTED;
  if (k < 1 || c < 1 || h < 1 || w < 1) return CUDNN_STATUS_BAD_PARAM;
  d->set = true, d->k = k, d->c = c, d->h = h, d->w = w;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int pad_h, int pad_w, int u, int v,
                                              int dil_h, int dil_w, cudnnConvolutionMode_t mode,
                                              cudnnDataType_t type) {
  if (type != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
  if (pad_h < 0 || pad_w < 0 || u < 1 || v < 1 || dil_h < 1 || dil_w < 1) return CUDNN_STATUS_BAD_PARAM;
  if (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION) return CUDNN_STATUS_BAD_PARAM;
  d->set = true, d->pad_h = pad_h, d->pad_w = pad_w, d->u = u, d->v = v, d->dil_h = dil_h, d->dil_w = dil_w;
  d->mode = mode;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t math) {
  d->math = math;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t d, int groups) {
  if (groups < 1) return CUDNN_STATUS_BAD_PARAM;
  d->groups = groups;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(cudnnConvolutionDescriptor_t cv, cudnnTensorDescriptor_t x,
                                                    cudnnFilterDescriptor_t w, int* n, int* c, int* h, int* wo) {
  if (!cv->set || !x->set || !w->set || x->c != w->c * cv->groups) return CUDNN_STATUS_BAD_PARAM;
  *n = x->n, *c = w->k;
  *h = conv_out(x->h, cv->pad_h, w->h, cv->u, cv->dil_h);
  *wo = conv_out(x->w, cv->pad_w, w->w, cv->v, cv->dil_w);
  if (*h < 1 || *wo < 1) return CUDNN_STATUS_BAD_PARAM;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetActivationDescriptor(cudnnActivationDescriptor_t d, cudnnActivationMode_t mode,
                                           cudnnNanPropagation_t nan, double) {
  if (mode != CUDNN_ACTIVATION_RELU) return CUDNN_STATUS_NOT_SUPPORTED;  // the emulation knows ReLU only
  d->set = true, d->mode = mode, d->nan = nan;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetOpTensorDescriptor(cudnnOpTensorDescriptor_t d, cudnnOpTensorOp_t op, cudnnDataType_t type,
                                         cudnnNanPropagation_t nan) {
  if (type != CUDNN_DATA_FLOAT) return CUDNN_STATUS_NOT_SUPPORTED;
  if (op != CUDNN_OP_TENSOR_ADD && op != CUDNN_OP_TENSOR_MUL && op != CUDNN_OP_TENSOR_MIN && op != CUDNN_OP_TENSOR_MAX)
    return CUDNN_STATUS_NOT_SUPPORTED;
  d->set = true, d->op = op, d->nan = nan;
  return CUDNN_STATUS_SUCCESS;
}

// ------------------------------------------------------------------------------------- cuDNN: algorithms, workspace

cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t, cudnnTensorDescriptor_t x,
                                                     cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t cv,
                                                     cudnnTensorDescriptor_t y, int requested, int* returned,
                                                     cudnnConvolutionFwdAlgoPerf_t* perf) {
  if (const cudnnStatus_t s = check_conv(*x, *w, *cv, *y)) return s;
  return heuristics(kFwd, *cv, y->count(), requested, returned, perf);
}
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnnHandle_t, cudnnFilterDescriptor_t w,
                                                          cudnnTensorDescriptor_t dy, cudnnConvolutionDescriptor_t cv,
                                                          cudnnTensorDescriptor_t dx, int requested, int* returned,
                                                          cudnnConvolutionBwdDataAlgoPerf_t* perf) {
  if (const cudnnStatus_t s = check_conv(*dx, *w, *cv, *dy)) return s;
  return heuristics(kBwdData, *cv, dx->count(), requested, returned, perf);
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(cudnnHandle_t, cudnnTensorDescriptor_t x,
                                                            cudnnTensorDescriptor_t dy, cudnnConvolutionDescriptor_t cv,
                                                            cudnnFilterDescriptor_t dw, int requested, int* returned,
                                                            cudnnConvolutionBwdFilterAlgoPerf_t* perf) {
  if (const cudnnStatus_t s = check_conv(*x, *dw, *cv, *dy)) return s;
  return heuristics(kBwdFilter, *cv, dw->count(), requested, returned, perf);
}
cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t, cudnnTensorDescriptor_t x,
                                                      cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t cv,
                                                      cudnnTensorDescriptor_t y, cudnnConvolutionFwdAlgo_t algo,
                                                      size_t* bytes) {
  if (const cudnnStatus_t s = check_conv(*x, *w, *cv, *y)) return s;
  if (!offered(kFwd, algo)) return CUDNN_STATUS_NOT_SUPPORTED;
  *bytes = workspace_for(y->count());
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(cudnnHandle_t, cudnnFilterDescriptor_t w,
                                                           cudnnTensorDescriptor_t dy, cudnnConvolutionDescriptor_t cv,
                                                           cudnnTensorDescriptor_t dx,
                                                           cudnnConvolutionBwdDataAlgo_t algo, size_t* bytes) {
  if (const cudnnStatus_t s = check_conv(*dx, *w, *cv, *dy)) return s;
  if (!offered(kBwdData, algo)) return CUDNN_STATUS_NOT_SUPPORTED;
  *bytes = workspace_for(dx->count());
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(cudnnHandle_t, cudnnTensorDescriptor_t x,
                                                             cudnnTensorDescriptor_t dy,
                                                             cudnnConvolutionDescriptor_t cv, cudnnFilterDescriptor_t dw,
                                                             cudnnConvolutionBwdFilterAlgo_t algo, size_t* bytes) {
  if (const cudnnStatus_t s = check_conv(*x, *dw, *cv, *dy)) return s;
  if (!offered(kBwdFilter, algo)) return CUDNN_STATUS_NOT_SUPPORTED;
  *bytes = workspace_for(dw->count());
  return CUDNN_STATUS_SUCCESS;
}

// --------------------------------------------------------------------------------------------- cuDNN: convolutions

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const void* alpha, cudnnTensorDescriptor_t xd, const void* x,
                                      cudnnFilterDescriptor_t wd, const void* w, cudnnConvolutionDescriptor_t cvd,
                                      cudnnConvolutionFwdAlgo_t algo, void* ws, size_t ws_bytes, const void* beta,
                                      cudnnTensorDescriptor_t yd, void* y) {
  if (const cudnnStatus_t s = check_conv_call("cudnnConvolutionForward", kFwd, algo, *xd, x, *wd, w, *cvd, *yd, y,
                                              ConvOut::y, ws, ws_bytes))
    return s;
  enqueue_conv(h, ConvOut::y, !deterministic(kFwd, algo), alpha, beta, *xd, x, *wd, w, *cvd, *yd, y);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t h, const void* alpha, cudnnFilterDescriptor_t wd,
                                           const void* w, cudnnTensorDescriptor_t dyd, const void* dy,
                                           cudnnConvolutionDescriptor_t cvd, cudnnConvolutionBwdDataAlgo_t algo,
                                           void* ws, size_t ws_bytes, const void* beta, cudnnTensorDescriptor_t dxd,
                                           void* dx) {
  if (const cudnnStatus_t s = check_conv_call("cudnnConvolutionBackwardData", kBwdData, algo, *dxd, dx, *wd, w, *cvd,
                                              *dyd, dy, ConvOut::dx, ws, ws_bytes))
    return s;
  enqueue_conv(h, ConvOut::dx, !deterministic(kBwdData, algo), alpha, beta, *dxd, dx, *wd, w, *cvd, *dyd, dy);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t h, const void* alpha, cudnnTensorDescriptor_t xd,
                                             const void* x, cudnnTensorDescriptor_t dyd, const void* dy,
                                             cudnnConvolutionDescriptor_t cvd, cudnnConvolutionBwdFilterAlgo_t algo,
                                             void* ws, size_t ws_bytes, const void* beta, cudnnFilterDescriptor_t dwd,
                                             void* dw) {
  if (const cudnnStatus_t s = check_conv_call("cudnnConvolutionBackwardFilter", kBwdFilter, algo, *xd, x, *dwd, dw,
                                              *cvd, *dyd, dy, ConvOut::dw, ws, ws_bytes))
    return s;
  enqueue_conv(h, ConvOut::dw, !deterministic(kBwdFilter, algo), alpha, beta, *xd, x, *dwd, dw, *cvd, *dyd, dy);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionBackwardBias(cudnnHandle_t h, const void* alpha, cudnnTensorDescriptor_t dyd,
                                           const void* dy, const void* beta, cudnnTensorDescriptor_t dbd, void* db) {
  const char* call = "cudnnConvolutionBackwardBias";
  if (!dyd->set || !dbd->set) return CUDNN_STATUS_BAD_PARAM;
  if (dbd->n != 1 || dbd->c != dyd->c || dbd->h != 1 || dbd->w != 1) return CUDNN_STATUS_BAD_PARAM;
  require_device(dy, dyd->extent(), call, "dy");
  require_device(db, dbd->extent(), call, "db");
  if (overlap(output_footprint(db, *dbd, call), footprint(dy, *dyd))) die(call, "db overlaps dy");
  const cudnnTensorStruct DY = *dyd, DB = *dbd;
  const float a = scalar(alpha), b = scalar(beta);
  const float* dyp = static_cast<const float*>(dy);
  float* dbp = static_cast<float*>(db);
  emu_enqueue(h->stream, [=]() {
    std::vector<double> acc(size_t(DY.c), 0.0);
    for_each(DY, [&](int n, int c, int hh, int w) { acc[size_t(c)] += dyp[DY.at(n, c, hh, w)]; });
    for (int c = 0; c < DB.c; ++c) store(dbp + DB.at(0, c, 0, 0), acc[size_t(c)], a, b);
  });
  return CUDNN_STATUS_SUCCESS;
}

// ------------------------------------------------------------------------------------- cuDNN: elementwise tensors

cudnnStatus_t cudnnAddTensor(cudnnHandle_t h, const void* alpha, cudnnTensorDescriptor_t ad, const void* A,
                             const void* beta, cudnnTensorDescriptor_t cd, void* C) {
  const char* call = "cudnnAddTensor";
  if (!ad->set || !cd->set || !broadcasts_to(*ad, *cd)) return CUDNN_STATUS_BAD_PARAM;
  require_device(A, ad->extent(), call, "A");
  require_device(C, cd->extent(), call, "C");
  if (overlap(output_footprint(C, *cd, call), footprint(A, *ad))) die(call, "C overlaps A");
  const cudnnTensorStruct AD = *ad, CD = *cd;
  const float a = scalar(alpha), b = scalar(beta);
  const float* ap = static_cast<const float*>(A);
  float* cp = static_cast<float*>(C);
  emu_enqueue(h->stream, [=]() {
    for_each(CD, [&](int n, int c, int hh, int w) { store(cp + CD.at(n, c, hh, w), ap[broadcast_at(AD, n, c, hh, w)], a, b); });
  });
  return CUDNN_STATUS_SUCCESS;
}

// C = op(alpha1 A, alpha2 B) + beta C. A and B may be the same buffer (both are only read); C may be A only with
// A's descriptor (elementwise, each element read before it is written).
cudnnStatus_t cudnnOpTensor(cudnnHandle_t h, cudnnOpTensorDescriptor_t od, const void* alpha1,
                            cudnnTensorDescriptor_t ad, const void* A, const void* alpha2, cudnnTensorDescriptor_t bd,
                            const void* B, const void* beta, cudnnTensorDescriptor_t cd, void* C) {
  const char* call = "cudnnOpTensor";
  if (!od->set || !ad->set || !bd->set || !cd->set) return CUDNN_STATUS_BAD_PARAM;
  if (!ad->same_dims(*cd) || !broadcasts_to(*bd, *cd)) return CUDNN_STATUS_BAD_PARAM;
  require_device(A, ad->extent(), call, "A");
  require_device(B, bd->extent(), call, "B");
  require_device(C, cd->extent(), call, "C");
  // In place as documented: C may be A (same layout); C may be B only when it is A too.
  const Footprint fc = output_footprint(C, *cd, call);
  const bool c_is_a = C == A && cd->same_layout(*ad), c_is_b = C == B && cd->same_layout(*bd);
  if (!c_is_a && overlap(fc, footprint(A, *ad))) die(call, "C overlaps A");
  if (!(c_is_b && c_is_a) && overlap(fc, footprint(B, *bd))) die(call, "C overlaps B (allowed only when C is A too)");
  const cudnnTensorStruct AD = *ad, BD = *bd, CD = *cd;
  const cudnnOpTensorStruct OP = *od;
  const float a1 = scalar(alpha1), a2 = scalar(alpha2), b = scalar(beta);
  const float* ap = static_cast<const float*>(A);
  const float* bp = static_cast<const float*>(B);
  float* cp = static_cast<float*>(C);
  emu_enqueue(h->stream, [=]() {
    for_each(CD, [&](int n, int c, int hh, int w) {
      const float x = a1 * ap[AD.at(n, c, hh, w)], y = a2 * bp[broadcast_at(BD, n, c, hh, w)];
      float r = 0.0f;
      const bool nan = std::isnan(x) || std::isnan(y);
      switch (OP.op) {
        case CUDNN_OP_TENSOR_ADD: r = x + y; break;
        case CUDNN_OP_TENSOR_MUL: r = x * y; break;
        case CUDNN_OP_TENSOR_MIN: r = nan && OP.nan == CUDNN_PROPAGATE_NAN ? NAN : std::fmin(x, y); break;
        case CUDNN_OP_TENSOR_MAX: r = nan && OP.nan == CUDNN_PROPAGATE_NAN ? NAN : std::fmax(x, y); break;
        default: break;
      }
      store(cp + CD.at(n, c, hh, w), r, 1.0f, b);
    });
  });
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnTransformTensor(cudnnHandle_t h, const void* alpha, cudnnTensorDescriptor_t xd, const void* x,
                                   const void* beta, cudnnTensorDescriptor_t yd, void* y) {
  const char* call = "cudnnTransformTensor";
  if (!xd->set || !yd->set || !xd->same_dims(*yd)) return CUDNN_STATUS_BAD_PARAM;
  require_device(x, xd->extent(), call, "x");
  require_device(y, yd->extent(), call, "y");
  if (overlap(output_footprint(y, *yd, call), footprint(x, *xd))) die(call, "y overlaps x (no in-place transform)");
  const cudnnTensorStruct X = *xd, Y = *yd;
  const float a = scalar(alpha), b = scalar(beta);
  const float* xp = static_cast<const float*>(x);
  float* yp = static_cast<float*>(y);
  emu_enqueue(h->stream, [=]() {
    for_each(Y, [&](int n, int c, int hh, int w) { store(yp + Y.at(n, c, hh, w), xp[X.at(n, c, hh, w)], a, b); });
  });
  return CUDNN_STATUS_SUCCESS;
}

// In place (x == y) only with identical descriptors.
cudnnStatus_t cudnnActivationForward(cudnnHandle_t h, cudnnActivationDescriptor_t act, const void* alpha,
                                     cudnnTensorDescriptor_t xd, const void* x, const void* beta,
                                     cudnnTensorDescriptor_t yd, void* y) {
  const char* call = "cudnnActivationForward";
  if (!act->set || !xd->set || !yd->set || !xd->same_dims(*yd)) return CUDNN_STATUS_BAD_PARAM;
  require_device(x, xd->extent(), call, "x");
  require_device(y, yd->extent(), call, "y");
  if (x == y && !xd->same_layout(*yd)) return CUDNN_STATUS_BAD_PARAM;
  if (x != y && overlap(output_footprint(y, *yd, call), footprint(x, *xd))) die(call, "y partly overlaps x");
  const cudnnTensorStruct X = *xd, Y = *yd;
  const cudnnNanPropagation_t nan = act->nan;
  const float a = scalar(alpha), b = scalar(beta);
  const float* xp = static_cast<const float*>(x);
  float* yp = static_cast<float*>(y);
  emu_enqueue(h->stream, [=]() {
    for_each(Y, [&](int n, int c, int hh, int w) { store(yp + Y.at(n, c, hh, w), relu(xp[X.at(n, c, hh, w)], nan), a, b); });
  });
  return CUDNN_STATUS_SUCCESS;
}

// ReLU's derivative from x (the forward input): dx = dy where x > 0. dx may be dy with identical descriptors.
cudnnStatus_t cudnnActivationBackward(cudnnHandle_t h, cudnnActivationDescriptor_t act, const void* alpha,
                                      cudnnTensorDescriptor_t yd, const void* y, cudnnTensorDescriptor_t dyd,
                                      const void* dy, cudnnTensorDescriptor_t xd, const void* x, const void* beta,
                                      cudnnTensorDescriptor_t dxd, void* dx) {
  const char* call = "cudnnActivationBackward";
  if (!act->set || !yd->set || !dyd->set || !xd->set || !dxd->set) return CUDNN_STATUS_BAD_PARAM;
  if (!yd->same_dims(*dyd) || !xd->same_dims(*dxd) || !yd->same_dims(*xd)) return CUDNN_STATUS_BAD_PARAM;
  require_device(y, yd->extent(), call, "y");
  require_device(dy, dyd->extent(), call, "dy");
  require_device(x, xd->extent(), call, "x");
  require_device(dx, dxd->extent(), call, "dx");
  if (!xd->same_layout(*dxd) || !yd->same_layout(*dyd)) return CUDNN_STATUS_NOT_SUPPORTED;
  if (dx == dy && !dxd->same_layout(*dyd)) return CUDNN_STATUS_BAD_PARAM;
  const Footprint fdx = output_footprint(dx, *dxd, call);
  if (dx != dy && overlap(fdx, footprint(dy, *dyd))) die(call, "dx partly overlaps dy");
  if (overlap(fdx, footprint(x, *xd)) || overlap(fdx, footprint(y, *yd))) die(call, "dx overlaps x or y");
  const cudnnTensorStruct X = *xd, DY = *dyd, DX = *dxd;
  const float a = scalar(alpha), b = scalar(beta);
  const float* xp = static_cast<const float*>(x);
  const float* dyp = static_cast<const float*>(dy);
  float* dxp = static_cast<float*>(dx);
  emu_enqueue(h->stream, [=]() {
    for_each(DX, [&](int n, int c, int hh, int w) {
      const float g = xp[X.at(n, c, hh, w)] > 0.0f ? dyp[DY.at(n, c, hh, w)] : 0.0f;
      store(dxp + DX.at(n, c, hh, w), g, a, b);
    });
  });
  return CUDNN_STATUS_SUCCESS;
}

// ------------------------------------------------------------------------------------------------------- cuBLAS

cublasStatus_t cublasCreate(cublasHandle_t* h) { *h = new cublasContext; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasDestroy(cublasHandle_t h) { delete h; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) { h->stream = s; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
const char* cublasGetStatusName(cublasStatus_t s) {
  return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS"
         : s == CUBLAS_STATUS_INVALID_VALUE ? "CUBLAS_STATUS_INVALID_VALUE" : "CUBLAS_STATUS (emulated)";
}
const char* cublasGetStatusString(cublasStatus_t s) {
  return s == CUBLAS_STATUS_INVALID_VALUE ? "an unsupported value or parameter was passed to the function (emulated)"
                                          : "emulated cuBLAS status";
}

namespace {

// Element (i, j) of a column-major matrix with leading dimension ld, as op(M) sees it.
inline long long op_at(cublasOperation_t op, int i, int j, int ld) {
  return op == CUBLAS_OP_N ? i + (long long)j * ld : j + (long long)i * ld;
}

// Batch i of a strided operand must be device memory; outputs of different batches must not overlap (cuBLAS would
// race), nor an output its inputs.
void require_batches(const float* p, long long stride, long long extent, int batches, const char* call,
                     const char* what) {
  for (int i = 0; i < batches; ++i) require_device(p + i * stride, extent, call, what);
}

}  // namespace

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const float* alpha, const float* A, int lda, long long sa,
                                         const float* B, int ldb, long long sb, const float* beta, float* C, int ldc,
                                         long long sc, int batches) {
  const char* call = "cublasSgemmStridedBatched";
  if (ta == CUBLAS_OP_C || tb == CUBLAS_OP_C) ta = ta == CUBLAS_OP_C ? CUBLAS_OP_T : ta, tb = tb == CUBLAS_OP_C ? CUBLAS_OP_T : tb;
  if (m < 0 || n < 0 || k < 0 || batches < 0) return CUBLAS_STATUS_INVALID_VALUE;
  if (lda < std::max(1, ta == CUBLAS_OP_N ? m : k) || ldb < std::max(1, tb == CUBLAS_OP_N ? k : n) ||
      ldc < std::max(1, m))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (m == 0 || n == 0 || batches == 0) return CUBLAS_STATUS_SUCCESS;
  const long long ea = k == 0 ? 0 : ta == CUBLAS_OP_N ? (long long)(k - 1) * lda + m : (long long)(m - 1) * lda + k;
  const long long eb = k == 0 ? 0 : tb == CUBLAS_OP_N ? (long long)(n - 1) * ldb + k : (long long)(k - 1) * ldb + n;
  const long long ec = (long long)(n - 1) * ldc + m;
  require_batches(A, sa, ea, batches, call, "A");
  require_batches(B, sb, eb, batches, call, "B");
  require_batches(C, sc, ec, batches, call, "C");
  // Documented: the batches of C must not overlap (undefined behaviour). A zero stride on A or B (one matrix for
  // every batch) is allowed.
  const Footprint fc = matrices(C, m, n, ldc, sc, batches);
  if (self_overlap(fc)) die(call, "the output batches overlap");
  if (overlap(fc, matrices(A, ta == CUBLAS_OP_N ? m : k, ta == CUBLAS_OP_N ? k : m, lda, sa, batches)) ||
      overlap(fc, matrices(B, tb == CUBLAS_OP_N ? k : n, tb == CUBLAS_OP_N ? n : k, ldb, sb, batches)))
    die(call, "an output overlaps an input");
  const float a = *alpha, b = *beta;
  emu_enqueue(h->stream, [=]() {
    for (int bi = 0; bi < batches; ++bi) {
      const float* Ab = A + bi * sa;
      const float* Bb = B + bi * sb;
      float* Cb = C + bi * sc;
      for (int j = 0; j < n; ++j)
        for (int i = 0; i < m; ++i) {
          double acc = 0.0;
          for (int p = 0; p < k; ++p) acc += double(Ab[op_at(ta, i, p, lda)]) * Bb[op_at(tb, p, j, ldb)];
          store(Cb + i + (long long)j * ldc, acc, a, b);
        }
    }
  });
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemvStridedBatched(cublasHandle_t h, cublasOperation_t trans, int m, int n, const float* alpha,
                                         const float* A, int lda, long long sa, const float* x, int incx,
                                         long long sx, const float* beta, float* y, int incy, long long sy,
                                         int batches) {
  const char* call = "cublasSgemvStridedBatched";
  if (m < 0 || n < 0 || batches < 0 || lda < std::max(1, m) || incx == 0 || incy == 0)
    return CUBLAS_STATUS_INVALID_VALUE;
  if (incx < 0 || incy < 0) die(call, "negative increments are not emulated");
  if (m == 0 || n == 0 || batches == 0) return CUBLAS_STATUS_SUCCESS;
  const int len_x = trans == CUBLAS_OP_N ? n : m, len_y = trans == CUBLAS_OP_N ? m : n;
  const long long ea = (long long)(n - 1) * lda + m, ex = (long long)(len_x - 1) * incx + 1,
                  ey = (long long)(len_y - 1) * incy + 1;
  require_batches(A, sa, ea, batches, call, "A");
  require_batches(x, sx, ex, batches, call, "x");
  require_batches(y, sy, ey, batches, call, "y");
  const Footprint fy = matrices(y, 1, len_y, incy, sy, batches);
  if (self_overlap(fy)) die(call, "the output batches overlap");
  if (overlap(fy, matrices(A, m, n, lda, sa, batches)) || overlap(fy, matrices(x, 1, len_x, incx, sx, batches)))
    die(call, "an output overlaps an input");
  const float a = *alpha, b = *beta;
  emu_enqueue(h->stream, [=]() {
    for (int bi = 0; bi < batches; ++bi)
      for (int r = 0; r < len_y; ++r) {
        double acc = 0.0;
        for (int p = 0; p < len_x; ++p)
          acc += double(A[bi * sa + (trans == CUBLAS_OP_N ? op_at(CUBLAS_OP_N, r, p, lda) : op_at(CUBLAS_OP_N, p, r, lda))]) *
                 x[bi * sx + (long long)p * incx];
        store(y + bi * sy + (long long)r * incy, acc, a, b);
      }
  });
  return CUBLAS_STATUS_SUCCESS;
}
