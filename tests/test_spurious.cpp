// The spurious transform (study.md §1.2): exact planted counts, only block features change, the three
// noise-draw modes share values as specified, seeds are independent, and the shifted test sets point
// the shortcut the right (aligned) or wrong (conflicting) way.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <stdexcept>
#include <vector>

#include "core/philox.h"
#include "cpu/spurious.h"
#include "test_paths.h"

using namespace sb;

namespace {

const std::vector<int> kTrainCounts = {398, 396, 411, 394, 394, 402, 401, 404, 402, 398};

std::vector<int32_t> canonical_train_labels() { return sb_read_canonical<int32_t>("y_train.i32", 4000); }

const std::vector<int32_t>& labels() {
  static const std::vector<int32_t> y = canonical_train_labels();
  return y;
}

std::vector<float> inputs(int N, int L) { return sb_normal_inputs(N, L, 12345); }

SpuriousConfig with_draw(NoiseDraw d, double p = 0.9) {
  SpuriousConfig c;
  c.p = p;
  c.draw = d;
  return c;
}

bool in_block(const SpuriousConfig& c, int k, int j, int L) { return j >= block_begin(c, k) && j < block_end(c, k, L); }

// Checks that s differs from x only on the planted block of each sample, by a non-negative amount,
// and that planted_class is consistent with which rows changed. Returns the added values (N, L).
std::vector<float> check_only_blocks_change(const SpuriousConfig& c, const std::vector<float>& x, const SpuriousSet& s,
                                            int N, int L) {
  EXPECT_EQ(s.x.size(), size_t(N) * L);
  EXPECT_EQ(s.planted_class.size(), size_t(N));
  std::vector<float> added(size_t(N) * L, 0.0f);
  for (int i = 0; i < N; ++i) {
    const int k = s.planted_class[size_t(i)];
    for (int j = 0; j < L; ++j) {
      const size_t o = size_t(i) * L + j;
      if (k >= 0 && in_block(c, k, j, L)) {
        added[o] = s.x[o] - x[o];
        EXPECT_GE(s.x[o], x[o]) << "sample " << i << " feature " << j;  // noise >= 0
      } else {
        EXPECT_EQ(s.x[o], x[o]) << "sample " << i << " feature " << j << " planted " << k;
      }
    }
  }
  return added;
}

std::vector<int> planted_per_class(const SpuriousSet& s, const std::vector<int32_t>& y, int classes) {
  std::vector<int> n(size_t(classes), 0);
  for (size_t i = 0; i < y.size(); ++i)
    if (s.planted_class[i] >= 0) {
      EXPECT_EQ(s.planted_class[i], y[i]) << "training samples are planted with their own class's block";
      ++n[size_t(y[i])];
    }
  return n;
}

}  // namespace

TEST(Spurious, NoiseDrawNames) {
  EXPECT_EQ(parse_noise_draw("class"), NoiseDraw::per_class);
  EXPECT_EQ(parse_noise_draw("sample"), NoiseDraw::per_sample);
  EXPECT_EQ(parse_noise_draw("element"), NoiseDraw::per_element);
  for (NoiseDraw d : {NoiseDraw::per_class, NoiseDraw::per_sample, NoiseDraw::per_element})
    EXPECT_EQ(parse_noise_draw(to_string(d)), d);
  try {
    parse_noise_draw("per_class");
    FAIL() << "no error";
  } catch (const std::invalid_argument& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("per_class"), std::string::npos) << m;
    EXPECT_NE(m.find("class, sample or element"), std::string::npos) << m;
  }
}

TEST(Spurious, RoundHalfToEven) {
  EXPECT_EQ(round_half_even(0.5), 0);
  EXPECT_EQ(round_half_even(1.5), 2);
  EXPECT_EQ(round_half_even(2.5), 2);
  EXPECT_EQ(round_half_even(205.5), 206);
  EXPECT_EQ(round_half_even(204.5), 204);
  EXPECT_EQ(round_half_even(204.49), 204);
  EXPECT_EQ(round_half_even(204.51), 205);
  EXPECT_EQ(round_half_even(0.0), 0);
  EXPECT_EQ(planted_count(0.5, 411), 206);  // 205.5 -> 206
  EXPECT_EQ(planted_count(0.5, 401), 200);  // 200.5 -> 200
  EXPECT_EQ(planted_count(0.9, 398), 358);  // 358.2
  EXPECT_EQ(planted_count(1.0, 398), 398);
}

TEST(Spurious, ExactCountsPerClassOnCanonicalLabels) {
  const auto& y = labels();
  const int N = 4000, L = 40;
  // The loader's canonical counts.
  std::vector<int> counts(10, 0);
  for (int32_t v : y) ++counts[size_t(v)];
  ASSERT_EQ(counts, kTrainCounts);
  const auto x = inputs(N, L);
  for (double p : {0.0, 0.1, 0.5, 0.9, 1.0}) {
    SpuriousConfig c = with_draw(NoiseDraw::per_class, p);
    const SpuriousSet s = plant_spurious_feature(c, x.data(), y.data(), N, L, 0, 0);
    const auto got = planted_per_class(s, y, 10);
    for (int k = 0; k < 10; ++k) {
      // Python's round (half to even) of p * n_k, as the literal reading (peers/torch_mnist1d.py).
      const double v = p * kTrainCounts[size_t(k)];
      const double fl = std::floor(v);
      const int want = int(v - fl > 0.5 || (v - fl == 0.5 && int(fl) % 2 == 1) ? fl + 1 : fl);
      EXPECT_EQ(got[size_t(k)], want) << "p " << p << " class " << k;
    }
    check_only_blocks_change(c, x, s, N, L);
  }
  // Spot values: p = 0.5 on class 2 (411 -> 205.5 -> 206) and class 6 (401 -> 200.5 -> 200).
  const SpuriousSet half = plant_spurious_feature(with_draw(NoiseDraw::per_class, 0.5), x.data(), y.data(), N, L, 0, 0);
  const auto got = planted_per_class(half, y, 10);
  EXPECT_EQ(got[2], 206);
  EXPECT_EQ(got[6], 200);
}

TEST(Spurious, OnlyBlockFeaturesChangeInEveryMode) {
  const auto& y = labels();
  const int N = 4000, L = 40;
  const auto x = inputs(N, L);
  for (NoiseDraw d : {NoiseDraw::per_class, NoiseDraw::per_sample, NoiseDraw::per_element}) {
    SpuriousConfig c = with_draw(d, 0.9);
    const SpuriousSet s = plant_spurious_feature(c, x.data(), y.data(), N, L, 3, 1);
    const auto added = check_only_blocks_change(c, x, s, N, L);
    // Non-negative and, on average, about the truncated-normal mean 2.055.
    double sum = 0;
    int n = 0;
    for (int i = 0; i < N; ++i) {
      const int k = s.planted_class[size_t(i)];
      if (k < 0) continue;
      for (int j = block_begin(c, k); j < block_end(c, k, L); ++j) {
        EXPECT_GE(added[size_t(i) * L + j], 0.0f);
        sum += added[size_t(i) * L + j];
        ++n;
      }
    }
    if (d != NoiseDraw::per_class) EXPECT_NEAR(sum / n, 2.0553, 0.1) << to_string(d);
  }
}

TEST(Spurious, BlocksAreClippedAtTheSequenceEnd) {
  // L = 38: class 9's block [36, 41) is clipped to [36, 38); class 8's [32, 37) is whole.
  const int N = 200, L = 38;
  const auto y = sb_cyclic_labels(N, 10);
  const auto x = inputs(N, L);
  for (NoiseDraw d : {NoiseDraw::per_class, NoiseDraw::per_sample, NoiseDraw::per_element}) {
    SpuriousConfig c = with_draw(d, 1.0);
    EXPECT_EQ(block_end(c, 9, L), 38);
    EXPECT_EQ(block_end(c, 8, L), 37);
    const SpuriousSet s = plant_spurious_feature(c, x.data(), y.data(), N, L, 0, 0);
    const auto added = check_only_blocks_change(c, x, s, N, L);
    for (int i = 0; i < N; ++i) {
      const int k = y[size_t(i)];
      ASSERT_EQ(s.planted_class[size_t(i)], k);
      for (int j = block_begin(c, k); j < block_end(c, k, L); ++j) EXPECT_GT(added[size_t(i) * L + j], 0.0f);
    }
  }
  // L = 36 puts class 9's block start on the end: an error, not a silent no-op.
  SpuriousConfig c;
  EXPECT_THROW(validate(c, 36), std::invalid_argument);
  EXPECT_NO_THROW(validate(c, 37));
}

TEST(Spurious, PerClassModeSharesOneValuePerClass) {
  const auto& y = labels();
  const int N = 4000, L = 40;
  const auto x = inputs(N, L);
  const SpuriousConfig c = with_draw(NoiseDraw::per_class, 0.9);
  const SpuriousSet s = plant_spurious_feature(c, x.data(), y.data(), N, L, 0, 5);
  const std::vector<float> ck = class_noise_values(c, 0, 5);
  ASSERT_EQ(ck.size(), 10u);
  for (float v : ck) EXPECT_GE(v, 0.0f);
  EXPECT_GT(std::set<float>(ck.begin(), ck.end()).size(), 5u);  // the classes do get different values
  for (int i = 0; i < N; ++i) {
    const int k = s.planted_class[size_t(i)];
    if (k < 0) continue;
    for (int j = block_begin(c, k); j < block_end(c, k, L); ++j) {
      const size_t o = size_t(i) * L + j;
      EXPECT_EQ(s.x[o], x[o] + ck[size_t(k)]) << "sample " << i << " feature " << j;  // bitwise: the same float add
    }
  }
}

TEST(Spurious, PerSampleModeIsConstantWithinABlockAndVariesAcrossSamples) {
  const auto& y = labels();
  const int N = 4000, L = 40;
  const auto x = inputs(N, L);
  const SpuriousConfig c = with_draw(NoiseDraw::per_sample, 0.9);
  const SpuriousSet s = plant_spurious_feature(c, x.data(), y.data(), N, L, 0, 5);
  std::set<float> values;
  for (int i = 0; i < N; ++i) {
    const int k = s.planted_class[size_t(i)];
    if (k < 0) continue;
    const int lo = block_begin(c, k), hi = block_end(c, k, L);
    // Recover the value from the first feature; every block feature is x + that same value.
    const size_t o0 = size_t(i) * L + lo;
    const double v0 = double(s.x[o0]) - x[o0];
    for (int j = lo; j < hi; ++j) {
      const size_t o = size_t(i) * L + j;
      EXPECT_NEAR(double(s.x[o]) - x[o], v0, 1e-5) << "sample " << i << " feature " << j;
    }
    values.insert(float(v0));
  }
  EXPECT_GT(values.size(), 3000u);  // 3601 planted samples, essentially all distinct
}

TEST(Spurious, PerSampleModeValuesComeFromTheSampleSubStream) {
  // The documented layout a kernel reproduces: sample i reads RngStream(seed, idx, spurious_sample_noise, i << 32).
  const int N = 100, L = 40;
  const auto y = sb_cyclic_labels(N, 10);
  std::vector<float> x(size_t(N) * L, 0.0f);
  const SpuriousConfig c = with_draw(NoiseDraw::per_sample, 1.0);
  const SpuriousSet s = plant_spurious_feature(c, x.data(), y.data(), N, L, 9, 4);
  for (int i = 0; i < N; ++i) {
    RngStream r(9, 4, Purpose::spurious_sample_noise, uint64_t(i) << 32);
    EXPECT_EQ(s.x[size_t(i) * L + block_begin(c, y[size_t(i)])], r.truncated_normal_nonneg(2.0f, 1.0f));
  }
  const SpuriousConfig e = with_draw(NoiseDraw::per_element, 1.0);
  const SpuriousSet se = plant_spurious_feature(e, x.data(), y.data(), N, L, 9, 4);
  for (int i = 0; i < N; ++i) {
    RngStream r(9, 4, Purpose::spurious_sample_noise, uint64_t(i) << 32);
    const int k = y[size_t(i)];
    for (int j = block_begin(e, k); j < block_end(e, k, L); ++j)
      EXPECT_EQ(se.x[size_t(i) * L + j], r.truncated_normal_nonneg(2.0f, 1.0f));
  }
  // And c_k: class k reads RngStream(seed, idx, spurious_class_noise, k << 32).
  const auto ck = class_noise_values(c, 9, 4);
  for (int k = 0; k < 10; ++k) {
    RngStream r(9, 4, Purpose::spurious_class_noise, uint64_t(k) << 32);
    EXPECT_EQ(ck[size_t(k)], r.truncated_normal_nonneg(2.0f, 1.0f));
  }
}

TEST(Spurious, ChoiceIsPartialFisherYatesFromTheClassSubStream) {
  const int N = 300, L = 40;
  const auto y = sb_cyclic_labels(N, 10);
  const auto x = inputs(N, L);
  const SpuriousConfig c = with_draw(NoiseDraw::per_class, 0.4);
  const SpuriousSet s = plant_spurious_feature(c, x.data(), y.data(), N, L, 21, 6);
  for (int k = 0; k < 10; ++k) {
    std::vector<int> idx;
    for (int i = 0; i < N; ++i)
      if (y[size_t(i)] == k) idx.push_back(i);
    const int n = int(idx.size()), m = planted_count(0.4, n);
    RngStream r(21, 6, Purpose::spurious_choice, uint64_t(k) << 32);
    for (int j = 0; j < m; ++j) std::swap(idx[size_t(j)], idx[size_t(j) + r.below(uint32_t(n - j))]);
    std::set<int> want(idx.begin(), idx.begin() + m), got;
    for (int i = 0; i < N; ++i)
      if (s.planted_class[size_t(i)] == k) got.insert(i);
    EXPECT_EQ(got, want) << "class " << k;
  }
}

TEST(Spurious, PerElementModeVariesWithinABlock) {
  const auto& y = labels();
  const int N = 4000, L = 40;
  const auto x = inputs(N, L);
  const SpuriousConfig c = with_draw(NoiseDraw::per_element, 0.9);
  const SpuriousSet s = plant_spurious_feature(c, x.data(), y.data(), N, L, 0, 5);
  int planted = 0, varying = 0;
  for (int i = 0; i < N; ++i) {
    const int k = s.planted_class[size_t(i)];
    if (k < 0) continue;
    ++planted;
    std::set<float> within;
    for (int j = block_begin(c, k); j < block_end(c, k, L); ++j) {
      const size_t o = size_t(i) * L + j;
      within.insert(s.x[o] - x[o]);
    }
    varying += within.size() > 1;
  }
  int want = 0;
  for (int n : kTrainCounts) want += planted_count(0.9, n);
  EXPECT_EQ(want, 3601);  // 358 + 356 + 370 + 355 + 355 + 362 + 361 + 364 + 362 + 358
  EXPECT_EQ(planted, want);
  EXPECT_EQ(varying, planted);  // 5 continuous draws are never all equal
}

TEST(Spurious, ZeroPIsTheIdentity) {
  const auto& y = labels();
  const int N = 4000, L = 40;
  const auto x = inputs(N, L);
  for (NoiseDraw d : {NoiseDraw::per_class, NoiseDraw::per_sample, NoiseDraw::per_element}) {
    const SpuriousSet s = plant_spurious_feature(with_draw(d, 0.0), x.data(), y.data(), N, L, 77, 3);
    EXPECT_EQ(s.x, x) << to_string(d);
    EXPECT_EQ(s.planted_class, std::vector<int32_t>(size_t(N), -1));
  }
}

TEST(Spurious, DeterministicAndSeedIndependent) {
  const auto& y = labels();
  const int N = 4000, L = 40;
  const auto x = inputs(N, L);
  for (NoiseDraw d : {NoiseDraw::per_class, NoiseDraw::per_sample, NoiseDraw::per_element}) {
    const SpuriousConfig c = with_draw(d, 0.9);
    const SpuriousSet a = plant_spurious_feature(c, x.data(), y.data(), N, L, 42, 7);
    // Compute other seeds and the test sets in between: seed 7's output must not move.
    for (uint32_t other : {0u, 1u, 6u, 8u, 1000u}) {
      plant_spurious_feature(c, x.data(), y.data(), N, L, 42, other);
      make_test_conflicting(c, x.data(), y.data(), N, L, 42, other);
    }
    const SpuriousSet b = plant_spurious_feature(c, x.data(), y.data(), N, L, 42, 7);
    EXPECT_EQ(a.x, b.x) << to_string(d);
    EXPECT_EQ(a.planted_class, b.planted_class);
    // Different seed index or base seed: a different choice of samples.
    const SpuriousSet o = plant_spurious_feature(c, x.data(), y.data(), N, L, 42, 8);
    EXPECT_NE(a.planted_class, o.planted_class);
    EXPECT_NE(a.x, o.x);
    const SpuriousSet ob = plant_spurious_feature(c, x.data(), y.data(), N, L, 43, 7);
    EXPECT_NE(a.planted_class, ob.planted_class);
  }
  // c_k too depend on the seed index.
  const SpuriousConfig c;
  EXPECT_NE(class_noise_values(c, 42, 7), class_noise_values(c, 42, 8));
  EXPECT_EQ(class_noise_values(c, 42, 7), class_noise_values(c, 42, 7));
}

TEST(Spurious, SmallerPPlantsASubsetOfLargerP) {
  // The j-th Fisher-Yates draw does not depend on m, so p sweeps are nested.
  const auto& y = labels();
  const int N = 4000, L = 40;
  const auto x = inputs(N, L);
  SpuriousSet prev = plant_spurious_feature(with_draw(NoiseDraw::per_class, 0.1), x.data(), y.data(), N, L, 1, 2);
  for (double p : {0.3, 0.5, 0.9, 1.0}) {
    const SpuriousSet s = plant_spurious_feature(with_draw(NoiseDraw::per_class, p), x.data(), y.data(), N, L, 1, 2);
    for (int i = 0; i < N; ++i)
      if (prev.planted_class[size_t(i)] >= 0) EXPECT_EQ(s.planted_class[size_t(i)], prev.planted_class[size_t(i)]);
    prev = s;
  }
}

TEST(Spurious, ChosenSamplesAreUniformWithinAClass) {
  // Over many seed indices, every sample of a class is chosen about p of the time.
  const int N = 200, L = 40, seeds = 400;
  const auto y = sb_cyclic_labels(N, 10);
  const auto x = inputs(N, L);
  const SpuriousConfig c = with_draw(NoiseDraw::per_class, 0.25);
  std::vector<int> hits(size_t(N), 0);
  for (uint32_t s = 0; s < uint32_t(seeds); ++s) {
    const SpuriousSet o = plant_spurious_feature(c, x.data(), y.data(), N, L, 0, s);
    for (int i = 0; i < N; ++i) hits[size_t(i)] += o.planted_class[size_t(i)] >= 0;
  }
  // 20 per class, 5 chosen: each sample with probability 1/4; 400 seeds -> 100 +- 8.7.
  for (int i = 0; i < N; ++i) {
    EXPECT_GT(hits[size_t(i)], 60) << i;
    EXPECT_LT(hits[size_t(i)], 140) << i;
  }
}

TEST(Spurious, AlignedPlantsEverySampleOnItsOwnBlock) {
  const int N = 1000, L = 40;
  const auto y = sb_cyclic_labels(N, 10);
  const auto x = inputs(N, L);
  for (NoiseDraw d : {NoiseDraw::per_class, NoiseDraw::per_sample, NoiseDraw::per_element}) {
    const SpuriousConfig c = with_draw(d, 0.3);  // p is ignored: aligned is p = 1
    const SpuriousSet a = make_test_aligned(c, x.data(), y.data(), N, L, 5, 2);
    const auto added = check_only_blocks_change(c, x, a, N, L);
    for (int i = 0; i < N; ++i) {
      ASSERT_EQ(a.planted_class[size_t(i)], y[size_t(i)]);
      for (int j = block_begin(c, y[size_t(i)]); j < block_end(c, y[size_t(i)], L); ++j)
        EXPECT_GT(added[size_t(i) * L + j], 0.0f);
    }
    if (d == NoiseDraw::per_class) {
      // The same c_k as this seed's training set.
      const auto ck = class_noise_values(c, 5, 2);
      for (int i = 0; i < N; ++i) {
        const size_t o = size_t(i) * L + block_begin(c, y[size_t(i)]);
        EXPECT_EQ(a.x[o], x[o] + ck[size_t(y[size_t(i)])]);
      }
    } else {
      // Fresh draws from Purpose::test_aligned, not the training stream.
      std::vector<float> zeros(size_t(N) * L, 0.0f);
      const SpuriousSet az = make_test_aligned(c, zeros.data(), y.data(), N, L, 5, 2);
      RngStream r(5, 2, Purpose::test_aligned, 0);
      EXPECT_EQ(az.x[size_t(block_begin(c, y[0]))], r.truncated_normal_nonneg(2.0f, 1.0f));
    }
    EXPECT_EQ(a.x, make_test_aligned(c, x.data(), y.data(), N, L, 5, 2).x);  // deterministic
  }
}

TEST(Spurious, ConflictingPlantsAnotherClassUniformly) {
  const int N = 1000, L = 40;
  const auto y = sb_cyclic_labels(N, 10);
  const auto x = inputs(N, L);
  for (NoiseDraw d : {NoiseDraw::per_class, NoiseDraw::per_sample, NoiseDraw::per_element}) {
    const SpuriousConfig c = with_draw(d, 0.9);
    std::map<std::pair<int, int>, int> pairs;  // (y, planted) counts over several seeds
    for (uint32_t s = 0; s < 10; ++s) {
      const SpuriousSet co = make_test_conflicting(c, x.data(), y.data(), N, L, 0, s);
      const auto added = check_only_blocks_change(c, x, co, N, L);
      const auto ck = class_noise_values(c, 0, s);
      for (int i = 0; i < N; ++i) {
        const int k = co.planted_class[size_t(i)];
        ASSERT_GE(k, 0);
        ASSERT_LT(k, 10);
        ASSERT_NE(k, y[size_t(i)]) << "conflicting block must not be the sample's own class";
        ++pairs[{y[size_t(i)], k}];
        const size_t o = size_t(i) * L + block_begin(c, k);
        // One block per sample, so its features are exactly x + value (even where blocks overlap).
        if (d == NoiseDraw::per_class) EXPECT_EQ(co.x[o], x[o] + ck[size_t(k)]);
        else EXPECT_GE(added[o], 0.0f);
      }
    }
    // 10 seeds x 100 samples per class spread over 9 other classes: ~111 each.
    for (int a = 0; a < 10; ++a) {
      for (int b = 0; b < 10; ++b) {
        if (a == b) {
          EXPECT_EQ(pairs.count({a, b}), 0u);
          continue;
        }
        EXPECT_GT((pairs[{a, b}]), 65) << a << " -> " << b << " (" << to_string(d) << ")";
        EXPECT_LT((pairs[{a, b}]), 160) << a << " -> " << b << " (" << to_string(d) << ")";
      }
    }
  }
}

TEST(Spurious, ConflictingUsesItsOwnStream) {
  // The documented layout: sample i reads RngStream(seed, idx, test_conflicting, i << 32), first
  // below(classes - 1) for the class (skipping its own), then the noise value(s).
  const int N = 50, L = 40;
  const auto y = sb_cyclic_labels(N, 10);
  std::vector<float> zeros(size_t(N) * L, 0.0f);
  const SpuriousConfig c = with_draw(NoiseDraw::per_sample, 0.9);
  const SpuriousSet co = make_test_conflicting(c, zeros.data(), y.data(), N, L, 13, 3);
  for (int i = 0; i < N; ++i) {
    RngStream r(13, 3, Purpose::test_conflicting, uint64_t(i) << 32);
    const int rr = int(r.below(9));
    const int k = rr < y[size_t(i)] ? rr : rr + 1;
    ASSERT_EQ(co.planted_class[size_t(i)], k);
    EXPECT_EQ(co.x[size_t(i) * L + block_begin(c, k)], r.truncated_normal_nonneg(2.0f, 1.0f));
  }
}

TEST(Spurious, ValidateRejectsBadConfigs) {
  auto expect_invalid = [](SpuriousConfig c, int L, const std::string& fragment) {
    try {
      validate(c, L);
      FAIL() << "no error for " << fragment;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  SpuriousConfig ok;
  EXPECT_NO_THROW(validate(ok, 40));
  SpuriousConfig c = ok;
  c.p = -0.1;
  expect_invalid(c, 40, "p =");
  c.p = 1.1;
  expect_invalid(c, 40, "p =");
  c.p = std::nan("");
  expect_invalid(c, 40, "p =");
  c = ok;
  c.sd = 0.0f;
  expect_invalid(c, 40, "sd");
  c.sd = -1.0f;
  expect_invalid(c, 40, "sd");
  c.sd = INFINITY;
  expect_invalid(c, 40, "sd");
  c.sd = NAN;
  expect_invalid(c, 40, "sd");
  c = ok;
  c.mean = NAN;
  expect_invalid(c, 40, "mean");
  c.mean = -3.5f;
  expect_invalid(c, 40, "-3 * sd");
  c.mean = -3.0f;
  EXPECT_NO_THROW(validate(c, 40));
  c = ok;
  c.stride = 0;
  expect_invalid(c, 40, "stride");
  c = ok;
  c.width = 0;
  expect_invalid(c, 40, "width");
  c = ok;
  c.stride = 5;  // class 9 starts at 45 >= 40
  expect_invalid(c, 40, "class 9");
  c = ok;
  c.classes = 1;
  expect_invalid(c, 40, "classes");
  EXPECT_THROW(validate(ok, 36), std::invalid_argument);
  // The transforms validate too, and reject labels outside [0, classes).
  const int N = 20, L = 40;
  auto y = sb_cyclic_labels(N, 10);
  const auto x = inputs(N, L);
  c = ok;
  c.p = 2.0;
  EXPECT_THROW(plant_spurious_feature(c, x.data(), y.data(), N, L, 0, 0), std::invalid_argument);
  y[3] = 10;
  EXPECT_THROW(plant_spurious_feature(ok, x.data(), y.data(), N, L, 0, 0), std::invalid_argument);
  EXPECT_THROW(make_test_aligned(ok, x.data(), y.data(), N, L, 0, 0), std::invalid_argument);
  y[3] = -1;
  EXPECT_THROW(make_test_conflicting(ok, x.data(), y.data(), N, L, 0, 0), std::invalid_argument);
}
