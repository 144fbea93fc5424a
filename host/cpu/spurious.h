// The spurious transform on the CPU, one seed at a time: the reference twin of kernels/spurious.cu. The
// configuration, the draw order of every Philox sub-stream and the helpers both share are in
// core/spurious_config.h.
#pragma once
#include <cstdint>
#include <vector>

#include "core/spurious_config.h"

namespace sb {

struct SpuriousSet {
  std::vector<float> x;                // (N, L): the input with noise added on the planted blocks
  std::vector<int32_t> planted_class;  // (N): class whose block was planted into sample i, or -1
};

// D_sp of one seed from D_base x (N, L) with labels y (N) in [0, classes). p = 0 returns x exactly.
// Throws std::invalid_argument for an invalid config (validate) or a label outside [0, classes).
SpuriousSet plant_spurious_feature(const SpuriousConfig& cfg, const float* x, const int32_t* y, int N, int L,
                                   uint64_t base_seed, uint32_t seed_index);

// Aligned test set: every clean test sample gets the training transform of its own class (p = 1).
SpuriousSet make_test_aligned(const SpuriousConfig& cfg, const float* x, const int32_t* y, int N, int L,
                              uint64_t base_seed, uint32_t seed_index);

// Conflicting test set: every clean test sample gets noise on the block of a class k' != y drawn
// uniformly from the other classes; planted_class holds k'.
SpuriousSet make_test_conflicting(const SpuriousConfig& cfg, const float* x, const int32_t* y, int N, int L,
                                  uint64_t base_seed, uint32_t seed_index);

// One of the three above by kind (train: plant_spurious_feature).
SpuriousSet make_spurious_set(SpuriousSetKind kind, const SpuriousConfig& cfg, const float* x, const int32_t* y, int N,
                              int L, uint64_t base_seed, uint32_t seed_index);

// Whether the host's draws for row i (planted on block k) of one seed pass within 1e-4 of the rejection test's 0
// (z = mean + sd * normal() >= 0): there a device ulp may flip the test and legitimately change the row's later draws
// (a chance of about 1e-8 per draw). Replays the unit's sub-stream (core/spurious_config.h's draw order).
// For comparing a device build (kernels/spurious.cu) with this one.
bool near_rejection_boundary(SpuriousSetKind set, const SpuriousConfig& c, uint64_t base, uint32_t seed, int i, int k,
                             int L);

}  // namespace sb
