// The spurious feature's configuration and the draws both transforms share (core/spurious_config.h).
#include "core/spurious_config.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "core/philox.h"

namespace sb {

namespace {

// Sub-stream of unit u (a class or a sample) of one purpose: blocks [u << 32, (u + 1) << 32).
RngStream unit_stream(uint64_t base_seed, uint32_t seed_index, Purpose purpose, uint64_t unit) {
  return RngStream(base_seed, seed_index, purpose, unit << 32);
}

}  // namespace

NoiseDraw parse_noise_draw(const std::string& name) {
  if (name == "class") return NoiseDraw::per_class;
  if (name == "sample") return NoiseDraw::per_sample;
  if (name == "element") return NoiseDraw::per_element;
  throw std::invalid_argument("unknown noise draw '" + name + "' (expected class, sample or element)");
}

std::string to_string(NoiseDraw draw) {
  switch (draw) {
    case NoiseDraw::per_class: return "class";
    case NoiseDraw::per_sample: return "sample";
    case NoiseDraw::per_element: return "element";
  }
  return "unknown";
}

void validate(const SpuriousConfig& cfg, int length) {
  auto fail = [](const std::string& msg) { throw std::invalid_argument("spurious transform: " + msg); };
  if (!(cfg.p >= 0.0 && cfg.p <= 1.0)) fail("p = " + std::to_string(cfg.p) + " is outside [0, 1]");
  if (!std::isfinite(cfg.sd) || !(cfg.sd > 0.0f))
    fail("noise sd = " + std::to_string(cfg.sd) + " must be positive and finite");
  if (!std::isfinite(cfg.mean)) fail("noise mean must be finite");
  // Below mean = -3 sd, fewer than 0.13 % of draws are >= 0: rejection sampling would crawl or hang.
  if (cfg.mean < -3.0f * cfg.sd)
    fail("noise mean " + std::to_string(cfg.mean) + " is below -3 * sd (" + std::to_string(-3.0f * cfg.sd) +
         "): the truncated normal at 0 would take too long to sample by rejection");
  if (cfg.stride <= 0) fail("block stride = " + std::to_string(cfg.stride) + " must be positive");
  if (cfg.width <= 0) fail("block width = " + std::to_string(cfg.width) + " must be positive");
  if (cfg.classes < 2) fail("classes = " + std::to_string(cfg.classes) + " must be at least 2");
  const int64_t last_start = int64_t(cfg.classes - 1) * cfg.stride;
  if (last_start >= length)
    fail("the block of class " + std::to_string(cfg.classes - 1) + " starts at feature " +
         std::to_string(last_start) + ", past the sequence length " + std::to_string(length) +
         " (lower --block-stride or use longer sequences)");
}

int64_t round_half_even(double v) {
  const double f = std::floor(v);
  const double d = v - f;
  int64_t r = static_cast<int64_t>(f);
  if (d > 0.5 || (d == 0.5 && (r % 2 != 0))) ++r;
  return r;
}

int planted_count(double p, int n) { return static_cast<int>(round_half_even(p * static_cast<double>(n))); }

std::vector<float> class_noise_values(const SpuriousConfig& cfg, uint64_t base_seed, uint32_t seed_index) {
  std::vector<float> c(size_t(cfg.classes < 0 ? 0 : cfg.classes));
  for (int k = 0; k < cfg.classes; ++k) {
    RngStream rng = unit_stream(base_seed, seed_index, Purpose::spurious_class_noise, uint64_t(k));
    c[k] = rng.truncated_normal_nonneg(cfg.mean, cfg.sd);
  }
  return c;
}

}  // namespace sb
