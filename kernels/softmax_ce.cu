// Fused softmax cross-entropy (see softmax_ce.h): one block per seed, one thread per sample (looping when
// B > threads). The seed's loss is a double sum: each thread adds its samples in order, then a fixed tree over
// the threads, so it is bitwise reproducible and independent of S. Correct counts are integer shared-memory
// atomics (exact in any order).
#include "kernels/softmax_ce.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.h"

namespace sb::gpu {
namespace {

constexpr int kThreads = 128;  // a power of two (tree reduction)

__global__ void __launch_bounds__(kThreads) softmax_cross_entropy_kernel(const SoftmaxCrossEntropyArgs a) {
  extern __shared__ int32_t class_correct[];  // (K)
  __shared__ double partial[kThreads];
  const int s = int(blockIdx.x), t = int(threadIdx.x), K = a.K;
  for (int k = t; k < K; k += kThreads) class_correct[k] = 0;
  __syncthreads();

  double loss = 0.0;
  for (int i = t; i < a.B; i += kThreads) {
    const size_t row = size_t(s) * a.B + i;
    const float* z = a.logits + row * K;
    const int y = a.labels[s * a.label_seed_stride + i];
    const bool valid = y >= 0 && y < K;
    float zmax = z[0];
    int arg = 0;
    for (int j = 1; j < K; ++j)
      if (z[j] > zmax) zmax = z[j], arg = j;  // first maximum wins; as std::max, a NaN logit is skipped
    float sum = 0.0f;
    for (int j = 0; j < K; ++j) sum += expf(z[j] - zmax);
    const float ce = valid ? zmax + logf(sum) - z[y] : __int_as_float(0x7fc00000);  // log-sum-exp - true logit
    const float w = a.mu ? a.mu[s * a.mu_seed_stride + i] : 1.0f / float(a.B);
    if (a.dlogits) {
      // (p_j - onehot_j) * w with separate roundings (no FMA contraction), as the CPU twin.
      const float inv_sum = 1.0f / sum;
      float* dz = a.dlogits + row * K;
      for (int j = 0; j < K; ++j) {
        const float p = __fmul_rn(expf(z[j] - zmax), inv_sum);
        dz[j] = valid ? __fmul_rn(__fsub_rn(p, j == y ? 1.0f : 0.0f), w) : __int_as_float(0x7fc00000);
      }
    }
    if (a.loss_per_sample) a.loss_per_sample[row] = ce;
    loss += a.mu ? double(a.mu[s * a.mu_seed_stride + i]) * double(ce) : double(ce);
    if (a.correct && valid && arg == y) atomicAdd(&class_correct[y], 1);
    if (a.pred) a.pred[row] = int8_t(arg);
  }

  partial[t] = loss;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (t < half) partial[t] += partial[t + half];
    __syncthreads();
  }
  if (t == 0 && a.loss) a.loss[s] = float(a.mu ? partial[0] : partial[0] / a.B);
  if (a.correct)
    for (int k = t; k < K; k += kThreads) a.correct[size_t(s) * K + k] = class_correct[k];
}

__global__ void true_logit_gradient_kernel(size_t n, int B, int K, const int32_t* __restrict__ labels,
                                           size_t label_seed_stride, float* __restrict__ dlogits) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const size_t row = i / K;  // s*B + b
    const int j = int(i - row * K);
    const size_t s = row / B, b = row - s * B;
    dlogits[i] = labels[s * label_seed_stride + b] == j ? 1.0f : 0.0f;
  }
}

}  // namespace

void softmax_cross_entropy(const SoftmaxCrossEntropyArgs& a, Stream stream) {
  if (a.S < 1 || a.B < 1 || a.K < 1) throw std::invalid_argument("softmax_cross_entropy: S, B and K must be positive");
  if (!a.logits || !a.labels) throw std::invalid_argument("softmax_cross_entropy: null logits or labels");
  if (a.K > 4096) throw std::invalid_argument("softmax_cross_entropy: at most 4096 classes");
  if (a.pred && a.K > 128) throw std::invalid_argument("softmax_cross_entropy: predictions (int8) need at most 128 classes");
  softmax_cross_entropy_kernel<<<unsigned(a.S), kThreads, size_t(a.K) * sizeof(int32_t), stream>>>(a);
  SB_CUDA_CHECK_LAUNCH();
}

void true_logit_gradient(int S, int B, int K, const int32_t* labels, size_t label_seed_stride, float* dlogits,
                         Stream stream) {
  if (S < 1 || B < 1 || K < 1) throw std::invalid_argument("true_logit_gradient: S, B and K must be positive");
  if (!labels || !dlogits) throw std::invalid_argument("true_logit_gradient: null tensor");
  const size_t n = size_t(S) * B * K;
  const unsigned blocks = unsigned(std::min<size_t>((n + 255) / 256, 65536));
  true_logit_gradient_kernel<<<blocks, 256, 0, stream>>>(n, B, K, labels, label_seed_stride, dlogits);
  SB_CUDA_CHECK_LAUNCH();
}

}  // namespace sb::gpu
