// Metrics of one model on one set, and statistics across seeds (study.md §5).
#pragma once
#include <cstdint>
#include <vector>

namespace sb {

// Groups are the classes. worst_group_accuracy is the minimum over classes present in the set.
struct SetMetrics {
  double accuracy = 0, worst_group_accuracy = 0, loss = 0;
  std::vector<double> per_group_accuracy;  // (classes); NaN for a class absent from the set
};

// The predicted class of one sample's logits z (classes): the first maximum, as torch.argmax (a NaN logit is skipped).
inline int predicted_class(const float* z, int classes) {
  int arg = 0;
  for (int k = 1; k < classes; ++k)
    if (z[k] > z[arg]) arg = k;
  return arg;
}

// logits (N, classes), labels (N). loss is the mean cross-entropy (computed in double).
SetMetrics evaluate_logits(const float* logits, const int32_t* labels, int N, int classes);

// The same from counts (what a device scores): correct[k] of total[k] samples of class k right, loss_sum the summed
// cross-entropy of all N samples.
SetMetrics metrics_from_counts(const int64_t* correct, const int64_t* total, int classes, int N, double loss_sum);

struct SeedStats {
  double mean = 0, std = 0, min = 0, max = 0, median = 0;
  double ci95_lo = 0, ci95_hi = 0;  // t-interval for the mean; equals [mean, mean] for one value
  int n = 0;
};

// Sample std (n-1). Throws on an empty list.
SeedStats seed_stats(const std::vector<double>& values);

// Two-sided 97.5 % quantile of Student's t with dof degrees of freedom.
double student_t975(int dof);

}  // namespace sb
