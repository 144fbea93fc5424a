// Where tests find the source tree and the bench_spurious binary: the paths compiled in by CMake, unless
// the environment overrides them (SB_SOURCE_DIR, SB_BENCH_SPURIOUS) — for binaries run on another machine,
// as scripts/gpu-check.sh does.
#pragma once
#include <cstdlib>
#include <string>

inline std::string sb_env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}
inline std::string sb_source_dir() { return sb_env_or("SB_SOURCE_DIR", SB_SOURCE_DIR); }
inline std::string sb_bench_spurious() { return sb_env_or("SB_BENCH_SPURIOUS", SB_BENCH_SPURIOUS); }
