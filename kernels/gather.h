// The training batch of every seed, gathered on the device: seed s's rows index[s][:] of its own training inputs.
// The CPU twin is the row copy at the top of CpuBackend::train_step (host/cpu/gather.cpp).
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/gpu_stream.h"

namespace sb::gpu {

// xb (S, B, L) = x[s][index[s][b]][:] with seed s's inputs (N, L) at x + s * x_seed_stride (N * L: each seed its own
// training set, D_sp; 0: one set shared by the seeds, D_base); yb (S, B) = labels[index[s][b]] with labels (N).
// A row outside [0, N) gives NaN inputs and label -1 (the backend validates rows on the host first).
void gather_batch(int S, int B, int N, int L, const float* x, size_t x_seed_stride, const int32_t* labels,
                  const int32_t* index, float* xb, int32_t* yb, Stream stream);

}  // namespace sb::gpu
