#include "core/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace sb {

SetMetrics evaluate_logits(const float* logits, const int32_t* labels, int N, int classes) {
  std::vector<int64_t> correct(classes, 0), total(classes, 0);
  double loss = 0;
  for (int i = 0; i < N; ++i) {
    const float* z = logits + size_t(i) * classes;
    const int arg = predicted_class(z, classes);
    const float zmax = z[arg];
    double sum = 0;
    for (int k = 0; k < classes; ++k) sum += std::exp(double(z[k]) - zmax);
    const int y = labels[i];
    loss += std::log(sum) - (double(z[y]) - zmax);
    ++total[y];
    if (arg == y) ++correct[y];
  }
  return metrics_from_counts(correct.data(), total.data(), classes, N, loss);
}

SetMetrics metrics_from_counts(const int64_t* correct, const int64_t* total, int classes, int N, double loss_sum) {
  SetMetrics m;
  int64_t n_correct = 0;
  for (int k = 0; k < classes; ++k) n_correct += correct[k];
  m.accuracy = N > 0 ? double(n_correct) / N : 0.0;
  m.loss = N > 0 ? loss_sum / N : 0.0;
  m.per_group_accuracy.assign(classes, std::numeric_limits<double>::quiet_NaN());
  m.worst_group_accuracy = 1.0;
  for (int k = 0; k < classes; ++k) {
    if (total[k] == 0) continue;
    m.per_group_accuracy[k] = double(correct[k]) / total[k];
    m.worst_group_accuracy = std::min(m.worst_group_accuracy, m.per_group_accuracy[k]);
  }
  return m;
}

double student_t975(int dof) {
  // Exact table for small dof, then the Cornish-Fisher expansion (error < 1e-4 for dof > 30).
  static const double table[] = {0,      12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622,
                                 2.2281, 2.2010,  2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930,
                                 2.0860, 2.0796,  2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452,
                                 2.0423};
  if (dof < 1) return std::numeric_limits<double>::quiet_NaN();
  if (dof <= 30) return table[dof];
  const double z = 1.959963984540054, n = dof;
  const double z3 = z * z * z, z5 = z3 * z * z, z7 = z5 * z * z;
  return z + (z3 + z) / (4 * n) + (5 * z5 + 16 * z3 + 3 * z) / (96 * n * n) +
         (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * n * n * n);
}

SeedStats seed_stats(const std::vector<double>& values) {
  if (values.empty()) throw std::invalid_argument("seed_stats: no values");
  SeedStats s;
  s.n = static_cast<int>(values.size());
  std::vector<double> v = values;
  std::sort(v.begin(), v.end());
  s.min = v.front();
  s.max = v.back();
  s.median = s.n % 2 ? v[s.n / 2] : 0.5 * (v[s.n / 2 - 1] + v[s.n / 2]);
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = s.min == s.max ? s.min : sum / s.n;  // identical values: exactly that value, std exactly 0
  double ss = 0;
  for (double x : v) ss += (x - s.mean) * (x - s.mean);
  s.std = s.n > 1 ? std::sqrt(ss / (s.n - 1)) : 0.0;
  const double half = s.n > 1 ? student_t975(s.n - 1) * s.std / std::sqrt(double(s.n)) : 0.0;
  s.ci95_lo = s.mean - half;
  s.ci95_hi = s.mean + half;
  return s;
}

}  // namespace sb
