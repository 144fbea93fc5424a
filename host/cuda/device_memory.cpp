// Device memory helpers of device_memory.h.
#include "cuda/device_memory.h"

#include <cuda_runtime.h>

#include "kernels/cuda_check.h"

namespace sb::gpu {

void* device_alloc(size_t bytes) {
  if (bytes == 0) return nullptr;
  void* p = nullptr;
  SB_CUDA_CHECK(cudaMalloc(&p, bytes));
  return p;
}

void device_free(void* p) noexcept {
  if (p) cudaFree(p);
}

void copy_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  SB_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
  // From pageable memory cudaMemcpy may return before the DMA has landed; work on non-blocking streams (the
  // backend's) is not ordered after the legacy stream, so wait here.
  SB_CUDA_CHECK(cudaDeviceSynchronize());
}

void copy_to_host(void* dst, const void* src, size_t bytes) {
  SB_CUDA_CHECK(cudaDeviceSynchronize());
  if (bytes == 0) return;
  SB_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

void fill_device_bytes(void* p, int byte, size_t bytes) {
  if (bytes == 0) return;
  SB_CUDA_CHECK(cudaMemset(p, byte, bytes));
  SB_CUDA_CHECK(cudaDeviceSynchronize());
}

void device_synchronize() { SB_CUDA_CHECK(cudaDeviceSynchronize()); }

}  // namespace sb::gpu
