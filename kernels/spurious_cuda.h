// Batched noise injection (study.md §1.2, issue 3): D_sp and the aligned / conflicting test sets of
// many seeds at once, built on the device. The CPU twin is host/cpu/spurious.h; the kernels read the same
// Philox sub-streams in the same order (see the draw-order comment there), so for every seed index:
//   - which samples get the feature and which class's block (planted_class) match the CPU exactly;
//   - the noise values match up to the device's logf/cosf (Box-Muller), which may differ from glibc by
//     an ulp or two: outputs agree to about 1e-6 relative (tests use 1e-5 * max(1, |x|)).
//     Exception: a rejection-sampling attempt z = mean + sd * normal() within an ulp of 0 may be
//     accepted on one side and rejected on the other; that unit's later draws then differ (per draw,
//     a chance of about 1e-8 with the default noise).
// Seed index s0 + s of a batch gets exactly what a batch of one seed s0 + s gets: nothing depends on S.
//
// A plain C++ header (no CUDA types), so host code and g++-compiled tests can include it. Only linked
// in builds with a CUDA compiler (SB_HAVE_CUDA).
#pragma once
#include <cstdint>
#include <vector>

#include "core/spurious_config.h"

namespace sb {

// ---- Device-pointer entry points: asynchronous on `stream` (a cudaStream_t as void*; nullptr is the
// legacy default stream). x (N, L) clean inputs and labels (N) are shared by the S seeds; the outputs
// are out (S, N, L) and planted (S, N), row s being seed index s0 + s. Every element of out and planted
// is written. Throw std::invalid_argument (config as validate(), negative sizes, null pointers, seed
// indices past 2^32, L > max_spurious_cuda_length) before any CUDA call, std::runtime_error on a CUDA
// error. Precondition: every label is in [0, cfg.classes) -- the device cannot throw, so check the labels
// once on the host (the host wrappers below do); an out-of-range label is never planted in D_sp nor in
// the aligned set (planted -1, row left clean).

// D_sp: as plant_spurious_feature for each seed. Uses a stream-ordered scratch buffer of about
// (S + 1) * N * 4 bytes (cudaMallocAsync) when p > 0.
void plant_spurious_feature_cuda(const SpuriousConfig& cfg, const float* d_x, const int32_t* d_labels, int N, int L,
                                 uint64_t base_seed, uint32_t s0, int S, float* d_out, int32_t* d_planted,
                                 void* stream);
// Aligned test set: as make_test_aligned for each seed.
void make_test_aligned_cuda(const SpuriousConfig& cfg, const float* d_x, const int32_t* d_labels, int N, int L,
                            uint64_t base_seed, uint32_t s0, int S, float* d_out, int32_t* d_planted, void* stream);
// Conflicting test set: as make_test_conflicting for each seed.
void make_test_conflicting_cuda(const SpuriousConfig& cfg, const float* d_x, const int32_t* d_labels, int N, int L,
                                uint64_t base_seed, uint32_t s0, int S, float* d_out, int32_t* d_planted,
                                void* stream);

// One of the three above by kind (train: plant_spurious_feature_cuda), as make_spurious_set in cpu/spurious.h.
void make_spurious_set_cuda(SpuriousSetKind kind, const SpuriousConfig& cfg, const float* d_x, const int32_t* d_labels,
                            int N, int L, uint64_t base_seed, uint32_t s0, int S, float* d_out, int32_t* d_planted,
                            void* stream);

// Longest sequence the kernels take (a block of rows is staged in 32 KB of shared memory).
constexpr int max_spurious_cuda_length = 8192;

// ---- Host-pointer wrappers (tests, tools): copy x and labels in, run on the default stream, copy back.
// Check the labels like the CPU functions (std::invalid_argument). Before the kernels run, the device
// outputs are poisoned (x: NaN, planted: 0x80808080), so anything a kernel fails to write shows up.
struct SpuriousBatch {
  int S = 0, N = 0, L = 0;
  std::vector<float> x;                // (S, N, L)
  std::vector<int32_t> planted_class;  // (S, N): class whose block was planted into the row, or -1
  float kernel_ms = 0.0f;              // device time of the build alone (CUDA events), without copies
};

SpuriousBatch plant_spurious_feature_cuda_host(const SpuriousConfig& cfg, const float* x, const int32_t* y, int N,
                                               int L, uint64_t base_seed, uint32_t s0, int S);
SpuriousBatch make_test_aligned_cuda_host(const SpuriousConfig& cfg, const float* x, const int32_t* y, int N, int L,
                                          uint64_t base_seed, uint32_t s0, int S);
SpuriousBatch make_test_conflicting_cuda_host(const SpuriousConfig& cfg, const float* x, const int32_t* y, int N,
                                              int L, uint64_t base_seed, uint32_t s0, int S);

}  // namespace sb
