// Batch gather (see gather.h): one thread per element of xb; the thread of a row's first element also writes
// its label.
#include "kernels/gather.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>

#include "kernels/cuda_check.h"

namespace sb::gpu {
namespace {

__global__ void gather_batch_kernel(size_t n, int B, int N, int L, const float* __restrict__ x, size_t x_seed_stride,
                                    const int32_t* __restrict__ labels, const int32_t* __restrict__ index,
                                    float* __restrict__ xb, int32_t* __restrict__ yb) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const size_t sample = i / L;  // s*B + b
    const int p = int(i - sample * L);
    const size_t s = sample / B;
    const int32_t row = index[sample];
    const bool valid = row >= 0 && row < N;
    xb[i] = valid ? x[s * x_seed_stride + size_t(row) * L + p] : __int_as_float(0x7fc00000);
    if (p == 0) yb[sample] = valid ? labels[row] : -1;
  }
}

}  // namespace

void gather_batch(int S, int B, int N, int L, const float* x, size_t x_seed_stride, const int32_t* labels,
                  const int32_t* index, float* xb, int32_t* yb, Stream stream) {
  if (S < 1 || B < 1 || N < 1 || L < 1) throw std::invalid_argument("gather_batch: S, B, N and L must be positive");
  if (!x || !labels || !index || !xb || !yb) throw std::invalid_argument("gather_batch: null tensor");
  const size_t n = size_t(S) * B * L;
  constexpr unsigned kThreads = 256;
  const unsigned blocks = unsigned(std::min<size_t>((n + kThreads - 1) / kThreads, 65536));
  gather_batch_kernel<<<blocks, kThreads, 0, stream>>>(n, B, N, L, x, x_seed_stride, labels, index, xb, yb);
  SB_CUDA_CHECK_LAUNCH();
}

}  // namespace sb::gpu
