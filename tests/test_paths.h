// Where tests find the source tree and the bench_spurious binary: the paths compiled in by CMake, unless
// the environment overrides them (SB_SOURCE_DIR, SB_BENCH_SPURIOUS) — for binaries run on another machine,
// as scripts/gpu-check.sh does.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

inline std::string sb_env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}
inline std::string sb_source_dir() { return sb_env_or("SB_SOURCE_DIR", SB_SOURCE_DIR); }
inline std::string sb_bench_spurious() { return sb_env_or("SB_BENCH_SPURIOUS", SB_BENCH_SPURIOUS); }

// A fresh folder for the running test: TMPDIR/<prefix>_<pid>_<test name>.
inline std::filesystem::path sb_scratch_dir(const std::string& prefix) {
  std::filesystem::path p = std::filesystem::temp_directory_path() /
                            (prefix + "_" + std::to_string(::getpid()) + "_" +
                             ::testing::UnitTest::GetInstance()->current_test_info()->name());
  std::filesystem::create_directories(p);
  return p;
}

inline std::string sb_slurp(const std::filesystem::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}
