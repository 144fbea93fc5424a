// ConvBase (core/model.h) on the CPU, for one seed at a time: the forward and backward passes chained from the
// layer twins (cpu/conv1d.h, cpu/linear.h); a training step adds cpu/softmax_ce.h and cpu/adam.h.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/model.h"

namespace sb {

// Activations of one forward pass, kept for the backward pass; sized for up to max_batch samples.
struct ConvBaseWorkspace {
  ConvBaseWorkspace(const ConvBaseShape& shape, int max_batch);
  int max_batch;
  std::vector<float> a1, a2, a3;        // post-ReLU activations of the three conv layers
  std::vector<float> d1, d2, d3;        // gradients w.r.t. them during backward
  std::vector<float> scratch;           // layout changes / im2col, implementation-defined
  // The CPU implementation keeps activations channel-major with the batch innermost, (C, L, ld), see
  // cpu/simd.h; ld is the batch padded to the SIMD width. The vectors carry slack for 64-byte alignment.
  ConvBaseShape shape;                  // the shape the buffers were sized for
  int batch = 0, ld = 0;                // B and padded B of the last convbase_forward
};

// x is (B, L) (samples of this seed); logits is (B, classes).
// features, if not null, receives the head input (B, C*L3) in PyTorch flatten order (c*L3 + l).
void convbase_forward(const ConvBaseShape& shape, const float* params, const float* x, int B, float* logits,
                      ConvBaseWorkspace& ws, float* features = nullptr);

// Backward of the last convbase_forward on ws (x must be that pass's input; the CPU reads its copy in ws).
// dlogits is (B, classes). grads (P) is overwritten.
// dx (B, L), if not null, receives the input gradient (for saliency).
void convbase_backward(const ConvBaseShape& shape, const float* params, const float* x, const float* dlogits,
                       int B, float* grads, ConvBaseWorkspace& ws, float* dx = nullptr);

}  // namespace sb
