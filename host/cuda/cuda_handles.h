// Owning handles of CUDA runtime objects, shared by the CUDA backends. Destructors ignore errors: they run during
// unwinding and at exit, when there is nobody left to tell.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "kernels/cuda_check.h"

namespace sb::gpu {

// Page-locked host memory: what cudaMemcpyAsync needs to be asynchronous.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t bytes) {
    if (bytes) SB_CUDA_CHECK(cudaMallocHost(&p_, bytes));
  }
  ~PinnedBuffer() {
    if (p_) cudaFreeHost(p_);
  }
  PinnedBuffer(PinnedBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  PinnedBuffer& operator=(PinnedBuffer&& o) noexcept {
    std::swap(p_, o.p_);  // the old buffer is freed with o
    return *this;
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  unsigned char* data() const { return static_cast<unsigned char*>(p_); }

 private:
  void* p_ = nullptr;
};

// A stream that does not synchronise with the legacy default stream.
class StreamHandle {
 public:
  StreamHandle() { SB_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
  ~StreamHandle() { cudaStreamDestroy(s_); }
  StreamHandle(const StreamHandle&) = delete;
  StreamHandle& operator=(const StreamHandle&) = delete;
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

// An event for ordering only (no timing: cheaper to record and wait on).
class EventHandle {
 public:
  EventHandle() { SB_CUDA_CHECK(cudaEventCreateWithFlags(&e_, cudaEventDisableTiming)); }
  ~EventHandle() { cudaEventDestroy(e_); }
  EventHandle(const EventHandle&) = delete;
  EventHandle& operator=(const EventHandle&) = delete;
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

}  // namespace sb::gpu
