// Fused softmax cross-entropy for S seeds in one launch: logits -> per-sample loss, the seed's loss, dlogits,
// per-class correct counts and predictions, optionally with per-sample weights mu. The CPU twin is softmax_cross_entropy in
// host/cpu/softmax_ce.h (per seed); the correct counts follow host/core/metrics.cpp (first maximum wins, as torch.argmax).
// Also the evaluation kernel: with dlogits null it only scores logits.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/gpu_stream.h"

namespace sb::gpu {

struct SoftmaxCrossEntropyArgs {
  int S = 0, B = 0, K = 0;          // seeds, samples per seed, classes
  const float* logits = nullptr;    // (S, B, K)
  const int32_t* labels = nullptr;  // seed s's B labels at labels + s*label_seed_stride (B: per seed, 0: shared)
  size_t label_seed_stride = 0;
  const float* mu = nullptr;        // optional weights, seed s's at mu + s*mu_seed_stride
  size_t mu_seed_stride = 0;
  // Outputs, each optional (null: not computed):
  float* dlogits = nullptr;          // (S, B, K): (softmax - onehot) / B, or mu_i (softmax - onehot)
  float* loss = nullptr;             // (S): mean_i CE_i, or sum_i mu_i CE_i (summed in double, fixed order)
  float* loss_per_sample = nullptr;  // (S, B): CE_i, unweighted
  int32_t* correct = nullptr;        // (S, K): samples of class k whose first maximum logit is k
  int8_t* pred = nullptr;            // (S, B): each sample's first maximum logit (predicted_class in core/metrics.h)
};
// A label outside [0, K) gives CE = NaN, NaN gradients for that sample, and no correct count. pred needs K <= 128.

void softmax_cross_entropy(const SoftmaxCrossEntropyArgs& args, Stream stream);

// dlogits (S, B, K) = onehot(label): the gradient of each sample's true logit, for saliency. Labels as above.
void true_logit_gradient(int S, int B, int K, const int32_t* labels, size_t label_seed_stride, float* dlogits,
                         Stream stream);

}  // namespace sb::gpu
