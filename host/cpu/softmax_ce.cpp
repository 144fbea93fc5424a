// The CPU twin of kernels/softmax_ce.cu (cpu/softmax_ce.h).
#include "cpu/softmax_ce.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>

#include "cpu/simd.h"

namespace sb {

float softmax_cross_entropy(const float* logits, const int32_t* labels, const float* mu, int B, int K,
                            float* dlogits, float* loss_per_sample) {
  if (B < 1 || K < 1) throw std::invalid_argument("softmax_cross_entropy: B and K must be positive");
  const FlushDenormals flush;
  double loss = 0.0;
  for (int i = 0; i < B; ++i) {
    const int y = labels[i];
    if (y < 0 || y >= K)
      throw std::invalid_argument("softmax_cross_entropy: label " + std::to_string(y) + " outside [0, " +
                                  std::to_string(K) + ")");
    const float* z = logits + size_t(i) * K;
    float* dz = dlogits + size_t(i) * K;
    float zmax = z[0];
    for (int j = 1; j < K; ++j) zmax = std::max(zmax, z[j]);
    float sum = 0.0f;
    for (int j = 0; j < K; ++j) {
      dz[j] = std::exp(z[j] - zmax);
      sum += dz[j];
    }
    const float ce = zmax + std::log(sum) - z[y];  // log-sum-exp minus the true logit
    const float scale = mu ? mu[i] : 1.0f / float(B);
    const float inv_sum = 1.0f / sum;
    for (int j = 0; j < K; ++j) dz[j] = (dz[j] * inv_sum - (j == y ? 1.0f : 0.0f)) * scale;
    if (loss_per_sample) loss_per_sample[i] = ce;
    loss += mu ? double(mu[i]) * ce : double(ce);
  }
  return float(mu ? loss : loss / B);
}

}  // namespace sb
