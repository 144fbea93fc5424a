// The linear head out = W in + bias for S seeds in one launch per call. The CPU twins are linear_forward,
// linear_backward_weights and linear_backward_input in host/cpu/linear.h (feature-major there, sample-major here):
//   in (S, B, F)    out (S, B, M)    W (M, F) and bias (M) of seed s at w + s*param_stride, bias + s*param_stride
// For ConvBase, in is the conv3 activation (S, B, C, L3) read as (S, B, C*L3): PyTorch's flatten order.
// Custom batched GEMMs (kernels/batched_gemm.cuh) rather than cuBLAS: each output is a fixed-order sum, so the
// bits do not depend on S or on a library's choice of algorithm for the batch count. Forward and input gradient
// sum in the CPU twin's order (same bits on an FMA CPU).
#pragma once
#include <cstddef>

#include "kernels/gpu_stream.h"

namespace sb::gpu {

struct LinearDims {
  int S = 0, B = 0, F = 0, M = 0;  // seeds, samples, input features, outputs
};

// out[s][b][j] = bias[j] + sum_f W[j][f] in[s][b][f]; in_seed_stride = B*F for per-seed inputs, 0 for shared.
void linear_forward(const LinearDims& d, const float* in, size_t in_seed_stride, const float* w, const float* bias,
                    size_t param_stride, float* out, Stream stream);

// dW[j][f] = sum_b dout[s][b][j] in[s][b][f] and dbias[j] = sum_b dout[s][b][j] (overwritten).
void linear_backward_weights(const LinearDims& d, const float* dout, const float* in, float* dw, float* dbias,
                             size_t param_stride, Stream stream);

// din[s][b][f] = sum_j W[j][f] dout[s][b][j]; if mask (S, B, F) is not null, din = 0 where !(mask > 0) (the ReLU
// backward of the layer that produced in; mask is its output).
void linear_backward_input(const LinearDims& d, const float* dout, const float* w, size_t param_stride,
                           const float* mask, float* din, Stream stream);

}  // namespace sb::gpu
