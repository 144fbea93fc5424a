// The linear head on the CPU: the reference twin of kernels/linear.cu.
#pragma once
#include <cstddef>
#include <cstdint>

#include "cpu/simd.h"

namespace sb {

// ---- Linear head, out = W in + bias, on feature-major matrices: in is (F, B) (row f holds feature f of
// every sample, ld floats), out is (M, B); w is (M, F), bias (M). The flattened conv3 output (C, L3, B)
// with no pad rows is exactly the head input (F = C*L3, row c*L3 + l: PyTorch's flatten order).
void linear_forward(const float* w, const float* bias, int M, int F, const float* in, int ld, float* out);
// dw (M, F) = dout in^T, dbias (M) = dout summed over the batch; dout is (M, B). Overwritten.
void linear_backward_weights(const float* dout, const float* in, int M, int F, int ld, float* dw, float* dbias);
// din (F, B) = w^T dout.
void linear_backward_input(const float* w, const float* dout, int M, int F, int ld, float* din);

}  // namespace sb
