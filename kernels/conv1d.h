// Conv1d with stride 2 and padding 1 (ConvBaseShape::stride, ::pad) for S seeds in one launch per call. The CPU
// twins are conv1d_forward, conv1d_backward_input, conv1d_backward_weights and relu_forward / relu_backward in
// host/cpu/conv1d.h (which store activations batch-innermost; here each seed is sample-major, PyTorch's NCL):
//   in   (S, B, Cin, Lin)       out (S, B, Cout, Lout),  Lout = (Lin + 2 - K) / 2 + 1
//   w    (Cout, Cin, K) and bias (Cout) of seed s at w + s*param_stride and bias + s*param_stride: views into
//        the (S, P) parameter (or gradient) buffer, PyTorch's state_dict order.
// Any Cin, Cout, K, Lin with Lout >= 1, any S and B. Every output element is written (never accumulated), each by
// a fixed-order sum (kernels/batched_gemm.cuh): results are bitwise reproducible and a seed's numbers do not
// depend on S or on the other seeds. The forward pass and the input gradient sum in the CPU twin's order, so they
// have its bits on an FMA CPU (AVX2, AVX-512); weight gradients agree to float rounding.
#pragma once
#include <cstddef>
#include <string>

#include "kernels/gpu_stream.h"

namespace sb::gpu {

struct ConvDims {
  int S = 0, B = 0, cin = 0, cout = 0, K = 0, lin = 0;
  int lout() const { return (lin + 2 - K) / 2 + 1; }  // valid for lin + 2 >= K (the launchers check)
};

// out = bias + conv(in), then ReLU (0 > x ? 0 : x, NaN stays NaN) when relu. in_seed_stride is the distance
// between seeds' inputs in floats: B*Cin*Lin for per-seed inputs, 0 for one input (B, Cin, Lin) shared by all.
void conv1d_forward(const ConvDims& d, const float* in, size_t in_seed_stride, const float* w, const float* bias,
                    size_t param_stride, bool relu, float* out, Stream stream);

// din (S, B, Cin, Lin) = the transposed convolution of dout (S, B, Cout, Lout):
//   din[ci][p] = sum_{co} sum_{k, l: 2l+k-1 = p} w[co][ci][k] * dout[co][l].
// If mask (S, B, Cin, Lin) is not null, din = 0 where !(mask > 0): the ReLU backward of the layer whose output
// is this conv's input (mask is that output). If absolute, din = |din| (saliency).
void conv1d_backward_input(const ConvDims& d, const float* dout, const float* w, size_t param_stride,
                           const float* mask, bool absolute, float* din, Stream stream);

// dw (Cout, Cin, K) and dbias (Cout) of every seed, from dout (S, B, Cout, Lout), the gradient of the
// pre-activation, and the layer input in (seed stride in_seed_stride as in conv1d_forward):
//   dw[co][ci][k] = sum_{b, l} dout[b][co][l] * in[b][ci][2l+k-1],   dbias[co] = sum_{b, l} dout[b][co][l].
// A GEMM with few outputs (Cout x Cin*K+1) and a long sum (B*Lout): with a workspace of
// conv1d_backward_weights_workspace(d) floats the sum is split into chunks summed by separate blocks, then added
// in a fixed order (kernels/batched_gemm.cuh, split_plan). The chunks depend only on Cout, Cin, K, B and Lout (and
// on SB_SPLIT_CHUNK_R / SB_SPLIT_MIN_TILES when set, see split_rule_note), so a seed's bits still do not depend on S; they do depend on whether the split ran: give the workspace always
// (the cuda backend does) or never. workspace == nullptr sums each output in one chain, as when nothing is split.
void conv1d_backward_weights(const ConvDims& d, const float* dout, const float* in, size_t in_seed_stride, float* dw,
                             float* dbias, size_t param_stride, Stream stream, float* workspace);
// The same without a workspace: one chain per output (the split path's splits = 1).
void conv1d_backward_weights(const ConvDims& d, const float* dout, const float* in, size_t in_seed_stride, float* dw,
                             float* dbias, size_t param_stride, Stream stream);

// "" under the built-in split rule; else what the environment set it to ("split rule 64/16 from SB_SPLIT_CHUNK_R /
// SB_SPLIT_MIN_TILES"), for the run's device description. Throws std::invalid_argument for a bad value, so a
// backend can check the environment before it trains.
std::string split_rule_note();

// Floats of workspace conv1d_backward_weights needs for d's S seeds (S * splits * Cout * (Cin*K + 1)); 0 when
// its shape is not split. Seed s's part is the s-th of S equal slices, so a group of seeds [s0, s0 + S_g) may use
// workspace + s0 * conv1d_backward_weights_workspace(d with S = 1).
size_t conv1d_backward_weights_workspace(const ConvDims& d);

}  // namespace sb::gpu
