// MNIST-1D generator; every step mirrors docs/mnist1d-generator.md and the numpy/scipy calls of the
// original (np.interp, scipy.ndimage.gaussian_filter, np.linspace, ndarray.mean/std), operation for
// operation, so the rounding matches too.
#include "data/generator.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <thread>

namespace sb {
namespace {

constexpr double kEps = 1e-8;    // added to the template, so its interior zeros count as signal
constexpr double kSigma = 2.0;   // correlated noise: gaussian_filter(noise, 2), truncate 4
constexpr int kRadius = 8;       // int(4 * sigma + 0.5)

const double kRawTemplates[kMnist1dClasses][kTemplatePoints] = {
    {5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5},
    {5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5},
    {5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5},
    {5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5},
    {5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5},
    {5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5},
    {5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5},
    {5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5},
    {5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5},
    {5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5},
};

// np.linspace(a, b, n): i * ((b - a) / (n - 1)) + a, the last element exactly b.
std::vector<double> linspace(double a, double b, int n) {
  std::vector<double> v(n);
  if (n == 1) {
    v[0] = a;
    return v;
  }
  const double step = (b - a) / (n - 1);
  for (int i = 0; i < n; ++i) v[i] = i * step + a;
  v[n - 1] = b;
  return v;
}

// np.interp(xt, xs, ys) for increasing xs and xt inside [xs[0], xs[ns-1]] (both grids are linspaces
// from 0 to 1 here). A walk instead of numpy's binary search finds the same interval j with
// xs[j] <= x < xs[j+1].
void interp(const double* xt, int nt, const double* xs, const double* ys, int ns, double* out) {
  int j = 0;
  for (int i = 0; i < nt; ++i) {
    const double x = xt[i];
    if (x >= xs[ns - 1]) {
      out[i] = ys[ns - 1];
      continue;
    }
    if (x <= xs[0]) {
      out[i] = ys[0];
      continue;
    }
    while (xs[j + 1] <= x) ++j;
    if (xs[j] == x) {
      out[i] = ys[j];
    } else {
      const double slope = (ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j]);
      out[i] = slope * (x - xs[j]) + ys[j];
    }
  }
}

// Index of position i (may be outside [0, n)) under scipy's 'reflect' boundary: half-sample symmetric,
// ... 1 0 | 0 1 ... n-1 | n-1 n-2 ..., repeated for lines shorter than the filter.
int reflect_index(int i, int n) {
  int m = i % (2 * n);
  if (m < 0) m += 2 * n;
  return m < n ? m : 2 * n - 1 - m;
}

// Mean and population std of all values, as ndarray.mean() / ndarray.std() round them.
void numpy_mean_std(const std::vector<double>& x, double& mean, double& std) {
  const size_t n = x.size();
  mean = numpy_pairwise_sum([&](size_t i) { return x[i]; }, 0, n) / double(n);
  const double m = mean;
  const double ss = numpy_pairwise_sum(
      [&](size_t i) {
        const double d = x[i] - m;
        return d * d;
      },
      0, n);
  std = std::sqrt(ss / double(n));
}

// Row r of x (rows of `width` values) becomes old row perm[r], in place, following the cycles.
void permute_rows(std::vector<double>& x, size_t width, const std::vector<int64_t>& perm) {
  const size_t n = perm.size();
  std::vector<uint8_t> done(n, 0);
  std::vector<double> tmp(width);
  for (size_t start = 0; start < n; ++start) {
    if (done[start]) continue;
    std::memcpy(tmp.data(), &x[start * width], width * sizeof(double));
    size_t cur = start;
    for (;;) {
      done[cur] = 1;
      const size_t next = size_t(perm[cur]);
      if (next == start) {
        std::memcpy(&x[cur * width], tmp.data(), width * sizeof(double));
        break;
      }
      std::memcpy(&x[cur * width], &x[next * width], width * sizeof(double));
      cur = next;
    }
  }
}

}  // namespace

void validate(const GeneratorConfig& cfg) {
  auto fail = [](const std::string& m) { throw std::invalid_argument("generate: " + m); };
  auto finite_nonneg = [&](double v, const char* flag) {
    if (!std::isfinite(v) || v < 0) fail(std::string(flag) + " must be a finite number >= 0, got " + std::to_string(v));
  };
  if (cfg.seed < 0 || cfg.seed > int64_t(0xffffffffu))
    fail("--seed must be in [0, 4294967295] (numpy's legacy seed), got " + std::to_string(cfg.seed));
  if (cfg.num_samples <= 0) fail("--num-samples must be positive, got " + std::to_string(cfg.num_samples));
  if (cfg.num_samples % kMnist1dClasses != 0)
    fail("--num-samples must be a multiple of 10 (the same count per class), got " + std::to_string(cfg.num_samples));
  if (cfg.num_samples > std::numeric_limits<int32_t>::max())
    fail("--num-samples must be at most 2147483647, got " + std::to_string(cfg.num_samples));
  if (!(cfg.train_split > 0.0 && cfg.train_split < 1.0))
    fail("--train-split must be inside (0, 1), got " + std::to_string(cfg.train_split));
  const int64_t n_train = int64_t(double(cfg.num_samples) * cfg.train_split);
  if (n_train < 1 || n_train >= cfg.num_samples)
    fail("--train-split " + std::to_string(cfg.train_split) + " of " + std::to_string(cfg.num_samples) +
         " samples leaves the train or the test set empty");
  if (cfg.template_len < 1) fail("--template-len must be positive, got " + std::to_string(cfg.template_len));
  if (cfg.padding_min < 0) fail("--padding-min must be >= 0, got " + std::to_string(cfg.padding_min));
  if (cfg.padding_max < cfg.padding_min)
    fail("--padding-min " + std::to_string(cfg.padding_min) + " is larger than --padding-max " +
         std::to_string(cfg.padding_max));
  if (int64_t(cfg.template_len) + cfg.padding_max > 1000000)
    fail("--template-len + --padding-max must be at most 1000000");
  if (working_length(cfg) < 2) fail("--template-len + --padding-max must be at least 2 (the working length)");
  finite_nonneg(cfg.scale_coeff, "--scale-coeff");
  if (cfg.max_translation < 1) fail("--max-translation must be >= 1, got " + std::to_string(cfg.max_translation));
  finite_nonneg(cfg.corr_noise_scale, "--corr-noise-scale");
  finite_nonneg(cfg.iid_noise_scale, "--iid-noise-scale");
  finite_nonneg(cfg.shear_scale, "--shear-scale");
  if (cfg.final_seq_length < kMinSequenceLength || cfg.final_seq_length > 1000000)
    fail("--final-seq-length must be in [" + std::to_string(kMinSequenceLength) +
         ", 1000000] (ConvBase needs at least " + std::to_string(kMinSequenceLength) + "), got " +
         std::to_string(cfg.final_seq_length));
}

Mnist1dTemplates mnist1d_templates() {
  // Per row, as numpy: x -= mean; x /= std (ddof 0); x -= x[0]; then x / 6.
  Mnist1dTemplates tp;
  tp.x.resize(kMnist1dClasses * kTemplatePoints);
  for (int c = 0; c < kMnist1dClasses; ++c) {
    double row[kTemplatePoints];
    std::memcpy(row, kRawTemplates[c], sizeof row);
    const double mean = numpy_pairwise_sum([&](size_t i) { return row[i]; }, 0, kTemplatePoints) / kTemplatePoints;
    for (double& v : row) v -= mean;
    // std recomputes the mean of the centred row (numpy's _var works on the array it is given).
    const double m2 = numpy_pairwise_sum([&](size_t i) { return row[i]; }, 0, kTemplatePoints) / kTemplatePoints;
    const double var = numpy_pairwise_sum(
                           [&](size_t i) {
                             const double d = row[i] - m2;
                             return d * d;
                           },
                           0, kTemplatePoints) /
                       kTemplatePoints;
    const double sd = std::sqrt(var);
    for (double& v : row) v /= sd;
    const double first = row[0];
    for (double& v : row) v -= first;
    for (int i = 0; i < kTemplatePoints; ++i) tp.x[c * kTemplatePoints + i] = row[i] / 6.;
  }
  tp.t = linspace(-5, 5, kTemplatePoints);
  for (double& v : tp.t) v /= 6.;
  return tp;
}

SampleGenerator::SampleGenerator(const GeneratorConfig& cfg)
    : cfg_(cfg),
      templates_(mnist1d_templates()),
      work_len_(sb::working_length(cfg)),
      final_len_(cfg.final_seq_length) {
  shear_ramp_ = linspace(-0.5, 0.5, work_len_);
  work_grid_ = linspace(0, 1, work_len_);
  final_grid_ = linspace(0, 1, final_len_);
  for (int p = cfg.padding_min; p <= cfg.padding_max; ++p) pad_grids_.push_back(linspace(0, 1, kTemplatePoints + p));
  // scipy's _gaussian_kernel1d: exp(-0.5 / sigma^2 * x^2) for x = -8..8, divided by its (pairwise) sum.
  double phi[2 * kRadius + 1];
  for (int i = 0; i <= 2 * kRadius; ++i) {
    const double x = i - kRadius;
    phi[i] = std::exp(-0.5 / (kSigma * kSigma) * (x * x));
  }
  const double sum = numpy_pairwise_sum([&](size_t i) { return phi[i]; }, 0, 2 * kRadius + 1);
  filter_.resize(kRadius + 1);
  for (int d = 0; d <= kRadius; ++d) filter_[d] = phi[kRadius + d] / sum;
  const size_t scratch = size_t(std::max(work_len_, kTemplatePoints + cfg.padding_max)) + 2 * kRadius;
  a_.resize(scratch);
  b_.resize(scratch);
  ext_.resize(scratch);
  noise_.resize(2 * size_t(work_len_));
}

SampleParams SampleGenerator::draw_sample(LegacyRandomState& rng, double* noise) const {
  const int L = work_len_;
  SampleParams p;
  p.pad = cfg_.padding_min + int(rng.random_sample() * (cfg_.padding_max - cfg_.padding_min + 1));
  p.scale = 1 + cfg_.scale_coeff * (rng.random_sample() - 0.5);
  p.shift = int(rng.choice(cfg_.max_translation));
  for (int i = 0; i < 2 * L; ++i) noise[i] = rng.gauss();  // for odd L the cache carries into the iid half
  p.shear = cfg_.shear_scale * (rng.random_sample() - 0.5);
  return p;
}

void SampleGenerator::shape_sample(int label, const SampleParams& p, const double* noise, double* out,
                                   SampleTrace* trace) {
  const int L = work_len_;
  double* x = a_.data();
  double* y = b_.data();

  // 1-2. template + eps, padded with p zeros.
  const int n_pad = kTemplatePoints + p.pad;
  const double* tmpl = &templates_.x[size_t(label) * kTemplatePoints];
  for (int i = 0; i < kTemplatePoints; ++i) x[i] = tmpl[i] + kEps;
  for (int i = kTemplatePoints; i < n_pad; ++i) x[i] = 0.0;
  if (trace) trace->padded.assign(x, x + n_pad);

  // 3. stretch onto the working grid.
  interp(work_grid_.data(), L, pad_grids_[p.pad - cfg_.padding_min].data(), x, n_pad, y);
  if (trace) trace->dilated.assign(y, y + L);

  // 4. scale.
  for (int i = 0; i < L; ++i) y[i] *= p.scale;
  if (trace) trace->scaled.assign(y, y + L);

  // 5. shift right by k: concatenate(x[-k:], x[:-k]); numpy slicing makes k >= L (and k = 0) a no-op.
  const int k = p.shift;
  if (k > 0 && k < L) {
    for (int i = 0; i < L; ++i) x[(i + k) % L] = y[i];
  } else {
    std::memcpy(x, y, sizeof(double) * L);
  }
  if (trace) trace->translated.assign(x, x + L);

  // 6-7. correlated noise where the signal is exactly 0: gaussian_filter(scale * randn(L), 2), 'reflect'.
  double* ext = ext_.data();  // ext[kRadius + i] is position i
  for (int i = 0; i < L; ++i) ext[kRadius + i] = cfg_.corr_noise_scale * noise[i];
  for (int i = -kRadius; i < 0; ++i) ext[kRadius + i] = ext[kRadius + reflect_index(i, L)];
  for (int i = L; i < L + kRadius; ++i) ext[kRadius + i] = ext[kRadius + reflect_index(i, L)];
  const double* w = filter_.data();
  if (trace) {
    trace->mask.resize(L);
    trace->corr_noise_filtered.resize(L);
  }
  for (int i = 0; i < L; ++i) {
    const bool signal = x[i] != 0.0;
    if (signal && !trace) continue;
    // scipy's symmetric correlate1d: centre first, then the pairs from the outside in.
    const double* c = ext + kRadius + i;
    double f = c[0] * w[0];
    for (int d = kRadius; d >= 1; --d) f += (c[-d] + c[d]) * w[d];
    if (trace) {
      trace->mask[i] = signal;
      trace->corr_noise_filtered[i] = f;
    }
    if (!signal) x[i] = f;
  }
  if (trace) trace->after_corr.assign(x, x + L);

  // 8. iid noise.
  for (int i = 0; i < L; ++i) x[i] += cfg_.iid_noise_scale * noise[L + i];
  if (trace) trace->after_iid.assign(x, x + L);

  // 9. shear.
  for (int i = 0; i < L; ++i) x[i] -= p.shear * shear_ramp_[i];
  if (trace) trace->sheared.assign(x, x + L);

  // 10. resample to the final length.
  interp(final_grid_.data(), final_len_, work_grid_.data(), x, L, out);
  if (trace) trace->final_unnormalized.assign(out, out + final_len_);
}

void SampleGenerator::generate(int label, LegacyRandomState& rng, double* out, SampleParams* params,
                               SampleTrace* trace) {
  const SampleParams p = draw_sample(rng, noise_.data());
  shape_sample(label, p, noise_.data(), out, trace);
  if (params) *params = p;
}

GeneratedSet generate_mnist1d(const GeneratorConfig& cfg, GeneratorTrace* trace) {
  validate(cfg);
  GeneratedSet set;
  set.cfg = cfg;
  const size_t N = size_t(cfg.num_samples), F = size_t(cfg.final_seq_length);
  const size_t per_class = N / kMnist1dClasses;
  set.length = int(F);
  set.x.resize(N * F);

  // Sample g has label g / per_class. The draws are sequential; the arithmetic is not, so a helper
  // thread shapes chunk c - 1 while this one draws chunk c (two buffers). Threads that block in join()
  // rather than spin keep this fast when the machine is busy with other work too.
  LegacyRandomState rng(uint32_t(cfg.seed));
  SampleGenerator gen(cfg);
  const size_t L2 = 2 * size_t(gen.working_length()), chunk = 2048, n_chunks = (N + chunk - 1) / chunk;
  std::vector<SampleParams> params[2] = {std::vector<SampleParams>(chunk), std::vector<SampleParams>(chunk)};
  std::vector<double> noise[2] = {std::vector<double>(chunk * L2), std::vector<double>(chunk * L2)};
  if (trace) trace->params.resize(N);
  auto draw_chunk = [&](size_t c) {
    for (size_t g = c * chunk, i = 0; g < std::min(N, (c + 1) * chunk); ++g, ++i)
      params[c & 1][i] = gen.draw_sample(rng, &noise[c & 1][i * L2]);
  };
  auto shape_chunk = [&](size_t c) {
    for (size_t g = c * chunk, i = 0; g < std::min(N, (c + 1) * chunk); ++g, ++i) {
      gen.shape_sample(int(g / per_class), params[c & 1][i], &noise[c & 1][i * L2], &set.x[g * F]);
      if (trace) trace->params[g] = params[c & 1][i];
    }
  };
  const bool two_threads = n_chunks > 1 && std::thread::hardware_concurrency() > 1;
  for (size_t c = 0; c <= n_chunks; ++c) {
    std::thread shaper;
    if (c > 0) {
      if (two_threads) {
        shaper = std::thread(shape_chunk, c - 1);
      } else {
        shape_chunk(c - 1);
      }
    }
    if (c < n_chunks) draw_chunk(c);
    if (shaper.joinable()) shaper.join();
  }

  std::vector<int64_t> perm = rng.permutation<int64_t>(N);
  permute_rows(set.x, F, perm);
  set.y.resize(N);
  for (size_t r = 0; r < N; ++r) set.y[r] = int32_t(size_t(perm[r]) / per_class);
  if (cfg.shuffle_seq) {
    std::vector<int64_t> cols = rng.permutation<int64_t>(F);
    std::vector<double> row(F);
    for (size_t r = 0; r < N; ++r) {
      double* xr = &set.x[r * F];
      for (size_t j = 0; j < F; ++j) row[j] = xr[cols[j]];
      std::memcpy(xr, row.data(), F * sizeof(double));
    }
    if (trace) trace->seq_perm = std::move(cols);
  }
  if (trace) trace->batch_perm = std::move(perm);

  numpy_mean_std(set.x, set.norm_mean, set.norm_std);
  if (!(set.norm_std > 0) || !std::isfinite(set.norm_std))
    throw std::invalid_argument("generate: the generated values have zero or non-finite spread; cannot normalise");
  for (double& v : set.x) v = (v - set.norm_mean) / set.norm_std;

  // Plot axis: the template axis through both interpolations, divided by the raw std.
  const Mnist1dTemplates tp = mnist1d_templates();
  const int L = working_length(cfg);
  const std::vector<double> tgrid = linspace(0, 1, kTemplatePoints), wgrid = linspace(0, 1, L),
                            fgrid = linspace(0, 1, int(F));
  std::vector<double> tw(L);
  set.t.resize(F);
  interp(wgrid.data(), L, tgrid.data(), tp.t.data(), kTemplatePoints, tw.data());
  interp(fgrid.data(), int(F), wgrid.data(), tw.data(), L, set.t.data());
  for (double& v : set.t) v /= set.norm_std;

  set.n_train = int(double(N) * cfg.train_split);
  set.n_test = int(N) - set.n_train;
  return set;
}

Dataset to_dataset(const GeneratedSet& set, const std::string& source) {
  Dataset d;
  d.length = set.length;
  d.classes = kMnist1dClasses;
  d.n_train = set.n_train;
  d.n_test = set.n_test;
  const size_t split = size_t(set.n_train) * set.length;
  d.x_train.assign(set.x.begin(), set.x.begin() + split);
  d.x_test.assign(set.x.begin() + split, set.x.end());
  d.y_train.assign(set.y.begin(), set.y.begin() + set.n_train);
  d.y_test.assign(set.y.begin() + set.n_train, set.y.end());
  d.source = source;
  return d;
}

}  // namespace sb
