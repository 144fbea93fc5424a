// A tiled GEMM for many small independent problems, one per seed (blockIdx.z):
//   out_s[m][n] = init(s, m, n) + sum_{r < R} a(s, m, r) * b(s, r, n)      for m < M, n < N
// The operands are never materialised: an Op supplies a(), b() (im2col, transposes and zero padding on the fly),
// init() (a bias, or zero) and store() (ReLU, layout). Included only by the .cu files of the layers (conv1d.cu,
// linear.cu); each instantiates the kernel for its few Ops.
//
// Determinism: each output is one thread's fmaf chain acc = fmaf(a_r, b_r, acc) for r = 0, 1, ..., R-1 in order,
// starting from init(); the zero padding of the last r-tile adds exact zeros. An output's bits therefore depend
// only on its own row of A and column of B: not on the tile it lands in, the launch configuration, the number of
// seeds S or the other seeds. No atomics, no split-K. When r runs in the CPU twin's order (gather_gemm in
// host/cpu_layers_simd.inc also chains one FMA per r from the bias), the result has the CPU's bits on FMA levels.
//
// An Op is a small struct passed by value as the kernel parameter, with
//   static constexpr bool kLoadAAlongR, kLoadBAlongR;  // tile loads walk r fastest (else m / n fastest):
//                                                      // pick the direction that is contiguous in memory
//   int M, N, R;
//   __device__ float init(int s, int m, int n) const;
//   __device__ float a(int s, int m, int r) const;     // called only for m < M, r < R
//   __device__ float b(int s, int r, int n) const;     // called only for r < R, n < N
//   __device__ void store(int s, int m, int n, float value) const;  // called once for every m < M, n < N
#pragma once
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "cuda_check.h"

namespace sb::gpu::gemm {

constexpr int kTileM = 32, kTileN = 32, kTileR = 16;
constexpr int kThreadsM = 16, kThreadsN = 16;  // each thread owns 2 x 2 outputs of the 32 x 32 tile
constexpr int kThreads = kThreadsM * kThreadsN;
static_assert(kTileM == 2 * kThreadsM && kTileN == 2 * kThreadsN, "2 x 2 outputs per thread");
constexpr unsigned kMaxGridYZ = 65535;

template <class Op>
__global__ void __launch_bounds__(kThreads) batched_gemm_kernel(const Op op) {
  // +1 column: the r-fastest tile loads write a column of the tile per warp; padding spreads it over the banks.
  __shared__ float a_tile[kTileR][kTileM + 1];
  __shared__ float b_tile[kTileR][kTileN + 1];
  const int s = int(blockIdx.z);
  const int m0 = int(blockIdx.x) * kTileM, n0 = int(blockIdx.y) * kTileN;
  const int t = int(threadIdx.x);
  const int tm = t / kThreadsN, tn = t % kThreadsN;  // this thread's outputs: rows tm, tm+16; columns tn, tn+16

  float acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int m = m0 + tm + i * kThreadsM, n = n0 + tn + j * kThreadsN;
      acc[i][j] = (m < op.M && n < op.N) ? op.init(s, m, n) : 0.0f;
    }

  for (int r0 = 0; r0 < op.R; r0 += kTileR) {
    for (int e = t; e < kTileR * kTileM; e += kThreads) {
      const int r = Op::kLoadAAlongR ? e % kTileR : e / kTileM;
      const int m = Op::kLoadAAlongR ? e / kTileR : e % kTileM;
      a_tile[r][m] = (m0 + m < op.M && r0 + r < op.R) ? op.a(s, m0 + m, r0 + r) : 0.0f;
    }
    for (int e = t; e < kTileR * kTileN; e += kThreads) {
      const int r = Op::kLoadBAlongR ? e % kTileR : e / kTileN;
      const int n = Op::kLoadBAlongR ? e / kTileR : e % kTileN;
      b_tile[r][n] = (n0 + n < op.N && r0 + r < op.R) ? op.b(s, r0 + r, n0 + n) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kTileR; ++r) {
      const float a0 = a_tile[r][tm], a1 = a_tile[r][tm + kThreadsM];
      const float b0 = b_tile[r][tn], b1 = b_tile[r][tn + kThreadsN];
      acc[0][0] = fmaf(a0, b0, acc[0][0]);
      acc[0][1] = fmaf(a0, b1, acc[0][1]);
      acc[1][0] = fmaf(a1, b0, acc[1][0]);
      acc[1][1] = fmaf(a1, b1, acc[1][1]);
    }
    __syncthreads();  // the tiles are overwritten by the next r-tile
  }

#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int m = m0 + tm + i * kThreadsM, n = n0 + tn + j * kThreadsN;
      if (m < op.M && n < op.N) op.store(s, m, n, acc[i][j]);
    }
}

// Launches op for S seeds on stream; `what` names the layer in error messages.
template <class Op>
void launch_batched_gemm(const Op& op, int S, cudaStream_t stream, const char* what) {
  if (S < 1 || op.M < 1 || op.N < 1 || op.R < 0)
    throw std::invalid_argument(std::string(what) + ": empty or negative GEMM dimensions");
  const unsigned gx = unsigned((op.M + kTileM - 1) / kTileM), gy = unsigned((op.N + kTileN - 1) / kTileN);
  if (gy > kMaxGridYZ || unsigned(S) > kMaxGridYZ)
    throw std::invalid_argument(std::string(what) + ": too many seeds (" + std::to_string(S) + ") or columns (" +
                                std::to_string(op.N) + ") for one launch");
  batched_gemm_kernel<Op><<<dim3(gx, gy, unsigned(S)), kThreads, 0, stream>>>(op);
  SB_CUDA_CHECK_LAUNCH();
}

}  // namespace sb::gpu::gemm
