// Device discovery and the factory of the CUDA backends.
#include "cuda/backend_cuda.h"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace sb {

int cuda_devices() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver/device" error
    return 0;
  }
  return n;
}

std::unique_ptr<Backend> make_cuda_backend(const std::string& name, const BackendOptions& options) {
  const int devices = cuda_devices();
  if (devices == 0)
    throw std::runtime_error("backend '" + name + "' needs a CUDA device, and none is usable on this machine");
  if (options.device < 0 || options.device >= devices)
    throw std::runtime_error("CUDA device " + std::to_string(options.device) + " does not exist: this machine has " +
                             std::to_string(devices) + " (0.." + std::to_string(devices - 1) + ")");
  if (cudaSetDevice(options.device) != cudaSuccess)
    throw std::runtime_error("cannot use CUDA device " + std::to_string(options.device) + ": " +
                             cudaGetErrorString(cudaGetLastError()));
  if (name == "cuda") {
    CudaBackendOptions o;
    o.streams = options.streams;
    o.stream_per_seed = options.stream_per_seed;
    o.graphs = options.graphs;
    return make_cuda_kernels_backend(options.threads, o);
  }
  if (name == "cudnn") return make_cudnn_backend(options);
  throw std::runtime_error("unknown CUDA backend '" + name + "' (known: cuda, cudnn)");
}

}  // namespace sb
