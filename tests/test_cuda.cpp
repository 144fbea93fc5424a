// The CUDA kernels (kernels/) against their CPU twins (host/cpu/, named like the kernels), and the "cuda"
// backend against the CPU backend: fresh random inputs at several shapes, ragged ones included; every output
// poisoned with NaN before a kernel runs, so an element it fails to write shows up; determinism and independence
// of a seed's results from S, streams and graphs. Without a device every test skips; without a CUDA compiler the
// file holds one skipping test.
#include <gtest/gtest.h>

#include "core/backend.h"
#include "cpu/adam.h"
#include "cpu/conv1d.h"
#include "cpu/linear.h"
#include "cpu/simd.h"
#include "cpu/softmax_ce.h"

#if SB_HAVE_CUDA

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/philox.h"
#include "cpu/convbase.h"
#include "cuda/backend_cuda.h"
#include "cuda/device_memory.h"
#include "cuda_test_util.h"
#include "kernels/adam.h"
#include "kernels/conv1d.h"
#include "kernels/gather.h"
#include "kernels/linear.h"
#include "kernels/softmax_ce.h"
#include "study/backends.h"

namespace {

using namespace sb;
using namespace sb::test_util;
using gpu::DeviceArray;

// What this file compares with the CPU, for the skip message.
constexpr char kComparedOnGpu[] = "the CUDA kernels and the cuda backend are";

// On FMA levels the CPU twins of the forward pass and the input gradients chain one FMA per term in the order the
// GPU does, so the results are identical; on SSE2 (two roundings per term) they agree to float rounding.
bool cpu_fuses_multiply_add() { return simd_level() != SimdLevel::sse2; }


// Parameters of one conv layer per seed inside a wider per-seed buffer, with NaN slack after them (a kernel
// reading past its seed's tensors would produce NaN): w (Cout, Cin, K) at 0, bias (Cout) after it.
struct LayerParams {
  LayerParams(int S, size_t w_size, size_t b_size, uint64_t key)
      : w_size(w_size), stride(w_size + b_size + 3), host(S * stride, kNaN) {
    const std::vector<float> r = random_floats(S * (w_size + b_size), key);
    for (int s = 0; s < S; ++s)
      std::copy(r.begin() + s * (w_size + b_size), r.begin() + (s + 1) * (w_size + b_size), host.begin() + s * stride);
  }
  const float* w(int s) const { return host.data() + s * stride; }
  const float* b(int s) const { return w(s) + w_size; }
  size_t w_size, stride;
  std::vector<float> host;
};

// Values in [-1, 1) with every 7th element exactly 0 (ReLU masks must treat 0 as inactive, as relu_backward).
std::vector<float> mask_values(size_t n, uint64_t key) {
  std::vector<float> m = random_floats(n, key);
  for (size_t i = 0; i < n; i += 7) m[i] = 0.0f;
  return m;
}

struct ConvCase {
  int S, B, cin, cout, K, lin;
};
// ConvBase's three layers at C = 25 and 256, and ragged shapes (odd channel counts and lengths, B = 1).
const ConvCase kConvCases[] = {{3, 7, 1, 25, 5, 40},   {2, 5, 25, 25, 3, 19}, {2, 9, 25, 25, 3, 10},
                               {2, 3, 256, 256, 3, 10}, {3, 3, 33, 17, 3, 10}, {2, 3, 5, 6, 3, 7},
                               {1, 1, 2, 3, 3, 3},      {2, 9, 4, 5, 5, 5},    {2, 100, 25, 25, 3, 19}};

std::string describe(const ConvCase& c) {
  return "S=" + std::to_string(c.S) + " B=" + std::to_string(c.B) + " Cin=" + std::to_string(c.cin) +
         " Cout=" + std::to_string(c.cout) + " K=" + std::to_string(c.K) + " Lin=" + std::to_string(c.lin);
}

TEST(CudaKernels, Conv1dForwardMatchesCpu) {
  SB_SKIP_WITHOUT_CUDA(kComparedOnGpu);
  uint64_t key = 100;
  for (const ConvCase& c : kConvCases)
    for (const bool relu : {false, true})
      for (const bool shared : {false, true}) {
        SCOPED_TRACE(describe(c) + (relu ? " relu" : "") + (shared ? " shared input" : ""));
        const gpu::ConvDims d{c.S, c.B, c.cin, c.cout, c.K, c.lin};
        const int lout = d.lout();
        const size_t in_seed = size_t(c.B) * c.cin * c.lin, out_seed = size_t(c.B) * c.cout * lout;
        const std::vector<float> in = random_floats((shared ? 1 : c.S) * in_seed, ++key);
        const LayerParams lp(c.S, size_t(c.cout) * c.cin * c.K, c.cout, ++key);
        DeviceArray<float> d_in(in), d_params(lp.host), d_out(c.S * out_seed);
        d_out.poison();
        gpu::conv1d_forward(d, d_in.data(), shared ? 0 : in_seed, d_params.data(), d_params.data() + lp.w_size,
                            lp.stride, relu, d_out.data(), nullptr);
        const std::vector<float> got = d_out.download();
        EXPECT_EQ(count_nan(got), 0u);

        std::vector<float> want(c.S * out_seed);
        for (int s = 0; s < c.S; ++s) {
          ActBuffer x(c.cin, c.lin, 1, c.B), y(c.cout, lout, 0, c.B);
          x.set(in.data() + (shared ? 0 : s * in_seed));
          conv1d_forward(lp.w(s), lp.b(s), c.K, x.v, y.v);
          if (relu) relu_forward(y.v);
          y.get(want.data() + s * out_seed);
        }
        EXPECT_LE(rel_error(got, want), 1e-5);
        if (cpu_fuses_multiply_add()) {
          EXPECT_EQ(count_unequal(got, want), 0u) << "the CPU's FMA chain, bit for bit";
        }
      }
}

TEST(CudaKernels, Conv1dBackwardInputMatchesCpu) {
  SB_SKIP_WITHOUT_CUDA(kComparedOnGpu);
  uint64_t key = 200;
  for (const ConvCase& c : kConvCases)
    for (const int variant : {0, 1, 2}) {  // plain, ReLU mask, absolute value (saliency)
      const bool masked = variant == 1, absolute = variant == 2;
      SCOPED_TRACE(describe(c) + (masked ? " masked" : "") + (absolute ? " absolute" : ""));
      const gpu::ConvDims d{c.S, c.B, c.cin, c.cout, c.K, c.lin};
      const int lout = d.lout();
      const size_t in_seed = size_t(c.B) * c.cin * c.lin, out_seed = size_t(c.B) * c.cout * lout;
      const std::vector<float> dout = random_floats(c.S * out_seed, ++key);
      const std::vector<float> mask = mask_values(c.S * in_seed, ++key);
      const LayerParams lp(c.S, size_t(c.cout) * c.cin * c.K, c.cout, ++key);
      DeviceArray<float> d_dout(dout), d_mask(mask), d_params(lp.host), d_din(c.S * in_seed);
      d_din.poison();
      gpu::conv1d_backward_input(d, d_dout.data(), d_params.data(), lp.stride, masked ? d_mask.data() : nullptr,
                                 absolute, d_din.data(), nullptr);
      const std::vector<float> got = d_din.download();
      EXPECT_EQ(count_nan(got), 0u);

      std::vector<float> want(c.S * in_seed);
      for (int s = 0; s < c.S; ++s) {
        ActBuffer g(c.cout, lout, 0, c.B), dx(c.cin, c.lin, 0, c.B), m(c.cin, c.lin, 0, c.B);
        g.set(dout.data() + s * out_seed);
        m.set(mask.data() + s * in_seed);
        conv1d_backward_input(lp.w(s), c.K, g.v, dx.v);
        if (masked) relu_backward(m.v, dx.v);
        dx.get(want.data() + s * in_seed);
      }
      if (absolute)
        for (float& x : want) x = std::fabs(x);
      EXPECT_LE(rel_error(got, want), 1e-5);
      if (cpu_fuses_multiply_add()) {
        EXPECT_EQ(count_unequal(got, want), 0u) << "the CPU's FMA chain, bit for bit";
      }
    }
}

TEST(CudaKernels, Conv1dBackwardWeightsMatchesCpu) {
  SB_SKIP_WITHOUT_CUDA(kComparedOnGpu);
  uint64_t key = 300;
  for (const ConvCase& c : kConvCases) {
    SCOPED_TRACE(describe(c));
    const gpu::ConvDims d{c.S, c.B, c.cin, c.cout, c.K, c.lin};
    const int lout = d.lout();
    const size_t in_seed = size_t(c.B) * c.cin * c.lin, out_seed = size_t(c.B) * c.cout * lout;
    const std::vector<float> dout = random_floats(c.S * out_seed, ++key);
    const std::vector<float> in = random_floats(c.S * in_seed, ++key);
    const size_t w_size = size_t(c.cout) * c.cin * c.K, stride = w_size + c.cout + 3;  // gradient buffer with slack
    DeviceArray<float> d_dout(dout), d_in(in), d_grads(c.S * stride);
    d_grads.poison();
    gpu::conv1d_backward_weights(d, d_dout.data(), d_in.data(), in_seed, d_grads.data(), d_grads.data() + w_size,
                                 stride, nullptr);
    const std::vector<float> got = d_grads.download();

    std::vector<float> want_w(c.S * w_size), want_b(size_t(c.S) * c.cout), got_w, got_b;
    for (int s = 0; s < c.S; ++s) {
      ActBuffer g(c.cout, lout, 0, c.B), x(c.cin, c.lin, 1, c.B);
      g.set(dout.data() + s * out_seed);
      x.set(in.data() + s * in_seed);
      conv1d_backward_weights(g.v, x.v, c.K, want_w.data() + s * w_size, want_b.data() + size_t(s) * c.cout);
      got_w.insert(got_w.end(), got.begin() + s * stride, got.begin() + s * stride + w_size);
      got_b.insert(got_b.end(), got.begin() + s * stride + w_size, got.begin() + s * stride + w_size + c.cout);
      for (size_t i = w_size + c.cout; i < stride; ++i)
        EXPECT_TRUE(std::isnan(got[s * stride + i])) << "wrote past the seed's gradient";
    }
    EXPECT_EQ(count_nan(got_w) + count_nan(got_b), 0u);
    EXPECT_LE(rel_error(got_w, want_w), 5e-5);
    EXPECT_LE(rel_error(got_b, want_b), 5e-5);
  }
}

struct LinearCase {
  int S, B, F, M;
};
const LinearCase kLinearCases[] = {{3, 7, 125, 10}, {2, 100, 125, 10}, {2, 5, 1280, 10}, {1, 1, 3, 2}, {4, 33, 50, 7}};

std::string describe(const LinearCase& c) {
  return "S=" + std::to_string(c.S) + " B=" + std::to_string(c.B) + " F=" + std::to_string(c.F) +
         " M=" + std::to_string(c.M);
}

// (B, W) sample-major <-> (W, ld) feature-major with zero padding columns, the CPU twins' layout.
std::vector<float> to_feature_major(const float* sm, int B, int W) {
  const int ld = padded_batch(B);
  std::vector<float> fm(size_t(W) * ld, 0.0f);
  for (int b = 0; b < B; ++b)
    for (int f = 0; f < W; ++f) fm[size_t(f) * ld + b] = sm[size_t(b) * W + f];
  return fm;
}
void from_feature_major(const std::vector<float>& fm, int B, int W, float* sm) {
  const int ld = padded_batch(B);
  for (int b = 0; b < B; ++b)
    for (int f = 0; f < W; ++f) sm[size_t(b) * W + f] = fm[size_t(f) * ld + b];
}

TEST(CudaKernels, LinearForwardAndBackwardMatchCpu) {
  SB_SKIP_WITHOUT_CUDA(kComparedOnGpu);
  uint64_t key = 400;
  for (const LinearCase& c : kLinearCases) {
    SCOPED_TRACE(describe(c));
    const gpu::LinearDims d{c.S, c.B, c.F, c.M};
    const size_t in_seed = size_t(c.B) * c.F, out_seed = size_t(c.B) * c.M, w_size = size_t(c.M) * c.F;
    const int ld = padded_batch(c.B);
    const std::vector<float> in = random_floats(c.S * in_seed, ++key), dout = random_floats(c.S * out_seed, ++key);
    const std::vector<float> mask = mask_values(c.S * in_seed, ++key);
    const LayerParams lp(c.S, w_size, c.M, ++key);
    DeviceArray<float> d_in(in), d_dout(dout), d_mask(mask), d_params(lp.host);
    DeviceArray<float> d_out(c.S * out_seed), d_grads(c.S * lp.stride), d_din(c.S * in_seed), d_din_masked(c.S * in_seed);
    d_out.poison(), d_grads.poison(), d_din.poison(), d_din_masked.poison();
    gpu::linear_forward(d, d_in.data(), in_seed, d_params.data(), d_params.data() + w_size, lp.stride, d_out.data(),
                        nullptr);
    gpu::linear_backward_weights(d, d_dout.data(), d_in.data(), d_grads.data(), d_grads.data() + w_size, lp.stride,
                                 nullptr);
    gpu::linear_backward_input(d, d_dout.data(), d_params.data(), lp.stride, nullptr, d_din.data(), nullptr);
    gpu::linear_backward_input(d, d_dout.data(), d_params.data(), lp.stride, d_mask.data(), d_din_masked.data(), nullptr);
    const std::vector<float> out = d_out.download(), grads = d_grads.download(), din = d_din.download(),
                             din_masked = d_din_masked.download();

    std::vector<float> want_out(c.S * out_seed), want_din(c.S * in_seed), want_masked(c.S * in_seed);
    std::vector<float> want_w(c.S * w_size), want_b(size_t(c.S) * c.M), got_w, got_b;
    for (int s = 0; s < c.S; ++s) {
      const std::vector<float> x = to_feature_major(in.data() + s * in_seed, c.B, c.F);
      const std::vector<float> g = to_feature_major(dout.data() + s * out_seed, c.B, c.M);
      std::vector<float> y(size_t(c.M) * ld), dx(size_t(c.F) * ld);
      linear_forward(lp.w(s), lp.b(s), c.M, c.F, x.data(), ld, y.data());
      from_feature_major(y, c.B, c.M, want_out.data() + s * out_seed);
      linear_backward_weights(g.data(), x.data(), c.M, c.F, ld, want_w.data() + s * w_size,
                              want_b.data() + size_t(s) * c.M);
      linear_backward_input(lp.w(s), g.data(), c.M, c.F, ld, dx.data());
      from_feature_major(dx, c.B, c.F, want_din.data() + s * in_seed);
      got_w.insert(got_w.end(), grads.begin() + s * lp.stride, grads.begin() + s * lp.stride + w_size);
      got_b.insert(got_b.end(), grads.begin() + s * lp.stride + w_size, grads.begin() + s * lp.stride + w_size + c.M);
    }
    for (size_t i = 0; i < want_din.size(); ++i) want_masked[i] = mask[i] <= 0.0f ? 0.0f : want_din[i];

    EXPECT_EQ(count_nan(out) + count_nan(din) + count_nan(din_masked) + count_nan(got_w) + count_nan(got_b), 0u);
    EXPECT_LE(rel_error(out, want_out), 1e-5);
    EXPECT_LE(rel_error(din, want_din), 1e-5);
    EXPECT_LE(rel_error(din_masked, want_masked), 1e-5);
    EXPECT_LE(rel_error(got_w, want_w), 5e-5);
    EXPECT_LE(rel_error(got_b, want_b), 5e-5);
    if (cpu_fuses_multiply_add()) {
      EXPECT_EQ(count_unequal(out, want_out), 0u) << "forward: the CPU's FMA chain, bit for bit";
      EXPECT_EQ(count_unequal(din, want_din), 0u) << "input gradient: the CPU's FMA chain, bit for bit";
    }
  }
}

TEST(CudaKernels, SoftmaxCrossEntropyMatchesCpu) {
  SB_SKIP_WITHOUT_CUDA(kComparedOnGpu);
  struct Case {
    int S, B, K;
  };
  uint64_t key = 500;
  for (const Case c : {Case{3, 7, 10}, Case{2, 100, 10}, Case{1, 300, 10}, Case{2, 5, 3}, Case{4, 1, 10}})
    for (const bool weighted : {false, true})
      for (const bool shared_labels : {false, true}) {
        SCOPED_TRACE("S=" + std::to_string(c.S) + " B=" + std::to_string(c.B) + " K=" + std::to_string(c.K) +
                     (weighted ? " mu" : "") + (shared_labels ? " shared labels" : ""));
        const size_t SB = size_t(c.S) * c.B;
        std::vector<float> logits = random_floats(SB * c.K, ++key, -4.0f, 4.0f);
        for (int j = 0; j < c.K; ++j) logits[j] *= 1e4f;  // one sample with huge logits: log-sum-exp must not overflow
        if (c.B > 2) logits[size_t(2) * c.K + 1] = logits[size_t(2) * c.K];  // a tie: the first maximum wins
        const std::vector<int32_t> labels = random_ints(shared_labels ? c.B : SB, ++key, c.K);
        const std::vector<float> mu = random_floats(SB, ++key, 0.0f, 2.0f / c.B);
        DeviceArray<float> d_logits(logits), d_mu(mu), d_dlogits(SB * c.K), d_loss(c.S), d_lps(SB);
        DeviceArray<int32_t> d_labels(labels), d_correct(size_t(c.S) * c.K);
        DeviceArray<int8_t> d_pred(SB);
        d_dlogits.poison(), d_loss.poison(), d_lps.poison(), d_correct.poison(), d_pred.poison();
        gpu::SoftmaxCrossEntropyArgs a;
        a.S = c.S, a.B = c.B, a.K = c.K, a.logits = d_logits.data();
        a.labels = d_labels.data(), a.label_seed_stride = shared_labels ? 0 : c.B;
        if (weighted) a.mu = d_mu.data(), a.mu_seed_stride = c.B;
        a.dlogits = d_dlogits.data(), a.loss = d_loss.data(), a.loss_per_sample = d_lps.data();
        a.correct = d_correct.data(), a.pred = d_pred.data();
        gpu::softmax_cross_entropy(a, nullptr);
        const std::vector<float> dlogits = d_dlogits.download(), loss = d_loss.download(), lps = d_lps.download();
        const std::vector<int32_t> correct = d_correct.download();
        const std::vector<int8_t> pred = d_pred.download();
        std::vector<int8_t> want_pred(SB);

        std::vector<float> want_dlogits(SB * c.K), want_loss(c.S), want_lps(SB);
        std::vector<int32_t> want_correct(size_t(c.S) * c.K, 0);
        for (int s = 0; s < c.S; ++s) {
          const int32_t* y = labels.data() + (shared_labels ? 0 : size_t(s) * c.B);
          const float* z = logits.data() + size_t(s) * c.B * c.K;
          want_loss[s] = softmax_cross_entropy(z, y, weighted ? mu.data() + size_t(s) * c.B : nullptr, c.B, c.K,
                                               want_dlogits.data() + size_t(s) * c.B * c.K,
                                               want_lps.data() + size_t(s) * c.B);
          for (int i = 0; i < c.B; ++i) {
            const float* zi = z + size_t(i) * c.K;
            const int arg = predicted_class(zi, c.K);  // first maximum
            want_pred[size_t(s) * c.B + i] = int8_t(arg);
            if (arg == y[i]) ++want_correct[size_t(s) * c.K + y[i]];
          }
        }
        EXPECT_EQ(count_nan(dlogits) + count_nan(loss) + count_nan(lps), 0u);
        EXPECT_LE(rel_error(dlogits, want_dlogits), 1e-5);
        EXPECT_LE(rel_error(lps, want_lps), 1e-5);
        for (int s = 0; s < c.S; ++s) EXPECT_NEAR(loss[s], want_loss[s], 1e-5 * (1.0 + std::fabs(want_loss[s])));
        EXPECT_EQ(correct, want_correct);
        EXPECT_EQ(pred, want_pred);
      }
}

TEST(CudaKernels, SoftmaxCrossEntropyOutputsAreOptional) {
  SB_SKIP_WITHOUT_CUDA(kComparedOnGpu);
  const int S = 2, B = 9, K = 10;
  const std::vector<float> logits = random_floats(size_t(S) * B * K, 77);
  const std::vector<int32_t> labels = random_ints(size_t(S) * B, 78, K);
  DeviceArray<float> d_logits(logits), d_loss(S);
  DeviceArray<int32_t> d_labels(labels);
  d_loss.poison();
  gpu::SoftmaxCrossEntropyArgs a;
  a.S = S, a.B = B, a.K = K, a.logits = d_logits.data(), a.labels = d_labels.data(), a.label_seed_stride = B;
  a.loss = d_loss.data();  // evaluation: the loss only
  gpu::softmax_cross_entropy(a, nullptr);
  const std::vector<float> loss = d_loss.download();
  std::vector<float> dz(size_t(B) * K);
  for (int s = 0; s < S; ++s)
    EXPECT_NEAR(loss[s],
                softmax_cross_entropy(logits.data() + size_t(s) * B * K, labels.data() + size_t(s) * B, nullptr, B, K,
                                      dz.data()),
                1e-5);
}

TEST(CudaKernels, TrueLogitGradientIsOneHot) {
  SB_SKIP_WITHOUT_CUDA(kComparedOnGpu);
  const int S = 3, B = 11, K = 10;
  const std::vector<int32_t> labels = random_ints(B, 79, K);  // shared by the seeds
  DeviceArray<int32_t> d_labels(labels);
  DeviceArray<float> d_out(size_t(S) * B * K);
  d_out.poison();
  gpu::true_logit_gradient(S, B, K, d_labels.data(), 0, d_out.data(), nullptr);
  const std::vector<float> out = d_out.download();
  for (int s = 0; s < S; ++s)
    for (int b = 0; b < B; ++b)
      for (int j = 0; j < K; ++j) ASSERT_EQ(out[(size_t(s) * B + b) * K + j], j == labels[b] ? 1.0f : 0.0f);
}

TEST(CudaKernels, AdamMatchesCpuBitForBit) {
  SB_SKIP_WITHOUT_CUDA(kComparedOnGpu);
  const size_t n = 3 * 1001;  // (S, P) with a ragged P
  const AdamConfig cfg;
  std::vector<float> p = random_floats(n, 600), m(n, 0.0f), v(n, 0.0f);
  DeviceArray<float> d_p(p), d_m(m), d_v(v), d_g(n);
  DeviceArray<gpu::AdamStepScalars> d_scalars(1);
  for (int t = 1; t <= 3; ++t) {
    const float lr = t == 2 ? 3e-3f : 1e-2f;
    const std::vector<float> g = random_floats(n, 600 + t, -0.1f, 0.1f);
    d_g.upload(g);
    d_scalars.upload({gpu::adam_step_scalars(lr, cfg.beta1, cfg.beta2, t)});
    gpu::adam_update(d_p.data(), d_g.data(), d_m.data(), d_v.data(), n, cfg.beta1, cfg.beta2, cfg.eps,
                     d_scalars.data(), nullptr);
    adam_step(p.data(), g.data(), m.data(), v.data(), n, lr, cfg.beta1, cfg.beta2, cfg.eps, t);
    SCOPED_TRACE("step " + std::to_string(t));
    EXPECT_EQ(count_unequal(d_p.download(), p), 0u);
    EXPECT_EQ(count_unequal(d_m.download(), m), 0u);
    EXPECT_EQ(count_unequal(d_v.download(), v), 0u);
  }
}

// Each seed's own training set (D_sp, seed stride N * L) and one set shared by the seeds (D_base, stride 0).
TEST(CudaKernels, GatherBatchRows) {
  SB_SKIP_WITHOUT_CUDA(kComparedOnGpu);
  const int S = 3, B = 7, N = 11, L = 40;
  const std::vector<float> x = random_floats(size_t(S) * N * L, 700);
  const std::vector<int32_t> labels = random_ints(N, 701, 10);
  std::vector<int32_t> index = random_ints(size_t(S) * B, 702, N);
  index[4] = N;  // a row outside the set: NaN inputs, label -1
  for (const bool per_seed : {true, false}) {
    SCOPED_TRACE(per_seed ? "per seed" : "shared");
    const size_t stride = per_seed ? size_t(N) * L : 0;
    DeviceArray<float> d_x(x), d_xb(size_t(S) * B * L);
    DeviceArray<int32_t> d_labels(labels), d_index(index), d_yb(size_t(S) * B);
    d_xb.poison(), d_yb.poison();
    gpu::gather_batch(S, B, N, L, d_x.data(), stride, d_labels.data(), d_index.data(), d_xb.data(), d_yb.data(),
                      nullptr);
    const std::vector<float> xb = d_xb.download();
    const std::vector<int32_t> yb = d_yb.download();
    for (int s = 0; s < S; ++s)
      for (int b = 0; b < B; ++b) {
        const int32_t row = index[size_t(s) * B + b];
        if (row == N) {
          EXPECT_EQ(yb[size_t(s) * B + b], -1);
          for (int p = 0; p < L; ++p) EXPECT_TRUE(std::isnan(xb[(size_t(s) * B + b) * L + p]));
          continue;
        }
        EXPECT_EQ(yb[size_t(s) * B + b], labels[row]);
        for (int p = 0; p < L; ++p)
          ASSERT_EQ(xb[(size_t(s) * B + b) * L + p], x[s * stride + size_t(row) * L + p]) << s << " " << b << " " << p;
      }
  }
}

TEST(CudaKernels, LaunchersRejectBadShapes) {
  SB_SKIP_WITHOUT_CUDA(kComparedOnGpu);
  DeviceArray<float> buf(64);
  float* p = buf.data();
  EXPECT_THROW(gpu::conv1d_forward({1, 1, 1, 1, 5, 2}, p, 0, p, p, 0, true, p, nullptr), std::invalid_argument);
  EXPECT_THROW(gpu::conv1d_forward({0, 1, 1, 1, 3, 8}, p, 0, p, p, 0, true, p, nullptr), std::invalid_argument);
  EXPECT_THROW(gpu::conv1d_forward({1, 1, 1, 1, 3, 8}, nullptr, 0, p, p, 0, true, p, nullptr), std::invalid_argument);
  EXPECT_THROW(gpu::linear_forward({1, 0, 4, 2}, p, 0, p, p, 0, p, nullptr), std::invalid_argument);
  EXPECT_THROW(gpu::conv1d_forward({70000, 1, 1, 1, 3, 8}, p, 0, p, p, 0, true, p, nullptr), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------------------
// The backend.

std::unique_ptr<Backend> cuda_backend(const CudaBackendOptions& options = {}) {
  return make_cuda_kernels_backend(2, options);
}

// Ten steps on the CPU and on the GPU agree (with the tame learning rate and Adam eps of cuda_test_util.h, and why).
TEST(CudaBackend, TenStepsMatchCpuC25) {
  SB_SKIP_WITHOUT_CUDA(kComparedOnGpu);
  expect_ten_steps_match_cpu(*cuda_backend(), ConvBaseShape{25, 40, 10}, 3, 211, 37);
}

TEST(CudaBackend, TenStepsMatchCpuC256) {
  SB_SKIP_WITHOUT_CUDA(kComparedOnGpu);
  expect_ten_steps_match_cpu(*cuda_backend(), ConvBaseShape{256, 40, 10}, 1, 64, 8);
}

TEST(CudaBackend, OddShapesTrainLikeCpu) {
  SB_SKIP_WITHOUT_CUDA(kComparedOnGpu);
  expect_ten_steps_match_cpu(*cuda_backend(), ConvBaseShape{7, 23, 4}, 2, 50, 13);  // L 23 -> 11 -> 6 -> 3, 4 classes
}

TEST(CudaBackend, SameSeedTwiceIsBitwiseIdentical) {
  SB_SKIP_WITHOUT_CUDA(kComparedOnGpu);
  const Problem pr(ConvBaseShape{25, 40, 10}, 3, 300, 100, 10);
  expect_same_seed_twice_bitwise(*cuda_backend(), *cuda_backend(), pr);
}

TEST(CudaBackend, SeedResultsIndependentOfSeedCountStreamsAndGraphs) {
  SB_SKIP_WITHOUT_CUDA(kComparedOnGpu);
  const Problem pr(ConvBaseShape{25, 40, 10}, 5, 200, 50, 10);
  auto ref_backend = cuda_backend();
  const Trained ref = train(*ref_backend, pr, 1e-2f);
  struct Variant {
    const char* name;
    int S;
    CudaBackendOptions options;
  };
  CudaBackendOptions two_streams, per_seed, no_graphs, small_chunks;
  two_streams.streams = 2;
  per_seed.stream_per_seed = true;
  no_graphs.graphs = false;
  const Variant variants[] = {{"S=2", 2, {}},
                              {"S=1", 1, {}},
                              {"2 streams", 5, two_streams},
                              {"a stream per seed", 5, per_seed},
                              {"no graphs", 5, no_graphs},
                              {"2 streams, S=3", 3, two_streams}};
  const size_t P = pr.shape.num_params();
  for (const Variant& v : variants) {
    SCOPED_TRACE(v.name);
    auto be = cuda_backend(v.options);
    const Trained got = train(*be, pr.first(v.S), 1e-2f);
    EXPECT_EQ(std::memcmp(got.params.data(), ref.params.data(), size_t(v.S) * P * sizeof(float)), 0);
    for (size_t t = 0; t < pr.batches.size(); ++t)
      EXPECT_EQ(std::memcmp(got.losses.data() + t * v.S, ref.losses.data() + t * pr.S, size_t(v.S) * sizeof(float)), 0)
          << "step " << t;
  }
}

TEST(CudaBackend, PredictFeaturesSaliencyMatchCpu) {
  SB_SKIP_WITHOUT_CUDA(kComparedOnGpu);
  for (const int C : {25, 256}) {
    const ConvBaseShape shape{C, 40, 10};
    const int S = C == 25 ? 3 : 2, N = 23;
    const Problem pr(shape, S, N, 1, 0);
    const int L = shape.length, K = shape.classes, F = shape.feature_dim();
    auto cpu = make_backend("cpu", 2);
    cpu->reset(shape, S, pr.params.data(), AdamConfig{});
    for (const int chunk : {0, 7}) {  // one chunk, and ragged chunks of 7
      CudaBackendOptions options;
      options.eval_chunk = chunk;
      auto gpu = cuda_backend(options);
      gpu->reset(shape, S, pr.params.data(), AdamConfig{});
      for (const bool per_seed : {true, false}) {
        SCOPED_TRACE("C=" + std::to_string(C) + " chunk " + std::to_string(chunk) + (per_seed ? " per seed" : " shared"));
        const float* x = pr.x.data();  // shared: seed 0's rows
        std::vector<float> want(size_t(S) * N * F), got(want.size(), kNaN);
        cpu->predict(x, N, per_seed, want.data());
        gpu->predict(x, N, per_seed, got.data());
        EXPECT_LE(rel_error(got.data(), want.data(), size_t(S) * N * K), 1e-5) << "logits";
        EXPECT_EQ(count_nan(std::vector<float>(got.begin(), got.begin() + size_t(S) * N * K)), 0u);
        std::fill(got.begin(), got.end(), kNaN);
        cpu->features(x, N, per_seed, want.data());
        gpu->features(x, N, per_seed, got.data());
        EXPECT_EQ(count_nan(got), 0u);
        EXPECT_LE(rel_error(got, want), 1e-5) << "features";
        std::fill(got.begin(), got.end(), kNaN);
        cpu->saliency(x, pr.labels.data(), N, per_seed, want.data());
        gpu->saliency(x, pr.labels.data(), N, per_seed, got.data());
        EXPECT_LE(rel_error(got.data(), want.data(), size_t(S) * N * L), 1e-5) << "saliency";
        EXPECT_EQ(count_nan(std::vector<float>(got.begin(), got.begin() + size_t(S) * N * L)), 0u);
      }
    }
  }
}

// Periodic evaluation's scoring on the device (the fused CE kernel's counts, summed over chunks) equals the CPU's
// scoring of its logits: the forward sums are the CPU's, so every count is exact.
TEST(CudaBackend, EvalSetsMatchCpu) {
  SB_SKIP_WITHOUT_CUDA(kComparedOnGpu);
  const Problem pr(ConvBaseShape{25, 40, 10}, 3, 23, 1, 0);
  for (const int chunk : {0, 7}) {  // one chunk, and ragged chunks of 7
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    CudaBackendOptions options;
    options.eval_chunk = chunk;
    auto gpu = cuda_backend(options);
    expect_eval_sets_match_cpu(*gpu, pr, pr.N, 0);
  }
  expect_evaluation_sees_trained_params(*cuda_backend(CudaBackendOptions{}), 0);
}

// A second set_train_data drops the CUDA graphs captured on the first (they hold its buffers and N): training on
// other data afterwards gives the bits of the same run without graphs.
TEST(CudaBackend, NewTrainingDataAfterCapturedSteps) {
  SB_SKIP_WITHOUT_CUDA(kComparedOnGpu);
  const Problem first(ConvBaseShape{25, 40, 10}, 2, 60, 20, 4);
  Problem second(ConvBaseShape{25, 40, 10}, 2, 50, 20, 3);
  for (float& v : second.x) v *= 0.5f;  // other inputs, another N
  std::vector<float> want;
  for (const bool graphs : {false, true}) {
    CudaBackendOptions options;
    options.graphs = graphs;
    auto be = cuda_backend(options);
    be->reset(first.shape, first.S, first.params.data(), AdamConfig{});
    be->set_train_data(first.x.data(), first.labels.data(), first.N);
    for (const auto& rows : first.batches) be->train_step(rows.data(), first.B, 1e-2f, nullptr);  // captures
    be->set_train_data(second.x.data(), second.labels.data(), second.N);
    for (const auto& rows : second.batches) be->train_step(rows.data(), second.B, 1e-2f, nullptr);
    std::vector<float> got(first.params.size(), kNaN);
    be->get_params(got.data());
    if (!graphs) want = got;
    else EXPECT_EQ(count_unequal(got, want), 0u) << "a graph of the first training set was replayed";
  }
}

// D_sp and the shifted test sets made on the device from a kept D_base (kernels/spurious_cuda.h), the shared
// training set (one copy for every seed, seed groups on two streams, steps captured as graphs), load_params.
TEST(CudaBackend, KeptSetsMatchCpuTransform) {
  SB_SKIP_WITHOUT_CUDA(kComparedOnGpu);
  CudaBackendOptions options;
  options.streams = 2;
  expect_kept_sets_work(*cuda_backend(options), 1e-5);
}

TEST(CudaBackend, NamesAndErrors) {
  SB_SKIP_WITHOUT_CUDA(kComparedOnGpu);
  auto be = make_backend("cuda", 1);
  EXPECT_EQ(be->name(), "cuda");
  EXPECT_FALSE(be->device().empty());
  expect_rejects_bad_calls(*be);
}

}  // namespace

#else  // no CUDA compiler: nothing to test

TEST(CudaKernels, NotBuilt) { GTEST_SKIP() << "built without a CUDA compiler: no CUDA kernels or cuda backend"; }

#endif
