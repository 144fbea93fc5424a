// The CUDA backends (issue 3): "cuda" runs our kernels (kernels/), "cudnn" the cuDNN/cuBLAS baseline.
// Only compiled with a CUDA compiler; host/backend.cpp reaches them through this header.
#pragma once
#include <memory>
#include <string>

#include "backend.h"

namespace sb {

// Throws std::runtime_error with a one-line reason when no device is usable or the name is unknown.
std::unique_ptr<Backend> make_cuda_backend(const std::string& name, int threads);

// Usable CUDA devices (0 when the driver or a device is missing; never throws).
int cuda_devices();

}  // namespace sb
