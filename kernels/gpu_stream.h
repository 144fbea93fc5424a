// The stream type of the kernel launchers, without the CUDA headers: plain C++ code (tests, benchmarks, the
// backends) can call every launcher of kernels/*.h. It is CUDA's own cudaStream_t (CUstream_st*); nullptr is
// the default stream.
#pragma once

struct CUstream_st;

namespace sb::gpu {
using Stream = CUstream_st*;
}  // namespace sb::gpu
