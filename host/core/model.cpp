// ConvBase's shape check and initialisation (core/model.h).
#include "core/model.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "core/philox.h"

namespace sb {

void check_convbase_shape(const ConvBaseShape& s) {
  if (s.channels < 1 || s.classes < 1 || s.length < ConvBaseShape::k1 || s.l3() < 1)
    throw std::invalid_argument("ConvBase: channels and classes must be positive and the input long enough for "
                                "three stride-2 convolutions (length " + std::to_string(s.length) + ")");
}

void convbase_init(const ConvBaseShape& shape, uint64_t base_seed, uint32_t seed_index, float* params) {
  check_convbase_shape(shape);
  const int C = shape.channels;
  RngStream rng(base_seed, seed_index, Purpose::init_weights);
  // Draws in parameter-buffer order: conv1.weight, conv1.bias, conv2.*, conv3.*, head.*.
  auto fill = [&](size_t offset, size_t count, int fan_in) {
    const float bound = 1.0f / std::sqrt(float(fan_in));
    for (size_t i = 0; i < count; ++i) params[offset + i] = rng.uniform(-bound, bound);
  };
  fill(shape.off_w1(), size_t(C) * ConvBaseShape::k1, ConvBaseShape::k1);
  fill(shape.off_b1(), C, ConvBaseShape::k1);
  fill(shape.off_w2(), size_t(C) * C * ConvBaseShape::k2, C * ConvBaseShape::k2);
  fill(shape.off_b2(), C, C * ConvBaseShape::k2);
  fill(shape.off_w3(), size_t(C) * C * ConvBaseShape::k3, C * ConvBaseShape::k3);
  fill(shape.off_b3(), C, C * ConvBaseShape::k3);
  fill(shape.off_wh(), size_t(shape.classes) * shape.feature_dim(), shape.feature_dim());
  fill(shape.off_bh(), shape.classes, shape.feature_dim());
}

}  // namespace sb
