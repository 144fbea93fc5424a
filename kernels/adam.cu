// Adam's elementwise update (see adam.h). The _rn intrinsics are never contracted into FMAs and round as the
// CPU's SSE/AVX instructions do (IEEE division and square root), so the result matches adam_update bit for bit.
#include "kernels/adam.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>

#include "kernels/cuda_check.h"

namespace sb::gpu {
namespace {

__global__ void adam_update_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                                   float* __restrict__ v, size_t n, float beta1, float beta2, float eps,
                                   const AdamStepScalars* __restrict__ scalars) {
  const float step_size = scalars->step_size, bc2_sqrt = scalars->bc2_sqrt;
  const float one_minus_beta1 = __fsub_rn(1.0f, beta1), one_minus_beta2 = __fsub_rn(1.0f, beta2);
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    const float gi = g[i];
    const float mi = __fadd_rn(__fmul_rn(beta1, m[i]), __fmul_rn(one_minus_beta1, gi));
    const float vi = __fadd_rn(__fmul_rn(beta2, v[i]), __fmul_rn(__fmul_rn(one_minus_beta2, gi), gi));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2_sqrt), eps);
    p[i] = __fsub_rn(p[i], __fdiv_rn(__fmul_rn(step_size, mi), denom));
    m[i] = mi;
    v[i] = vi;
  }
}

}  // namespace

void adam_update(float* p, const float* g, float* m, float* v, size_t n, float beta1, float beta2, float eps,
                 const AdamStepScalars* scalars, Stream stream) {
  if (n == 0) return;
  if (!p || !g || !m || !v || !scalars) throw std::invalid_argument("adam_update: null tensor");
  constexpr unsigned kThreads = 256;
  const unsigned blocks = unsigned(std::min<size_t>((n + kThreads - 1) / kThreads, 65536));
  adam_update_kernel<<<blocks, kThreads, 0, stream>>>(p, g, m, v, n, beta1, beta2, eps, scalars);
  SB_CUDA_CHECK_LAUNCH();
}

}  // namespace sb::gpu
