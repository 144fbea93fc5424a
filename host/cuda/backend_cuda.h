// The CUDA backends (issue 3): "cuda" runs our kernels (kernels/), "cudnn" the cuDNN/cuBLAS baseline.
// Only compiled with a CUDA compiler; host/study/backends.cpp reaches them through this header. No CUDA headers here.
#pragma once
#include <memory>
#include <string>

#include "core/backend.h"

namespace sb {

// Throws std::runtime_error with a one-line reason when no device is usable or the name is unknown.
std::unique_ptr<Backend> make_cuda_backend(const std::string& name, const BackendOptions& options);

// Usable CUDA devices (0 when the driver or a device is missing; never throws).
int cuda_devices();

// Options of the "cuda" backend (host/cuda/cuda_backend.cpp).
struct CudaBackendOptions {
  // Seeds are split into this many contiguous groups, each advanced by its own CUDA stream (at most S groups).
  int streams = 1;
  // One group, and stream, per seed: no batching across seeds (the benchmark's baseline for what batching buys).
  bool stream_per_seed = false;
  // Capture each group's training step as a CUDA graph (from the second step at a batch size) and replay it.
  bool graphs = true;
  // Samples per chunk of predict / features / saliency; 0 picks it from a device-memory budget.
  int eval_chunk = 0;
};

// The "cuda" backend with explicit options; threads is what threads() reports (host loops beside the backend),
// 0 = all cores. Throws std::runtime_error when no device is usable.
std::unique_ptr<Backend> make_cuda_kernels_backend(int threads, const CudaBackendOptions& options = {});

// The "cudnn" baseline (host/cuda/cudnn_backend.cpp): cuDNN convolutions, grouped over the seeds or one per seed
// (options.cudnn_conv), cuBLAS GEMMs for the head. Throws std::runtime_error when no device is usable or the build
// has no cuDNN.
std::unique_ptr<Backend> make_cudnn_backend(const BackendOptions& options);

}  // namespace sb
