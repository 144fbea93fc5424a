// Adam (PyTorch semantics, no weight decay) over the flat (S, P) parameter buffer in one launch. The CPU twin is
// adam_step and adam_update in host/cpu/adam.h: the same scalars and the same correctly
// rounded operations in the same order (no FMA), so the GPU gives the CPU's bits for the same inputs.
#pragma once
#include <cmath>
#include <cstddef>

#include "kernels/gpu_stream.h"

namespace sb::gpu {

// The per-step scalars, read by the kernel from device memory so that a captured CUDA graph picks up each
// step's values (the host copies them in before launching the graph).
struct AdamStepScalars {
  float step_size;  // lr / (1 - beta1^t)
  float bc2_sqrt;   // sqrt(1 - beta2^t)
};

// As torch.optim.Adam and adam_step: the bias corrections in double, then rounded to float. t counts from 1.
inline AdamStepScalars adam_step_scalars(float lr, float beta1, float beta2, int t) {
  const double bc1 = 1.0 - std::pow(double(beta1), t), bc2 = 1.0 - std::pow(double(beta2), t);
  return {float(double(lr) / bc1), float(std::sqrt(bc2))};
}

// m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g g;  p -= step_size m / (sqrt(v) / bc2_sqrt + eps),
// elementwise over n floats; scalars points to device memory.
void adam_update(float* p, const float* g, float* m, float* v, size_t n, float beta1, float beta2, float eps,
                 const AdamStepScalars* scalars, Stream stream);

}  // namespace sb::gpu
