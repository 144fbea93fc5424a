// Where tests find the source tree and the bench_spurious binary: the paths compiled in by CMake, unless
// the environment overrides them (SB_SOURCE_DIR, SB_BENCH_SPURIOUS) — for binaries run on another machine,
// as scripts/gpu-check.sh does.
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/philox.h"

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

// A command's exit status (-1 if it did not exit) and what it wrote.
struct SbRun {
  int status;
  std::string out, err;
};

// Runs `cmd` through the shell in folder `dir`, stdin from /dev/null, stdout and stderr kept in dir/stdout, dir/stderr.
inline SbRun sb_run_in(const std::filesystem::path& dir, const std::string& cmd) {
  const std::string line = "cd '" + dir.string() + "' && " + cmd + " >stdout 2>stderr </dev/null";
  const int rc = std::system(line.c_str());
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, sb_slurp(dir / "stdout"), sb_slurp(dir / "stderr")};
}

// n elements of the canonical MNIST-1D array `name` (data/mnist1d/, raw little-endian).
template <class T>
std::vector<T> sb_read_canonical(const std::string& name, size_t n) {
  const std::string path = sb_source_dir() + "/data/mnist1d/" + name;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<T> v(n);
  in.read(reinterpret_cast<char*>(v.data()), std::streamsize(n * sizeof(T)));
  if (in.gcount() != std::streamsize(n * sizeof(T))) throw std::runtime_error("short read " + path);
  return v;
}

// N x L standard-normal inputs from stream `key`: deterministic and non-trivial (so "unchanged" means
// bit-identical to something non-zero).
inline std::vector<float> sb_normal_inputs(int N, int L, uint64_t key) {
  std::vector<float> x(size_t(N) * L);
  sb::RngStream r(key, 0, sb::Purpose::init_weights);
  for (auto& v : x) v = r.normal();
  return x;
}

// N labels cycling through 0..classes-1 in a shuffled order.
inline std::vector<int32_t> sb_cyclic_labels(int N, int classes) {
  std::vector<int32_t> y(static_cast<size_t>(N));
  for (int i = 0; i < N; ++i) y[size_t(i)] = (i * 7 + i / classes) % classes;
  return y;
}
