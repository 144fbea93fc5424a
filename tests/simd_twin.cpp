// The AVX2 twin of every test (tests/README.md). Development and CI machines are either AVX-512 Xeons or AVX2-only
// EPYCs, and the CPU reference rounds differently at the two levels (host/cpu/simd.h), so a test that holds on one
// kind of machine may fail on the other. CMake registers every test a second time as "avx2.<name>" with
// SB_SIMD_TWIN=avx2 in its environment; this global environment then switches the process (and, through SB_SIMD,
// every bench_spurious it starts) to the AVX2 kernels before the first test. On a CPU without AVX-512 the plain run
// already uses them, so the twin skips.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "cpu/simd.h"

namespace {

class SimdTwin : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* twin = std::getenv("SB_SIMD_TWIN");
    if (!twin) return;
    ASSERT_EQ(std::string(twin), "avx2") << "SB_SIMD_TWIN names the level to force; only avx2 is known";
    if (!sb::simd_level_supported(sb::SimdLevel::avx512)) {
      // A skip in a global environment leaves gtest's summary at "PASSED"; this line is what ctest's skip
      // pattern (gtest_discover_tests: "[  SKIPPED ]") recognises, so the twin is reported as skipped.
      std::printf("[  SKIPPED ] AVX2 twin: this CPU has no AVX-512, the plain run already used the AVX2 kernels\n");
      GTEST_SKIP() << "this CPU has no AVX-512: the plain run of this test already used the AVX2 kernels";
    }
    ::setenv("SB_SIMD", "avx2", 1);
    sb::set_simd_level(sb::SimdLevel::avx2);
    ASSERT_EQ(sb::simd_level(), sb::SimdLevel::avx2);
  }
};

const ::testing::Environment* const kSimdTwin = ::testing::AddGlobalTestEnvironment(new SimdTwin);

}  // namespace
