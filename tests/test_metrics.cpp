// Metrics per set and statistics across seeds.
#include <gtest/gtest.h>

#include <cmath>

#include "core/metrics.h"

using namespace sb;

TEST(Metrics, AccuracyWorstGroupAndLoss) {
  // 3 classes, 5 samples: class 0 all right (2/2), class 1 half right (1/2), class 2 wrong (0/1).
  const float logits[] = {5, 0, 0,  4, 1, 0,  0, 3, 0,  3, 0, 0,  0, 2, 1};
  const int32_t labels[] = {0, 0, 1, 1, 2};
  SetMetrics m = evaluate_logits(logits, labels, 5, 3);
  EXPECT_DOUBLE_EQ(m.accuracy, 3.0 / 5);
  EXPECT_DOUBLE_EQ(m.per_group_accuracy[0], 1.0);
  EXPECT_DOUBLE_EQ(m.per_group_accuracy[1], 0.5);
  EXPECT_DOUBLE_EQ(m.per_group_accuracy[2], 0.0);
  EXPECT_DOUBLE_EQ(m.worst_group_accuracy, 0.0);  // the minimum, not the source's typo'd max
  double loss = 0;
  for (int i = 0; i < 5; ++i) {
    double z = 0;
    for (int k = 0; k < 3; ++k) z += std::exp(double(logits[i * 3 + k]));
    loss += std::log(z) - logits[i * 3 + labels[i]];
  }
  EXPECT_NEAR(m.loss, loss / 5, 1e-12);
}

TEST(Metrics, AbsentClassIsNaNAndIgnored) {
  const float logits[] = {1, 0, 0, 0, 1, 0};
  const int32_t labels[] = {0, 1};
  SetMetrics m = evaluate_logits(logits, labels, 2, 3);
  EXPECT_TRUE(std::isnan(m.per_group_accuracy[2]));
  EXPECT_DOUBLE_EQ(m.worst_group_accuracy, 1.0);
}

TEST(Metrics, SeedStats) {
  SeedStats s = seed_stats({0.9, 0.8, 0.95, 0.85});
  EXPECT_NEAR(s.mean, 0.875, 1e-12);
  EXPECT_NEAR(s.std, std::sqrt((0.025 * 0.025 + 0.075 * 0.075 + 0.075 * 0.075 + 0.025 * 0.025) / 3), 1e-12);
  EXPECT_DOUBLE_EQ(s.min, 0.8);
  EXPECT_DOUBLE_EQ(s.max, 0.95);
  EXPECT_NEAR(s.median, 0.875, 1e-12);
  EXPECT_NEAR(s.ci95_hi - s.mean, 3.1824 * s.std / 2, 1e-4);
  EXPECT_NEAR(s.mean - s.ci95_lo, s.ci95_hi - s.mean, 1e-12);
  EXPECT_THROW(seed_stats({}), std::invalid_argument);
}

TEST(Metrics, StudentT) {
  EXPECT_NEAR(student_t975(1), 12.7062, 1e-4);
  EXPECT_NEAR(student_t975(40), 2.0211, 2e-4);
  EXPECT_NEAR(student_t975(99), 1.9842, 2e-4);
  EXPECT_NEAR(student_t975(100000), 1.95996, 1e-4);
}

TEST(Metrics, IdenticalValuesHaveZeroSpread) {
  const SeedStats s = seed_stats(std::vector<double>(100, 0.1));
  EXPECT_EQ(s.mean, 0.1);
  EXPECT_EQ(s.std, 0.0);
  EXPECT_EQ(s.ci95_lo, 0.1);
  EXPECT_EQ(s.ci95_hi, 0.1);
}
