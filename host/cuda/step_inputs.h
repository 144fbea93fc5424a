// A training step's host inputs on their way to the device, shared by the CUDA backends: the Adam scalars (read
// by the Adam kernel from device memory, so a captured CUDA graph picks up each step's values) and the batch rows
// (S, B) as int32, in one device buffer filled by one cudaMemcpyAsync per step from a ring of pinned staging
// slots. A slot is refilled only after the copy that last read it has completed, so the host runs up to kSlots
// steps ahead of the stream without waiting and without overwriting what a pending copy still reads.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "cuda/cuda_handles.h"
#include "cuda/device_memory.h"
#include "kernels/adam.h"
#include "kernels/cuda_check.h"

namespace sb::gpu {

class StepInputs {
 public:
  static constexpr size_t kHeaderBytes = 16;  // the Adam scalars, padded so the rows stay 16-byte aligned
  static_assert(sizeof(AdamStepScalars) <= kHeaderBytes, "the step header holds the Adam scalars");
  static constexpr int kSlots = 4;

  // Room for up to `rows` batch rows per step (the device buffer and every slot); drops what was staged.
  void allocate(size_t rows) {
    const size_t bytes = kHeaderBytes + rows * sizeof(int32_t);
    device_ = DeviceArray<unsigned char>(bytes);
    slots_.clear();
    for (int i = 0; i < kSlots; ++i) {
      auto slot = std::make_unique<Slot>();
      slot->staging = PinnedBuffer(bytes);
      slots_.push_back(std::move(slot));
    }
    next_ = 0;
  }

  // Enqueues the copy of scalars and rows[0, n) on stream; returns without waiting for it.
  void stage(const AdamStepScalars& scalars, const int32_t* rows, size_t n, cudaStream_t stream) {
    Slot& slot = *slots_[size_t(next_)];
    next_ = (next_ + 1) % kSlots;
    if (slot.pending) SB_CUDA_CHECK(cudaEventSynchronize(slot.copied.get()));  // its copy of kSlots steps ago
    unsigned char* staging = slot.staging.data();
    std::memset(staging, 0, kHeaderBytes);
    std::memcpy(staging, &scalars, sizeof scalars);
    std::memcpy(staging + kHeaderBytes, rows, n * sizeof(int32_t));
    SB_CUDA_CHECK(cudaMemcpyAsync(device_.data(), staging, kHeaderBytes + n * sizeof(int32_t),
                                  cudaMemcpyHostToDevice, stream));
    SB_CUDA_CHECK(cudaEventRecord(slot.copied.get(), stream));
    slot.pending = true;
  }

  // Where the kernels read them (stable between allocate() calls, so graphs may capture these pointers).
  const AdamStepScalars* scalars() const { return reinterpret_cast<const AdamStepScalars*>(device_.data()); }
  const int32_t* rows() const { return reinterpret_cast<const int32_t*>(device_.data() + kHeaderBytes); }

 private:
  struct Slot {
    PinnedBuffer staging;
    EventHandle copied;  // recorded after the copy out of staging: the slot may be refilled once it completes
    bool pending = false;
  };
  DeviceArray<unsigned char> device_;
  std::vector<std::unique_ptr<Slot>> slots_;
  int next_ = 0;
};

}  // namespace sb::gpu
