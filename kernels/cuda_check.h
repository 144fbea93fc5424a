// Every CUDA runtime, cuBLAS and cuDNN call goes through one of these: a failure becomes a
// std::runtime_error naming the call, the error and file:line.
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace sb {

[[noreturn]] inline void cuda_fail(const char* what, const std::string& error, const char* file, int line) {
  throw std::runtime_error(std::string("CUDA error: ") + what + " failed: " + error + " (" + file + ":" +
                           std::to_string(line) + ")");
}

}  // namespace sb

#define SB_CUDA_CHECK(call)                                                              \
  do {                                                                                   \
    const cudaError_t sb_err_ = (call);                                                  \
    if (sb_err_ != cudaSuccess) ::sb::cuda_fail(#call, cudaGetErrorString(sb_err_), __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: launch-configuration errors surface here, execution errors at the next sync.
#define SB_CUDA_CHECK_LAUNCH() SB_CUDA_CHECK(cudaGetLastError())

#define SB_CUBLAS_CHECK(call)                                                                      \
  do {                                                                                             \
    const cublasStatus_t sb_st_ = (call);                                                          \
    if (sb_st_ != CUBLAS_STATUS_SUCCESS)                                                           \
      ::sb::cuda_fail(#call, std::string(cublasGetStatusName(sb_st_)) + " (" + cublasGetStatusString(sb_st_) + ")", \
                      __FILE__, __LINE__);                                                        \
  } while (0)

#define SB_CUDNN_CHECK(call)                                                                   \
  do {                                                                                         \
    const cudnnStatus_t sb_st_ = (call);                                                       \
    if (sb_st_ != CUDNN_STATUS_SUCCESS) ::sb::cuda_fail(#call, cudnnGetErrorString(sb_st_), __FILE__, __LINE__); \
  } while (0)
