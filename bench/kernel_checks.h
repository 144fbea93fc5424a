// What bench_kernels checks before it times a kernel: the kernel's output against its CPU twin (host/cpu/, named
// like the kernel), within the tolerance of the test that compares the two (tests/test_cuda.cpp,
// test_conv1d_split.cpp, test_spurious_cuda.cpp). Here: the error measure, the tolerances, the outcome of one
// entry's check, and the layout conversions between the kernels' sample-major tensors and the CPU twins'
// batch-innermost ones (as tests/cuda_test_util.h, which the bench floor may not include). Host code only.
#pragma once
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "cpu/act_buffer.h"
#include "core/philox.h"
#include "core/spurious_config.h"
#include "cpu/simd.h"
#include "cpu/spurious.h"

namespace sb::bench {

// ---- Tolerances, each the one of the test that compares the kernel with its twin.

// Conv1d and linear forward passes and unmasked input gradients: the CPU twin chains one FMA per term in the GPU's
// order, so on AVX2 / AVX-512 the bits are the same (tolerance 0); on SSE2, 1e-5. (CudaKernels.Conv1dForwardMatchesCpu,
// Conv1dBackwardInputMatchesCpu, LinearForwardAndBackwardMatchCpu.)
inline double fma_chain_tol() { return simd_level() == SimdLevel::sse2 ? 1e-5 : 0.0; }
// The linear head's input gradient with a ReLU mask (LinearForwardAndBackwardMatchCpu's din_masked).
constexpr double kMaskedInputGradTol = 1e-5;
// Weight and bias gradients: the GPU sums B*L terms in another grouping (CudaKernels.Conv1dBackwardWeightsMatchesCpu,
// CudaConv1dSplit.MatchesCpu, LinearForwardAndBackwardMatchCpu).
constexpr double kWeightGradTol = 5e-5;
// Softmax cross-entropy: dlogits normwise, the loss as |got - want| / (1 + |want|) (SoftmaxCrossEntropyMatchesCpu).
constexpr double kSoftmaxTol = 1e-5;
// Adam and the gather: the same bits (AdamMatchesCpuBitForBit, GatherBatchRows).
constexpr double kBitwise = 0.0;
// cuDNN's convolutions sum in its own order: 1e-5 for the forward pass and the input gradient (test_cudnn.cpp's
// predict / features / saliency), kWeightGradTol for the weight gradients.
constexpr double kCudnnTol = 1e-5;
// Noisy features of the device-built spurious sets: |got - want| / max(1, |want|), the device's logf / cosf against
// glibc's (kernels/spurious_cuda.h, SpuriousCuda.*MatchesHostPerSeed); every other feature and planted class exact.
constexpr double kSpuriousNoiseTol = 1e-5;

// ---- Error measure and outcome.

// Normwise relative error max_i |got_i - want_i| / max_i |want_i|, as the tests'; a NaN on either side gives
// infinity, so NaN never passes. 0 means the same values (bit for bit, but for the sign of zero).
inline double rel_error(const float* got, const float* want, size_t n) {
  double diff = 0.0, scale = 0.0;
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(got[i]) || std::isnan(want[i])) return std::numeric_limits<double>::infinity();
    diff = std::max(diff, std::fabs(double(got[i]) - double(want[i])));
    scale = std::max(scale, std::fabs(double(want[i])));
  }
  return scale > 0.0 ? diff / scale : diff;
}
inline double rel_error(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return std::numeric_limits<double>::infinity();
  return rel_error(got.data(), want.data(), got.size());
}

inline std::string number(double v, int digits) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}

// One entry's check: every output's error against its tolerance. The first failure is kept; passed() reports it.
class KernelCheck {
 public:
  explicit KernelCheck(std::string kernel) : kernel_(std::move(kernel)) {}

  // `output` names what was compared ("dw, seed 3"). !(err <= tol), so a NaN error fails too.
  void expect(const std::string& output, double err, double tol) {
    if (!(err <= tol)) fail(output + ": max rel err " + number(err, 3) + " > tol " + number(tol, 3));
    worst_ = std::max(worst_, err);
  }
  // A mismatch that is not a size of error (a label, a planted class).
  void fail(const std::string& what) {
    if (failure_.empty()) failure_ = kernel_ + " " + what;
  }

  // True if every expectation held, with the worst error as the entry's label; otherwise the entry is skipped with
  // the failure, and no time is reported.
  bool passed(benchmark::State& state) const {
    if (!failure_.empty()) {
      state.SkipWithError(failure_.c_str());
      return false;
    }
    state.SetLabel("vs CPU twin: max rel err " + number(worst_, 3));
    return true;
  }

 private:
  std::string kernel_, failure_;
  double worst_ = 0.0;
};

// ---- Layouts.

// (B, W) sample-major <-> (W, ld) feature-major with zero padding columns, ld = padded_batch(B): the linear twin's.
inline std::vector<float> to_feature_major(const float* sm, int B, int W) {
  const int ld = padded_batch(B);
  std::vector<float> fm(size_t(W) * ld, 0.0f);
  for (int b = 0; b < B; ++b)
    for (int f = 0; f < W; ++f) fm[size_t(f) * ld + b] = sm[size_t(b) * W + f];
  return fm;
}
inline std::vector<float> from_feature_major(const std::vector<float>& fm, int B, int W) {
  const int ld = padded_batch(B);
  std::vector<float> sm(size_t(B) * W);
  for (int b = 0; b < B; ++b)
    for (int f = 0; f < W; ++f) sm[size_t(b) * W + f] = fm[size_t(f) * ld + b];
  return sm;
}

// Seed s's B samples of `row` floats from a tensor (S, B, row), or with `interleaved` (B, S, row): cuDNN's grouped
// convolution, whose S*C channels hold every seed's C.
inline std::vector<float> seed_samples(const std::vector<float>& all, int S, int B, size_t row, int s,
                                       bool interleaved) {
  std::vector<float> out(size_t(B) * row);
  for (int b = 0; b < B; ++b) {
    const size_t from = (interleaved ? size_t(b) * S + s : size_t(s) * B + b) * row;
    std::copy(all.begin() + from, all.begin() + from + row, out.begin() + size_t(b) * row);
  }
  return out;
}

// ---- The spurious sets (kernels/spurious_cuda.h against cpu/spurious.h), as test_spurious_cuda.cpp compares them.

// One seed's device rows (N, L) and planted classes (N) against the CPU twin's set `want`: planted classes equal,
// features off the planted block bit-identical, noisy features within kSpuriousNoiseTol * max(1, |x|). A row whose
// noisy features differ more, finite, is excused where its host draws came near the rejection boundary; the units
// whose draws those were ((seed, class) in per_class mode, else (seed, row)) go into *excused (the caller allows one
// in the whole check, as the tests do).
inline void expect_spurious_seed_matches(KernelCheck& check, SpuriousSetKind set, const SpuriousConfig& c,
                                         uint64_t base, uint32_t seed, int N, int L, const float* x,
                                         const int32_t* planted, const SpuriousSet& want,
                                         std::set<std::pair<uint32_t, int>>* excused) {
  const std::string where = ", seed " + std::to_string(seed);
  double worst = 0.0;
  for (int i = 0; i < N; ++i) {
    const int k = want.planted_class[size_t(i)];
    if (planted[i] != k) {
      check.fail("planted class of row " + std::to_string(i) + where + ": " + std::to_string(planted[i]) +
                 ", CPU twin " + std::to_string(k));
      return;
    }
    double row_worst = 0.0;
    for (int j = 0; j < L; ++j) {
      const float got = x[size_t(i) * L + j], cpu = want.x[size_t(i) * L + j];
      if (std::memcmp(&got, &cpu, sizeof got) == 0) continue;
      const bool noisy = k >= 0 && j >= block_begin(c, k) && j < block_end(c, k, L);
      if (!noisy) {
        check.fail("row " + std::to_string(i) + " feature " + std::to_string(j) + where +
                   " (off the planted block): " + number(got, 9) + ", CPU twin " + number(cpu, 9));
        return;
      }
      const double err = std::isnan(got) ? std::numeric_limits<double>::infinity()
                                         : std::fabs(double(got) - cpu) / std::max(1.0, std::fabs(double(cpu)));
      row_worst = std::max(row_worst, err);
    }
    if (row_worst > kSpuriousNoiseTol && std::isfinite(row_worst) &&
        near_rejection_boundary(set, c, base, seed, i, k, L)) {
      excused->insert({seed, c.draw == NoiseDraw::per_class ? k : i});
      continue;
    }
    worst = std::max(worst, row_worst);
  }
  check.expect("noisy features" + where, worst, kSpuriousNoiseTol);
}

}  // namespace sb::bench
