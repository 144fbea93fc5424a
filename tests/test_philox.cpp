// Philox4x32-10 against Random123's known answers (study.md §7), and the statistics of RngStream's
// draws: every random choice of the study rests on these.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <set>
#include <vector>

#include "core/philox.h"

using namespace sb;

namespace {

struct Kat {
  uint32_t ctr[4];
  uint32_t key[2];
  uint32_t out[4];
};

// Random123 tests/kat_vectors, "philox4x32 10": counter[4] key[2] -> result[4].
const Kat kKats[] = {
    {{0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u},
     {0x00000000u, 0x00000000u},
     {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
    {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
     {0xffffffffu, 0xffffffffu},
     {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
    {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
     {0xa4093822u, 0x299f31d0u},
     {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
};

std::vector<uint32_t> first_u32(uint64_t base, uint32_t seed_index, Purpose purpose, int n, uint64_t offset = 0) {
  RngStream r(base, seed_index, purpose, offset);
  std::vector<uint32_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = r.next_u32();
  return v;
}

}  // namespace

TEST(Philox, KnownAnswerVectors) {
  for (const Kat& k : kKats) {
    const Philox4 r = philox4x32_10(Philox4{{k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3]}}, k.key[0], k.key[1]);
    for (int i = 0; i < 4; ++i)
      EXPECT_EQ(r.v[i], k.out[i]) << std::hex << "ctr " << k.ctr[0] << " " << k.ctr[1] << " " << k.ctr[2] << " "
                                  << k.ctr[3] << " key " << k.key[0] << " " << k.key[1] << " word " << i;
  }
}

// The stream's layout: key = base seed (lo, hi), counter = {block lo, block hi, seed index, purpose}.
TEST(Philox, StreamLayoutMatchesCounterDefinition) {
  const uint64_t base = 0x299f31d0a4093822ull;
  RngStream r(base, 0x13198a2eu, static_cast<Purpose>(0x03707344u), 0x85a308d3243f6a88ull);
  // The third KAT vector is exactly this stream's first block.
  EXPECT_EQ(r.next_u32(), 0xd16cfe09u);
  EXPECT_EQ(r.next_u32(), 0x94fdccebu);
  EXPECT_EQ(r.next_u32(), 0x5001e420u);
  EXPECT_EQ(r.next_u32(), 0x24126ea1u);
  // The fifth draw is the next block.
  const Philox4 next = philox4x32_10(Philox4{{0x243f6a89u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u,
                                     0x299f31d0u);
  EXPECT_EQ(r.next_u32(), next.v[0]);
}

TEST(Philox, StreamsDifferByPurposeSeedIndexAndBaseSeed) {
  const auto ref = first_u32(7, 3, Purpose::batch_order, 16);
  EXPECT_EQ(first_u32(7, 3, Purpose::batch_order, 16), ref);  // same triple, same stream
  EXPECT_NE(first_u32(7, 3, Purpose::init_weights, 16), ref);
  EXPECT_NE(first_u32(7, 4, Purpose::batch_order, 16), ref);
  EXPECT_NE(first_u32(8, 3, Purpose::batch_order, 16), ref);
  EXPECT_NE(first_u32(7ull | (1ull << 32), 3, Purpose::batch_order, 16), ref);  // high key word matters
  // All purposes x a few seed indices: pairwise distinct first blocks.
  std::set<std::vector<uint32_t>> seen;
  for (uint32_t p = 1; p <= 9; ++p)
    for (uint32_t s = 0; s < 8; ++s) seen.insert(first_u32(7, s, static_cast<Purpose>(p), 4));
  EXPECT_EQ(seen.size(), 9u * 8u);
}

TEST(Philox, OffsetSkipsWholeBlocks) {
  const auto full = first_u32(11, 2, Purpose::spurious_choice, 12);
  const auto skipped = first_u32(11, 2, Purpose::spurious_choice, 4, 2);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(skipped[size_t(i)], full[size_t(8 + i)]);
}

TEST(Philox, UniformIsInHalfOpenUnitIntervalWithRightMoments) {
  RngStream r(1, 0, Purpose::init_weights);
  const int n = 100000;
  double sum = 0, sum2 = 0;
  float lo = 2, hi = -1;
  for (int i = 0; i < n; ++i) {
    const float u = r.uniform();
    ASSERT_GT(u, 0.0f);
    ASSERT_LE(u, 1.0f);
    lo = std::min(lo, u);
    hi = std::max(hi, u);
    sum += u;
    sum2 += double(u) * u;
  }
  const double mean = sum / n, var = sum2 / n - mean * mean;
  EXPECT_NEAR(mean, 0.5, 0.005);       // sd of the mean ~ 0.0009
  EXPECT_NEAR(var, 1.0 / 12.0, 0.002);
  EXPECT_LT(lo, 1e-3f);
  EXPECT_GT(hi, 1.0f - 1e-3f);
  // The extremes of the mapping: 0 -> 2^-24, 0xffffffff -> 1.
  EXPECT_EQ(u32_to_unit_float(0u), 1.0f / 16777216.0f);
  EXPECT_EQ(u32_to_unit_float(0xffffffffu), 1.0f);
}

TEST(Philox, UniformRangeStaysInside) {
  RngStream r(2, 1, Purpose::init_weights);
  for (int i = 0; i < 10000; ++i) {
    const float v = r.uniform(-0.25f, 0.75f);
    ASSERT_GE(v, -0.25f);
    ASSERT_LT(v, 0.75f);
  }
}

TEST(Philox, BelowIsInRangeAndRoughlyUniform) {
  for (uint32_t n : {1u, 2u, 7u, 10u, 397u}) {
    RngStream r(3, n, Purpose::batch_order);
    const int draws = 20000 + 50 * int(n);
    std::vector<int> hist(n, 0);
    for (int i = 0; i < draws; ++i) {
      const uint32_t v = r.below(n);
      ASSERT_LT(v, n);
      ++hist[v];
    }
    if (n == 1) continue;
    // Chi-square with n-1 degrees of freedom: mean n-1, sd sqrt(2(n-1)); allow ~6 sd.
    const double expect = double(draws) / n;
    double chi2 = 0;
    for (int h : hist) chi2 += (h - expect) * (h - expect) / expect;
    const double dof = n - 1.0;
    EXPECT_LT(chi2, dof + 6.0 * std::sqrt(2.0 * dof) + 10.0) << "n = " << n;
  }
}

TEST(Philox, NormalHasMeanZeroAndUnitSd) {
  RngStream r(4, 0, Purpose::init_weights);
  const int n = 100000;
  double sum = 0, sum2 = 0, sum4 = 0;
  int beyond2 = 0;
  for (int i = 0; i < n; ++i) {
    const double z = r.normal();
    ASSERT_TRUE(std::isfinite(z));
    sum += z;
    sum2 += z * z;
    sum4 += z * z * z * z;
    beyond2 += std::fabs(z) > 2.0;
  }
  const double mean = sum / n, var = sum2 / n - mean * mean;
  EXPECT_NEAR(mean, 0.0, 0.02);                 // sd of the mean ~ 0.003
  EXPECT_NEAR(std::sqrt(var), 1.0, 0.02);
  EXPECT_NEAR(sum4 / n, 3.0, 0.15);             // kurtosis of a normal
  EXPECT_NEAR(double(beyond2) / n, 0.0455, 0.004);
}

TEST(Philox, NormalUsesExactlyTwoDraws) {
  RngStream a(5, 0, Purpose::init_weights), b(5, 0, Purpose::init_weights);
  a.normal();
  b.next_u32();
  b.next_u32();
  EXPECT_EQ(a.next_u32(), b.next_u32());
}

TEST(Philox, TruncatedNormalIsNonNegativeWithRightMean) {
  RngStream r(6, 0, Purpose::spurious_class_noise);
  const int n = 100000;
  double sum = 0, sum2 = 0;
  for (int i = 0; i < n; ++i) {
    const float v = r.truncated_normal_nonneg(2.0f, 1.0f);
    ASSERT_GE(v, 0.0f);
    sum += v;
    sum2 += double(v) * v;
  }
  // N(2, 1) truncated below at 0 (alpha = -2): lambda = phi(2)/Phi(2) = 0.05525,
  // mean = 2 + lambda = 2.0553, var = 1 + alpha*lambda - lambda^2 = 0.8864.
  const double phi2 = std::exp(-2.0) / std::sqrt(2.0 * M_PI);
  const double Phi2 = 0.5 * std::erfc(-2.0 / std::sqrt(2.0));
  const double lambda = phi2 / Phi2;
  const double mean = sum / n, var = sum2 / n - mean * mean;
  EXPECT_NEAR(2.0 + lambda, 2.0553, 1e-4);
  EXPECT_NEAR(mean, 2.0 + lambda, 0.01);  // sd of the mean ~ 0.003
  EXPECT_NEAR(var, 1.0 - 2.0 * lambda - lambda * lambda, 0.02);
}

TEST(Philox, TruncatedNormalWithNegativeMeanStillTerminatesAndIsNonNegative) {
  RngStream r(7, 0, Purpose::spurious_sample_noise);
  double sum = 0;
  for (int i = 0; i < 2000; ++i) {
    const float v = r.truncated_normal_nonneg(-1.0f, 1.0f);
    ASSERT_GE(v, 0.0f);
    sum += v;
  }
  // N(-1, 1) truncated at 0 has mean -1 + phi(1)/(1 - Phi(1)) = 0.5251.
  EXPECT_NEAR(sum / 2000, 0.5251, 0.05);
}
