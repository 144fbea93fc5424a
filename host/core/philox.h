// Philox4x32-10 counter-based generator (Salmon et al., SC'11), usable from host and device code.
//
// Every random choice of the study comes from its own stream keyed by
// (base seed, seed index, purpose): the key is the 64-bit base seed, the counter is
// {block lo, block hi, seed index, purpose}. A stream is a pure function of those three values
// and a position, so seed i draws the same numbers whether 2 or 10 000 seeds run, on any backend.
#pragma once
#include <cstdint>
#include <math.h>

#if defined(__CUDACC__)
#define SB_HD __host__ __device__ __forceinline__
#else
#define SB_HD inline
#endif

namespace sb {

// What a stream is used for; a new purpose never changes the draws of an existing one.
enum class Purpose : uint32_t {
  init_weights = 1,
  batch_order = 2,
  spurious_class_noise = 3,    // c_k per class (noise-draw class)
  spurious_choice = 4,         // which round(p*n_k) samples of class k get noise
  spurious_sample_noise = 5,   // per-sample / per-element noise values of D_sp
  test_aligned = 6,            // noise draws of the aligned test set
  test_conflicting = 7,        // wrong class and noise draws of the conflicting test set
  dfr_subsample = 8,
  afr_split = 9,
  // The regression toy (study.md 1.3, host/study/toy.h).
  toy_data = 16,       // x1, x2, e and the x3 noise of the train, IID and OOD sets
  toy_dr_factor = 17,  // per-sample spurious factor of the domain-randomization training set
  toy_init = 18,       // initial weights (offset: model id << 32)
  toy_order = 19,      // batch order (offset: epoch << 32)
  toy_augment = 20,    // fresh x3 noise of the augmentation regime (offset: epoch << 32)
};

struct Philox4 {
  uint32_t v[4];
};

SB_HD void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
}

// Ten rounds of Philox4x32 on one 128-bit counter block.
SB_HD Philox4 philox4x32_10(Philox4 ctr, uint32_t k0, uint32_t k1) {
  constexpr uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  constexpr uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(M0, ctr.v[0], hi0, lo0);
    philox_mulhilo(M1, ctr.v[2], hi1, lo1);
    ctr = Philox4{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    k0 += W0;
    k1 += W1;
  }
  return ctr;
}

// Uniform float in (0, 1]: never 0, so log() is always finite.
SB_HD float u32_to_unit_float(uint32_t x) { return (static_cast<float>(x >> 8) + 1.0f) * (1.0f / 16777216.0f); }

// One stream: sequential draws from (base seed, seed index, purpose), starting at block `offset`.
struct RngStream {
  uint32_t k0, k1, seed_index, purpose;
  uint64_t block;
  uint32_t buf[4];
  int pos;

  SB_HD RngStream(uint64_t base_seed, uint32_t seed_index_, Purpose purpose_, uint64_t offset = 0)
      : k0(static_cast<uint32_t>(base_seed)), k1(static_cast<uint32_t>(base_seed >> 32)),
        seed_index(seed_index_), purpose(static_cast<uint32_t>(purpose_)), block(offset), buf{0, 0, 0, 0}, pos(4) {}

  SB_HD uint32_t next_u32() {
    if (pos == 4) {
      const Philox4 r = philox4x32_10(
          Philox4{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), seed_index, purpose}}, k0, k1);
      for (int i = 0; i < 4; ++i) buf[i] = r.v[i];
      ++block;
      pos = 0;
    }
    return buf[pos++];
  }
  // Uniform in (0, 1].
  SB_HD float uniform() { return u32_to_unit_float(next_u32()); }
  // Uniform in [lo, hi).
  SB_HD float uniform(float lo, float hi) { return lo + (hi - lo) * (1.0f - uniform()); }
  // Integer in [0, n) by 32x32 -> 64 multiply-shift (bias below 2^-32 * n, irrelevant here, identical everywhere).
  SB_HD uint32_t below(uint32_t n) { return static_cast<uint32_t>((static_cast<uint64_t>(next_u32()) * n) >> 32); }
  // Standard normal by Box-Muller (cosine branch only, so each call uses exactly two u32 draws).
  SB_HD float normal() {
    const float u1 = uniform(), u2 = uniform();
    const float r = sqrtf(-2.0f * logf(u1));
    return r * cosf(6.2831853071795864f * u2);
  }
  // N(mean, sd) restricted to [0, inf), by rejection (acceptance >= 0.5 whenever mean >= 0).
  SB_HD float truncated_normal_nonneg(float mean, float sd) {
    for (;;) {
      const float z = mean + sd * normal();
      if (z >= 0.0f) return z;
    }
  }
};

}  // namespace sb
