// The spurious transform on the CPU (study.md §1.2), twin of kernels/spurious.cu. The draw order is documented
// in core/spurious_config.h; keep the two in step, since the CUDA kernels reproduce it draw for draw.
#include "cpu/spurious.h"

#include <cmath>
#include <stdexcept>
#include <utility>

#include "core/philox.h"

namespace sb {

namespace {

// Sub-stream of unit u (a class or a sample) of one purpose: blocks [u << 32, (u + 1) << 32).
RngStream unit_stream(uint64_t base_seed, uint32_t seed_index, Purpose purpose, uint64_t unit) {
  return RngStream(base_seed, seed_index, purpose, unit << 32);
}

void check_inputs(const SpuriousConfig& cfg, const float* x, const int32_t* y, int N, int L) {
  validate(cfg, L);
  if (N < 0) throw std::invalid_argument("spurious transform: negative sample count " + std::to_string(N));
  if (N > 0 && (x == nullptr || y == nullptr)) throw std::invalid_argument("spurious transform: null input");
  for (int i = 0; i < N; ++i)
    if (y[i] < 0 || y[i] >= cfg.classes)
      throw std::invalid_argument("spurious transform: label " + std::to_string(y[i]) + " of sample " +
                                  std::to_string(i) + " is outside [0, " + std::to_string(cfg.classes) + ")");
}

SpuriousSet copy_input(const float* x, int N, int L) {
  SpuriousSet s;
  s.x.assign(x, x + size_t(N) * size_t(L));
  s.planted_class.assign(size_t(N), -1);
  return s;
}

// Adds noise on block k of row `row` (length L). per_class: the value c; otherwise drawn from `rng`
// (one value for the block, or one per feature in ascending order).
void add_block_noise(const SpuriousConfig& cfg, float* row, int k, int L, float c, RngStream* rng) {
  const int lo = block_begin(cfg, k), hi = block_end(cfg, k, L);
  switch (cfg.draw) {
    case NoiseDraw::per_class:
      for (int j = lo; j < hi; ++j) row[j] += c;
      break;
    case NoiseDraw::per_sample: {
      const float v = rng->truncated_normal_nonneg(cfg.mean, cfg.sd);
      for (int j = lo; j < hi; ++j) row[j] += v;
      break;
    }
    case NoiseDraw::per_element:
      for (int j = lo; j < hi; ++j) row[j] += rng->truncated_normal_nonneg(cfg.mean, cfg.sd);
      break;
  }
}

}  // namespace


// Plants class k's block into sample i of s: the seed's c_k (per_class), or fresh draws from the sample's own
// region of `purpose`'s stream.
static void plant(const SpuriousConfig& cfg, SpuriousSet& s, int i, int k, int L, const std::vector<float>& c,
           uint64_t base_seed, uint32_t seed_index, Purpose purpose) {
  s.planted_class[size_t(i)] = k;
  if (cfg.draw == NoiseDraw::per_class) {
    add_block_noise(cfg, &s.x[size_t(i) * L], k, L, c[size_t(k)], nullptr);
  } else {
    RngStream noise = unit_stream(base_seed, seed_index, purpose, uint64_t(i));
    add_block_noise(cfg, &s.x[size_t(i) * L], k, L, 0.0f, &noise);
  }
}

SpuriousSet plant_spurious_feature(const SpuriousConfig& cfg, const float* x, const int32_t* y, int N, int L,
                                   uint64_t base_seed, uint32_t seed_index) {
  check_inputs(cfg, x, y, N, L);
  SpuriousSet s = copy_input(x, N, L);
  if (cfg.p == 0.0) return s;  // D_base exactly (also with no draws at all)

  const std::vector<float> c = class_noise_values(cfg, base_seed, seed_index);
  // Indices of each class in ascending order: the Fisher-Yates starting point a kernel rebuilds too.
  std::vector<std::vector<int>> members(size_t(cfg.classes));
  for (int i = 0; i < N; ++i) members[size_t(y[i])].push_back(i);

  for (int k = 0; k < cfg.classes; ++k) {
    std::vector<int>& idx = members[size_t(k)];
    const int n = static_cast<int>(idx.size());
    const int m = planted_count(cfg.p, n);
    RngStream choice = unit_stream(base_seed, seed_index, Purpose::spurious_choice, uint64_t(k));
    for (int j = 0; j < m; ++j) std::swap(idx[size_t(j)], idx[size_t(j) + choice.below(uint32_t(n - j))]);
    for (int j = 0; j < m; ++j) {
      const int i = idx[size_t(j)];
      plant(cfg, s, i, k, L, c, base_seed, seed_index, Purpose::spurious_sample_noise);
    }
  }
  return s;
}

SpuriousSet make_test_aligned(const SpuriousConfig& cfg, const float* x, const int32_t* y, int N, int L,
                              uint64_t base_seed, uint32_t seed_index) {
  check_inputs(cfg, x, y, N, L);
  SpuriousSet s = copy_input(x, N, L);
  // p = 1 plants every sample, so no choice draws are needed; per_class reuses the seed's training c_k.
  const std::vector<float> c = class_noise_values(cfg, base_seed, seed_index);
  for (int i = 0; i < N; ++i) {
    const int k = y[i];
    plant(cfg, s, i, k, L, c, base_seed, seed_index, Purpose::test_aligned);
  }
  return s;
}

SpuriousSet make_test_conflicting(const SpuriousConfig& cfg, const float* x, const int32_t* y, int N, int L,
                                  uint64_t base_seed, uint32_t seed_index) {
  check_inputs(cfg, x, y, N, L);
  SpuriousSet s = copy_input(x, N, L);
  const std::vector<float> c = class_noise_values(cfg, base_seed, seed_index);
  for (int i = 0; i < N; ++i) {
    RngStream rng = unit_stream(base_seed, seed_index, Purpose::test_conflicting, uint64_t(i));
    // Uniform over the classes-1 others: draw among classes-1 slots and skip over the own class.
    const int r = static_cast<int>(rng.below(uint32_t(cfg.classes - 1)));
    const int k = r < y[i] ? r : r + 1;
    s.planted_class[size_t(i)] = k;
    add_block_noise(cfg, &s.x[size_t(i) * L], k, L, c[size_t(k)], &rng);
  }
  return s;
}

SpuriousSet make_spurious_set(SpuriousSetKind kind, const SpuriousConfig& cfg, const float* x, const int32_t* y, int N,
                              int L, uint64_t base_seed, uint32_t seed_index) {
  switch (kind) {
    case SpuriousSetKind::train: return plant_spurious_feature(cfg, x, y, N, L, base_seed, seed_index);
    case SpuriousSetKind::aligned: return make_test_aligned(cfg, x, y, N, L, base_seed, seed_index);
    case SpuriousSetKind::conflicting: return make_test_conflicting(cfg, x, y, N, L, base_seed, seed_index);
  }
  throw std::invalid_argument("make_spurious_set: unknown set kind");
}

bool near_rejection_boundary(SpuriousSetKind set, const SpuriousConfig& c, uint64_t base, uint32_t seed, int i,
                                    int k, int L) {
  Purpose purpose = Purpose::spurious_class_noise;
  uint64_t unit = uint64_t(k);
  int skip = 0, values = 1;
  if (c.draw != NoiseDraw::per_class) {
    purpose = set == SpuriousSetKind::train     ? Purpose::spurious_sample_noise
              : set == SpuriousSetKind::aligned ? Purpose::test_aligned
                                                : Purpose::test_conflicting;
    unit = uint64_t(i);
    skip = set == SpuriousSetKind::conflicting ? 1 : 0;  // the other class's draw comes first
    values = c.draw == NoiseDraw::per_sample ? 1 : block_end(c, k, L) - block_begin(c, k);
  }
  RngStream r(base, seed, purpose, unit << 32);
  for (int j = 0; j < skip; ++j) r.next_u32();
  for (int v = 0; v < values; ++v)
    for (;;) {
      const float z = c.mean + c.sd * r.normal();
      if (std::fabs(z) < 1e-4f) return true;
      if (z >= 0.0f) break;
    }
  return false;
}

}  // namespace sb
