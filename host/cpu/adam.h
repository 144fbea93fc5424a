// Adam on the CPU: the reference twin of kernels/adam.cu (the same scalars, the same correctly rounded
// operations, so the bits agree).
#pragma once
#include <cstddef>
#include <cstdint>

#include "cpu/simd.h"

namespace sb {

// ---- Adam's elementwise update over n parameters, with the bias corrections already folded into
// step_size = lr / (1 - beta1^t) and bc2_sqrt = sqrt(1 - beta2^t):
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g g;  p -= step_size m / (sqrt(v) / bc2_sqrt + eps).
// Only correctly rounded operations (no FMA), so every SIMD level gives the same bits.
void adam_update(float* p, const float* g, float* m, float* v, size_t n, float beta1, float beta2, float step_size,
                 float bc2_sqrt, float eps);

// One Adam step (PyTorch semantics, no weight decay) over n parameters; t is the 1-based step count.
void adam_step(float* params, const float* grads, float* m, float* v, size_t n, float lr, float beta1, float beta2,
               float eps, int t);

}  // namespace sb
