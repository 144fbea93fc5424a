// Adam on the CPU (cpu/adam.h), twin of kernels/adam.cu.
#include "cpu/adam.h"

#include <cmath>
#include <stdexcept>

#include "cpu/simd_kernels.h"

namespace sb {

void adam_update(float* p, const float* g, float* m, float* v, size_t n, float beta1, float beta2, float step_size,
                 float bc2_sqrt, float eps) {
  const simd::AdamScalars s{beta1, 1.0f - beta1, beta2, 1.0f - beta2, step_size, bc2_sqrt, eps};
  simd::kernels().adam_update(p, g, m, v, n, s);
}

void adam_step(float* params, const float* grads, float* m, float* v, size_t n, float lr, float beta1, float beta2,
               float eps, int t) {
  if (t < 1) throw std::invalid_argument("adam_step: the step count t starts at 1");
  const FlushDenormals flush;
  // As torch.optim.Adam: the bias corrections are computed in double, then used as float scalars.
  const double bc1 = 1.0 - std::pow(double(beta1), t), bc2 = 1.0 - std::pow(double(beta2), t);
  const float step_size = float(double(lr) / bc1), bc2_sqrt = float(std::sqrt(bc2));
  adam_update(params, grads, m, v, n, beta1, beta2, step_size, bc2_sqrt, eps);
}

}  // namespace sb
