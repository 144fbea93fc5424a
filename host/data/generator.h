// The MNIST-1D generator (Greydanus & Kobak), ported draw for draw from the Python original:
// docs/mnist1d-generator.md. With the defaults it reproduces the canonical data/mnist1d/ arrays
// (labels exactly, x to ~1e-15).
//
// Per sample (label c): template c + 1e-8 -> pad with p zeros -> stretch to the working length
// L = template_len + padding_max -> scale -> circular shift -> correlated noise where the signal is 0
// -> iid noise -> shear -> resample to final_seq_length. Samples are generated class by class,
// then the rows are permuted, optionally the columns, and the whole set is normalised to mean 0, std 1.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/data.h"
#include "data/legacy_random.h"

namespace sb {

struct GeneratorConfig {
  int64_t seed = 42;             // numpy seed, in [0, 2^32 - 1]
  int64_t num_samples = 5000;    // train + test, a multiple of 10 (the same count per class)
  double train_split = 0.8;      // the first int(num_samples * train_split) rows are the train set
  int template_len = 12;         // only sets the working length L = template_len + padding_max, as upstream
  int padding_min = 36, padding_max = 60;  // zeros appended to the 12-point template: uniform in [min, max]
  double scale_coeff = 0.4;      // amplitude factor 1 + scale_coeff * (u - 0.5)
  int max_translation = 48;      // circular shift uniform in [0, max_translation)
  double corr_noise_scale = 0.25;
  double iid_noise_scale = 0.02;
  double shear_scale = 0.75;
  bool shuffle_seq = false;      // also permute the columns (one permutation for the whole set)
  int final_seq_length = 40;
};

// The shortest sequence ConvBase runs on (the limit study.cpp's validate names).
constexpr int kMinSequenceLength = 7;
constexpr int kMnist1dClasses = 10;
constexpr int kTemplatePoints = 12;

// Throws std::invalid_argument naming the flag (--num-samples, ...) for any setting that cannot run.
void validate(const GeneratorConfig& cfg);

// Working length L = template_len + padding_max.
inline int working_length(const GeneratorConfig& cfg) { return cfg.template_len + cfg.padding_max; }

struct Mnist1dTemplates {
  std::vector<double> x;  // (10, 12), each row whitened, shifted to start at 0, divided by 6
  std::vector<double> t;  // (12), linspace(-5, 5, 12) / 6
};
Mnist1dTemplates mnist1d_templates();

// The random draws of one sample.
struct SampleParams {
  int pad = 0;             // zeros appended
  double scale = 0;        // amplitude factor
  int shift = 0;           // circular shift to the right (choice(max_translation))
  double shear = 0;        // shear coefficient
};

// Every intermediate array of one sample (the names of trace_gen0.json).
struct SampleTrace {
  std::vector<double> padded, dilated, scaled, translated, corr_noise_filtered, after_corr, after_iid, sheared,
      final_unnormalized;
  std::vector<uint8_t> mask;  // translated != 0
};

// One sample is its random draws (draw_sample: sequential, the RandomState's order) followed by
// arithmetic on them (shape_sample: no randomness). The split lets generate_mnist1d draw the next
// chunk of samples on one thread while another shapes the previous one. Holds the grids and filter
// weights, so a sample costs only its draws and arithmetic.
class SampleGenerator {
 public:
  explicit SampleGenerator(const GeneratorConfig& cfg);  // cfg must be valid
  int working_length() const { return work_len_; }
  int length() const { return final_len_; }

  // Draw order: rand (pad), rand (scale), choice (shift), L randn (correlated noise), L randn (iid
  // noise), rand (shear). noise is (2, L), unscaled randn values. Thread-safe for distinct rngs.
  SampleParams draw_sample(LegacyRandomState& rng, double* noise) const;
  // out is (final_seq_length); trace, if not null, receives every intermediate array. Uses the
  // object's scratch buffers: one thread at a time.
  void shape_sample(int label, const SampleParams& p, const double* noise, double* out,
                    SampleTrace* trace = nullptr);
  // draw_sample then shape_sample.
  void generate(int label, LegacyRandomState& rng, double* out, SampleParams* params = nullptr,
                SampleTrace* trace = nullptr);

 private:
  GeneratorConfig cfg_;
  Mnist1dTemplates templates_;
  int work_len_, final_len_;
  std::vector<double> shear_ramp_;    // linspace(-0.5, 0.5, L)
  std::vector<double> filter_;        // Gaussian weights w[0..8] (w[d] for offset +-d)
  std::vector<double> work_grid_, final_grid_;  // linspace(0, 1, L), linspace(0, 1, final_seq_length)
  std::vector<std::vector<double>> pad_grids_;  // linspace(0, 1, 12 + p) for each p
  std::vector<double> a_, b_, ext_, noise_;      // scratch, (L + 16) with room for the filter's borders
};

struct GeneratedSet {
  GeneratorConfig cfg;
  int length = 0, n_train = 0, n_test = 0;
  std::vector<double> x;      // (n_train + n_test, length): train rows, then test rows
  std::vector<int32_t> y;     // (n_train + n_test)
  std::vector<double> t;      // (length) plot axis
  double norm_mean = 0, norm_std = 0;  // raw statistics the set was normalised with
};

// Debug output of generate_mnist1d, for tests against the Python generator's traces.
struct GeneratorTrace {
  std::vector<SampleParams> params;  // per generated sample, in generation order
  std::vector<int64_t> batch_perm;   // row r of x is generated sample batch_perm[r]
  std::vector<int64_t> seq_perm;     // column j is column seq_perm[j] (shuffle_seq only)
};

// Validates cfg, then generates the whole set. Throws std::invalid_argument for a bad cfg.
GeneratedSet generate_mnist1d(const GeneratorConfig& cfg, GeneratorTrace* trace = nullptr);

// The set as the study's float32 Dataset.
Dataset to_dataset(const GeneratedSet& set, const std::string& source = "generated");

// numpy's pairwise summation (np.add.reduce over a contiguous double array), so means and stds round
// the way numpy's do. f(i) gives the i-th term.
template <class F>
double numpy_pairwise_sum(F&& f, size_t begin, size_t n) {
  if (n < 8) {
    double res = 0.;
    for (size_t i = 0; i < n; ++i) res += f(begin + i);
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = f(begin + j);
    size_t i = 8;
    for (; i < n - n % 8; i += 8)
      for (int j = 0; j < 8; ++j) r[j] += f(begin + i + j);
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += f(begin + i);
    return res;
  }
  size_t n2 = n / 2;
  n2 -= n2 % 8;
  return numpy_pairwise_sum(f, begin, n2) + numpy_pairwise_sum(f, begin + n2, n - n2);
}

}  // namespace sb
