// NVTX ranges for Nsight Systems (docs/profiling.md): method, epoch, train_step, evaluate.
// No-ops in builds without CUDA; NVTX3 is header-only and costs ~nothing when no profiler is attached.
#pragma once

#ifdef SB_HAVE_CUDA
#include <nvtx3/nvToolsExt.h>
#endif

namespace sb {

class NvtxRange {
 public:
  explicit NvtxRange(const char* name) {
#ifdef SB_HAVE_CUDA
    nvtxRangePushA(name);
#else
    (void)name;
#endif
  }
  ~NvtxRange() {
#ifdef SB_HAVE_CUDA
    nvtxRangePop();
#endif
  }
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;
};

}  // namespace sb
