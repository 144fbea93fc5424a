// Device discovery and the factory of the CUDA backends.
#include "backend_cuda.h"

#include <cuda_runtime.h>

#include <stdexcept>

namespace sb {

int cuda_devices() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver/device" error
    return 0;
  }
  return n;
}

std::unique_ptr<Backend> make_cuda_backend(const std::string& name, int threads) {
  if (cuda_devices() == 0)
    throw std::runtime_error("backend '" + name + "' needs a CUDA device, and none is usable on this machine");
  if (name == "cuda") return make_cuda_kernels_backend(threads, CudaBackendOptions{});
  if (name == "cudnn") throw std::runtime_error("backend '" + name + "' is not implemented yet (issue 3)");
  throw std::runtime_error("unknown CUDA backend '" + name + "' (known: cuda, cudnn)");
}

}  // namespace sb
