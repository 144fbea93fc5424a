// Softmax cross-entropy with optional per-sample weights mu on the CPU: the reference twin of kernels/softmax_ce.cu.
#pragma once
#include <cstdint>

namespace sb {

// Softmax cross-entropy over K classes for B samples. logits (B,K), labels (B).
// Without weights: loss = mean_i CE_i and dlogits = (softmax - onehot) / B.
// With per-sample weights mu (B): loss = sum_i mu_i CE_i and dlogits = mu_i (softmax - onehot).
// loss_per_sample (B), if not null, receives CE_i (unweighted). Returns the loss.
float softmax_cross_entropy(const float* logits, const int32_t* labels, const float* mu, int B, int K,
                            float* dlogits, float* loss_per_sample = nullptr);

}  // namespace sb
