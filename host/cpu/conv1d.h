// Conv1d and ReLU on the CPU: the reference twin of kernels/conv1d.cu (activations batch-innermost here,
// see cpu/simd.h; sample-major there).
#pragma once
#include <cstddef>
#include <cstdint>

#include "cpu/simd.h"

namespace sb {

// ---- Conv1d with stride 2 and padding 1 (ConvBaseShape::stride, ::pad), any Cin, Cout, K and length.
// in is (Cin, Lin, B) with pad >= 1 and zero pad rows; out is (Cout, Lout, B), Lout = (Lin + 2 - K)/2 + 1.
// w is (Cout, Cin, K), bias (Cout), in PyTorch's order.

// out = bias + conv(in): the pre-activation; out's interior rows are written, its pad rows left alone.
void conv1d_forward(const float* w, const float* bias, int K, const ActView& in, const ActView& out);

// dw (Cout, Cin, K) and dbias (Cout) of dout (Cout, Lout, B), the gradient of the pre-activation:
//   dw[co][ci][k] = sum_{l,b} dout[co][l][b] * in[ci][2l+k-1][b],  dbias[co] = sum_{l,b} dout[co][l][b].
// Overwritten, not accumulated.
void conv1d_backward_weights(const ActView& dout, const ActView& in, int K, float* dw, float* dbias);

// din (Cin, Lin, B) = the transposed convolution of dout (Cout, Lout, B):
//   din[ci][p][b] = sum_{co} sum_{k, l: 2l+k-1 = p} w[co][ci][k] * dout[co][l][b].
// Each din row is gathered from the dout rows that read it (no scatter, no zeroing). Interior rows written.
void conv1d_backward_input(const float* w, int K, const ActView& dout, const ActView& din);

// ---- ReLU, in place on the activations of a forward pass. a is (C, L, B); pad rows stay zero.
void relu_forward(const ActView& a);
// d *= (a > 0) elementwise: a is the ReLU output (C, L, B), d its gradient (C, L, B); paddings may differ.
void relu_backward(const ActView& a, const ActView& d);

}  // namespace sb
