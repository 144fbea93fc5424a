// The split-R path of the conv weight gradients (kernels/batched_gemm.cuh, launch_batched_gemm with a workspace):
// against the CPU twin conv1d_backward_weights (host/cpu/conv1d.h) at shapes the split rule gives 1, 2, a few and
// many splits, ragged last chunks and the cap on splits included; every output and the workspace's slack poisoned
// with NaN first; a seed's bits the same with S = 1 and S = 7 and run to run; the workspace size 0 where nothing is
// split.
// Without a device every test skips; without a CUDA compiler the file holds one skipping test.
#include <gtest/gtest.h>

#include "core/backend.h"
#include "cpu/conv1d.h"

#if SB_HAVE_CUDA

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/philox.h"
#include "cuda/device_memory.h"
#include "cuda_test_util.h"
#include "kernels/conv1d.h"
#include "study/backends.h"

namespace {

using namespace sb;
using namespace sb::test_util;
using gpu::DeviceArray;

// What this file compares with the CPU, for the skip message.
constexpr char kComparedOnGpu[] = "the split weight-gradient kernels are";

bool bitwise_equal(const float* a, const float* b, size_t n) { return std::memcmp(a, b, n * sizeof(float)) == 0; }


struct SplitCase {
  const char* what;
  int S, B, cin, cout, K, lin;
  int splits;  // what the rule gives: M = Cout, N = Cin*K + 1, R = B*Lout
};
// R = B*Lout; chunks of 128 (8 r-tiles of 16), at most 64 of them; no split at >= 16 tiles of 32 x 32 or R <= 128.
const SplitCase kSplitCases[] = {
    {"short R: one chain", 2, 5, 25, 25, 3, 19, 1},                   // R = 50
    {"R = one chunk exactly", 2, 16, 4, 5, 3, 15, 1},                 // R = 16 * 8 = 128
    {"wide grid: C=256 conv2 (200 tiles)", 2, 30, 256, 256, 3, 19, 1},  // R = 300, 8 x 25 tiles
    {"two splits, ragged (128 + 72)", 3, 20, 25, 25, 3, 19, 2},       // R = 200
    {"three splits, last of 3 r", 2, 37, 17, 33, 3, 13, 3},           // R = 259, 2 x 2 tiles
    {"ConvBase conv3 at B=100", 2, 100, 25, 25, 3, 10, 4},            // R = 500
    {"ConvBase conv1 at B=100 (14 x 128 + 108)", 3, 100, 1, 25, 5, 40, 15},  // R = 1900
    {"C=256 conv1 (8 tiles)", 2, 40, 1, 256, 5, 40, 6},               // R = 760
    {"capped: 60 chunks of 160", 2, 500, 1, 3, 5, 40, 60},            // R = 9500 > 64 * 128
};

std::string describe(const SplitCase& c) {
  return std::string(c.what) + ": S=" + std::to_string(c.S) + " B=" + std::to_string(c.B) +
         " Cin=" + std::to_string(c.cin) + " Cout=" + std::to_string(c.cout) + " K=" + std::to_string(c.K) +
         " Lin=" + std::to_string(c.lin);
}

// Inputs of one case and the gradient buffer (S, stride) the kernel writes: dw (Cout, Cin, K), dbias (Cout), then
// 3 floats of slack per seed that must stay NaN.
struct SplitProblem {
  explicit SplitProblem(const SplitCase& c, uint64_t key)
      : d{c.S, c.B, c.cin, c.cout, c.K, c.lin},
        in_seed(size_t(c.B) * c.cin * c.lin),
        out_seed(size_t(c.B) * c.cout * d.lout()),
        w_size(size_t(c.cout) * c.cin * c.K),
        stride(w_size + c.cout + 3),
        dout(random_floats(c.S * out_seed, key)),
        in(random_floats(c.S * in_seed, key + 1)) {}
  // Seed s alone as a one-seed problem.
  SplitProblem seed(int s) const {
    SplitProblem q = *this;
    q.d.S = 1;
    q.dout.assign(dout.begin() + s * out_seed, dout.begin() + (s + 1) * out_seed);
    q.in.assign(in.begin() + s * in_seed, in.begin() + (s + 1) * in_seed);
    return q;
  }
  // The gradients (S, stride) from the GPU, with a workspace (and 16 floats of NaN slack after it) or without.
  std::vector<float> run(bool with_workspace, size_t* workspace_floats = nullptr) const {
    DeviceArray<float> d_dout(dout), d_in(in), d_grads(size_t(d.S) * stride);
    d_grads.poison();
    const size_t ws = gpu::conv1d_backward_weights_workspace(d);
    if (workspace_floats) *workspace_floats = ws;
    DeviceArray<float> d_ws(ws + 16);
    d_ws.poison();
    if (with_workspace)
      gpu::conv1d_backward_weights(d, d_dout.data(), d_in.data(), in_seed, d_grads.data(), d_grads.data() + w_size,
                                   stride, nullptr, d_ws.data());
    else
      gpu::conv1d_backward_weights(d, d_dout.data(), d_in.data(), in_seed, d_grads.data(), d_grads.data() + w_size,
                                   stride, nullptr);
    const std::vector<float> slack = d_ws.download();
    for (size_t i = ws; i < slack.size(); ++i) EXPECT_TRUE(std::isnan(slack[i])) << "wrote past the workspace";
    return d_grads.download();
  }
  gpu::ConvDims d;
  size_t in_seed, out_seed, w_size, stride;
  std::vector<float> dout, in;
};

TEST(CudaConv1dSplit, WorkspaceSizeFollowsTheSplitRule) {
  // Host-only arithmetic, but the function lives in the CUDA library: it runs wherever that is built.
  for (const SplitCase& c : kSplitCases) {
    SCOPED_TRACE(describe(c));
    const gpu::ConvDims d{c.S, c.B, c.cin, c.cout, c.K, c.lin};
    const size_t per_split = size_t(c.cout) * (size_t(c.cin) * c.K + 1);
    EXPECT_EQ(gpu::conv1d_backward_weights_workspace(d), c.splits > 1 ? size_t(c.S) * c.splits * per_split : 0u);
    gpu::ConvDims one = d;
    one.S = 1;
    EXPECT_EQ(gpu::conv1d_backward_weights_workspace(d), size_t(c.S) * gpu::conv1d_backward_weights_workspace(one));
  }
  // ConvBase at B = 100, C = 25: conv1 15 splits, conv2 8, conv3 4; at C = 256 conv2 and conv3 are not split.
  EXPECT_EQ(gpu::conv1d_backward_weights_workspace({1, 100, 1, 25, 5, 40}), 15u * 25 * 6);
  EXPECT_EQ(gpu::conv1d_backward_weights_workspace({1, 100, 25, 25, 3, 19}), 8u * 25 * 76);
  EXPECT_EQ(gpu::conv1d_backward_weights_workspace({1, 100, 25, 25, 3, 10}), 4u * 25 * 76);
  EXPECT_EQ(gpu::conv1d_backward_weights_workspace({1, 100, 256, 256, 3, 19}), 0u);
  EXPECT_EQ(gpu::conv1d_backward_weights_workspace({1, 100, 256, 256, 3, 10}), 0u);
  EXPECT_THROW(gpu::conv1d_backward_weights_workspace({0, 100, 25, 25, 3, 10}), std::invalid_argument);
}

TEST(CudaConv1dSplit, MatchesCpu) {
  SB_SKIP_WITHOUT_CUDA(kComparedOnGpu);
  uint64_t key = 900;
  for (const SplitCase& c : kSplitCases) {
    SCOPED_TRACE(describe(c));
    const SplitProblem pr(c, key += 2);
    const std::vector<float> got = pr.run(true);
    std::vector<float> want_w(pr.w_size), want_b(size_t(c.cout));
    for (int s = 0; s < c.S; ++s) {
      ActBuffer g(c.cout, pr.d.lout(), 0, c.B), x(c.cin, c.lin, 1, c.B);
      g.set(pr.dout.data() + s * pr.out_seed);
      x.set(pr.in.data() + s * pr.in_seed);
      conv1d_backward_weights(g.v, x.v, c.K, want_w.data(), want_b.data());
      const float* seed = got.data() + s * pr.stride;
      const std::vector<float> got_w(seed, seed + pr.w_size), got_b(seed + pr.w_size, seed + pr.w_size + c.cout);
      EXPECT_LE(rel_error(got_w, want_w), 5e-5) << "seed " << s << " dw";
      EXPECT_LE(rel_error(got_b, want_b), 5e-5) << "seed " << s << " dbias";
      for (size_t i = pr.w_size + c.cout; i < pr.stride; ++i)
        EXPECT_TRUE(std::isnan(seed[i])) << "seed " << s << ": wrote past the seed's gradient";
    }
  }
}

TEST(CudaConv1dSplit, SeedBitsIndependentOfSeedCountAndRepeatable) {
  SB_SKIP_WITHOUT_CUDA(kComparedOnGpu);
  uint64_t key = 1900;
  for (const SplitCase& base : kSplitCases) {
    if (base.B * base.cin > 4000) continue;  // the widest cases add time, not coverage
    SplitCase c = base;
    c.S = 7;
    SCOPED_TRACE(describe(c));
    const SplitProblem pr(c, key += 2);
    const std::vector<float> all = pr.run(true), again = pr.run(true);
    EXPECT_TRUE(bitwise_equal(all.data(), again.data(), all.size())) << "two runs differ";
    for (const int s : {0, 3, 6}) {
      const std::vector<float> alone = pr.seed(s).run(true);
      EXPECT_TRUE(bitwise_equal(alone.data(), all.data() + s * pr.stride, pr.stride)) << "seed " << s << ": S=1 vs S=7";
    }
    if (c.splits == 1) {  // no split: the workspace changes nothing
      const std::vector<float> plain = pr.run(false);
      EXPECT_TRUE(bitwise_equal(plain.data(), all.data(), all.size())) << "with vs without workspace";
    }
  }
}

}  // namespace

#else

TEST(CudaConv1dSplit, NotBuilt) { GTEST_SKIP() << "built without a CUDA compiler: no CUDA kernels"; }

#endif
