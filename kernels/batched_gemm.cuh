// A tiled GEMM for many small independent problems, one per seed (blockIdx.z):
//   out_s[m][n] = init(s, m, n) + sum_{r < R} a(s, m, r) * b(s, r, n)      for m < M, n < N
// The operands are never materialised: an Op supplies a(), b() (im2col, transposes and zero padding on the fly),
// init() (a bias, or zero) and store() (ReLU, layout). Included only by the .cu files of the layers (conv1d.cu,
// linear.cu); each instantiates the kernel for its few Ops. Every GEMM of the project runs on the one tile kernel
// below, batched_gemm_kernel: a 32 x 32 output tile per block of 64 threads, 4 x 4 outputs per thread (register
// blocking: two 16-byte shared loads feed 16 FMAs).
//
// Determinism: each output is one thread's fmaf chain acc = fmaf(a_r, b_r, acc) for r = 0, 1, ..., R-1 in order,
// starting from init(); the zero padding of the last r-tile adds exact zeros (a = b = 0). An output's bits
// therefore depend only on its own row of A and column of B: not on the tile or the thread it lands in, the
// launch configuration, the number of seeds S or the other seeds. No atomics. When r runs in the CPU twin's order
// (gather_gemm in host/cpu/simd_kernels.inc also chains one FMA per r from the bias), the result has the CPU's bits
// on FMA levels.
//
// Few outputs, long R (the weight gradients: M x N = Cout x (Cin*K + 1), R = B*Lout) leave one chain per output
// with a handful of blocks per seed, each walking R alone: latency-bound. Given a workspace, launch_batched_gemm
// cuts R into `splits` contiguous chunks (split_plan: a function of M, N and R only, never of S), computes each
// chunk's partial tile into the workspace (S, splits, M, N) by the same kernel (chain from 0 over the chunk, r in
// order), and sums the partials in split order 0, 1, ... from init(). The bits then depend on the chunk
// boundaries, which depend on the GEMM's shape alone: a seed's results are still the same whatever S, the
// grouping of seeds or the run. Without a workspace (the linear layers, the conv forward and input gradient) or
// when the plan gives one split, each output is the single chain above.
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

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "kernels/cuda_check.h"

namespace sb::gpu::gemm {

constexpr int kTileM = 32, kTileN = 32, kTileR = 16;
constexpr int kThreadsM = 8, kThreadsN = 8;  // each thread owns 4 x 4 outputs of the 32 x 32 tile
constexpr int kThreads = kThreadsM * kThreadsN;
static_assert(kTileM == 4 * kThreadsM && kTileN == 4 * kThreadsN, "4 x 4 outputs per thread");
constexpr int kLoadsPerThread = kTileR * kTileM / kThreads;  // elements of each operand tile a thread stages
static_assert(kTileM == kTileN && kTileR * kTileM % kThreads == 0, "the tile loads divide evenly");
constexpr int kTilePad = 4;  // keeps rows 16-byte aligned for the float4 loads; spreads the r-fastest stores
constexpr unsigned kMaxGridYZ = 65535;

// ---- Division by a divisor known at launch (the lengths and kernel sizes of an im2col): n / d for
// 0 <= n < 2^31 as a 32 x 32 -> 64-bit multiply and a shift, exact (Granlund & Montgomery): with l = ceil(log2 d),
// p = 31 + l and magic = ceil(2^p / d) < 2^32, the error magic*d - 2^p < d <= 2^l makes n*magic >> p = n / d for
// every n < 2^31. The GPU has no integer divider (n / d is a ~20-instruction sequence); this is ~3. The Ops use it
// for the divisions of their tile loads, which run 8 times per thread per r-tile for each operand.
struct FastDivisor {
  unsigned magic = 1u << 31;
  int shift = 31;  // p
  FastDivisor() = default;
  explicit FastDivisor(int d) {
    if (d < 1) throw std::invalid_argument("FastDivisor: the divisor must be positive");
    int l = 0;
    while ((1ll << l) < d) ++l;
    shift = 31 + l;
    magic = unsigned(((1ull << shift) + unsigned(d) - 1) / unsigned(d));
  }
  __host__ __device__ int div(int n) const { return int((unsigned long long)unsigned(n) * magic >> shift); }
};

// ---- The split-R plan.
//
// Split rule (split_plan): a tile grid of at least kSplitMinTiles tiles per seed is left alone (splits = 1: the
// grid has enough blocks, and partials would only add memory traffic). Otherwise R is cut into chunks of
// kSplitChunkR (8 r-tiles: long enough that a block's fixed costs, its partial tile's store and the reduction's
// read, stay small against its loop; short enough that each block's serial chain is a few microseconds), at most
// kMaxSplits of them (bounds the workspace at large batches; the chunks then grow, in whole r-tiles). The last
// chunk is ragged. No split when R fits one chunk. For ConvBase at B = 100 this gives conv1 (M=C, N=6, R=1900)
// 15 splits at C = 25 and 256; conv2 (R=1000) 8 and conv3 (R=500) 4 at C = 25; none at C = 256 (200 tiles).
constexpr int kSplitChunkR = 128, kMaxSplits = 64, kSplitMinTiles = 16;
static_assert(kSplitChunkR % kTileR == 0, "chunks are whole r-tiles");

// The rule's two numbers, kSplitChunkR and kSplitMinTiles unless the environment sets SB_SPLIT_CHUNK_R (a positive
// multiple of kTileR) or SB_SPLIT_MIN_TILES (positive): read once per process, so that a GPU session can measure
// other values without a rebuild (scripts/gpu-check.sh's split sweep). Results stay deterministic and independent
// of S for any values; they differ between values (other chunks, other sums).
struct SplitRule {
  int chunk_r = kSplitChunkR;
  int min_tiles = kSplitMinTiles;
};
inline int split_rule_env(const char* name, int fallback, int multiple_of) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (*end != '\0' || x < 1 || x > (1 << 20) || x % multiple_of != 0)
    throw std::invalid_argument(std::string(name) + " must be an integer in [1, 1048576]" +
                                (multiple_of > 1 ? " and a multiple of " + std::to_string(multiple_of) : "") +
                                ", got '" + v + "'");
  return int(x);
}
inline const SplitRule& split_rule() {
  static const SplitRule rule{split_rule_env("SB_SPLIT_CHUNK_R", kSplitChunkR, kTileR),
                              split_rule_env("SB_SPLIT_MIN_TILES", kSplitMinTiles, 1)};
  return rule;
}

struct SplitPlan {
  int splits = 1;
  int chunk = 0;  // r per split: split c sums r in [c*chunk, min((c+1)*chunk, R))
};

inline SplitPlan split_plan(int M, int N, int R) {
  SplitPlan p;
  p.chunk = R;
  const SplitRule& rule = split_rule();
  const long long tiles = (long long)((M + kTileM - 1) / kTileM) * ((N + kTileN - 1) / kTileN);
  if (M < 1 || N < 1 || R <= rule.chunk_r || tiles >= rule.min_tiles) return p;
  const int wanted = (R + rule.chunk_r - 1) / rule.chunk_r;
  const int chunk_tiles = (R + kMaxSplits * kTileR - 1) / (kMaxSplits * kTileR);  // r-tiles per chunk at the cap
  p.chunk = wanted <= kMaxSplits ? rule.chunk_r : chunk_tiles * kTileR;
  p.splits = (R + p.chunk - 1) / p.chunk;  // <= kMaxSplits; the last chunk is non-empty
  return p;
}

// Floats of workspace one seed needs (splits * M * N; 0 when the plan does not split).
inline size_t split_workspace_per_seed(int M, int N, int R) {
  const SplitPlan p = split_plan(M, N, R);
  return p.splits > 1 ? size_t(p.splits) * size_t(M) * size_t(N) : 0;
}

// ---- The tile kernel. Block (x, y, z) = (m-tile, n-tile + n_tiles * split, seed); thread t owns rows
// tm..tm+3 and columns tn..tn+3 of the tile. Each r-tile: the block loads A's 32 x 16 and B's 16 x 32 tiles into
// shared memory (8 elements of each per thread, in the Op's contiguous direction), then each thread runs r = 0..15
// in order over its 16 chains, each step two float4 loads and 16 FMAs (where 2 x 2 outputs per thread would need
// four loads for four FMAs: shared-memory-bound). Split `split` runs r in [split*chunk, min((split+1)*chunk, R))
// in order. With partial == nullptr (one split: chunk >= R) the chain starts at init() and ends in op.store();
// otherwise it starts at 0 and the tile goes to partial (S, splits, M, N).
template <class Op>
__global__ void __launch_bounds__(kThreads)
    batched_gemm_kernel(const Op op, int n_tiles, int chunk, int splits, float* __restrict__ partial) {
  __shared__ __align__(16) float a_tile[kTileR][kTileM + kTilePad];
  __shared__ __align__(16) float b_tile[kTileR][kTileN + kTilePad];
  const int s = int(blockIdx.z), split = int(blockIdx.y) / n_tiles;
  const int m0 = int(blockIdx.x) * kTileM, n0 = (int(blockIdx.y) - split * n_tiles) * kTileN;
  const int t = int(threadIdx.x);
  const int tm = 4 * (t / kThreadsN), tn = 4 * (t % kThreadsN);
  const int r_begin = split * chunk, r_end = chunk < op.R - r_begin ? r_begin + chunk : op.R;

  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int m = m0 + tm + i, n = n0 + tn + j;
      acc[i][j] = (!partial && m < op.M && n < op.N) ? op.init(s, m, n) : 0.0f;
    }

  for (int r0 = r_begin; r0 < r_end; r0 += kTileR) {
    // Constant trip counts (t < kThreads), unrolled by 4: four global loads in flight per thread. (Unrolled fully,
    // the hoisted addresses of all 16 take 127-182 registers; by 4, 44-56: sm_90 ptxas.)
#pragma unroll 4
    for (int i = 0; i < kLoadsPerThread; ++i) {
      const int e = t + i * kThreads;
      const int r = Op::kLoadAAlongR ? e % kTileR : e / kTileM;
      const int m = Op::kLoadAAlongR ? e / kTileR : e % kTileM;
      a_tile[r][m] = (m0 + m < op.M && r0 + r < r_end) ? op.a(s, m0 + m, r0 + r) : 0.0f;
    }
#pragma unroll 4
    for (int i = 0; i < kLoadsPerThread; ++i) {
      const int e = t + i * kThreads;
      const int r = Op::kLoadBAlongR ? e % kTileR : e / kTileN;
      const int n = Op::kLoadBAlongR ? e / kTileR : e % kTileN;
      b_tile[r][n] = (n0 + n < op.N && r0 + r < r_end) ? op.b(s, r0 + r, n0 + n) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < kTileR; ++r) {
      const float4 a4 = *reinterpret_cast<const float4*>(&a_tile[r][tm]);
      const float4 b4 = *reinterpret_cast<const float4*>(&b_tile[r][tn]);
      const float av[4] = {a4.x, a4.y, a4.z, a4.w}, bv[4] = {b4.x, b4.y, b4.z, b4.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();  // the tiles are overwritten by the next r-tile
  }

#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int m = m0 + tm + i, n = n0 + tn + j;
      if (m >= op.M || n >= op.N) continue;
      if (partial)
        partial[((size_t(s) * splits + split) * op.M + m) * op.N + n] = acc[i][j];
      else
        op.store(s, m, n, acc[i][j]);
    }
}

// out(s, m, n) = init(s, m, n) + partial(s, 0, m, n) + partial(s, 1, m, n) + ...  in split order. Block
// (x, y) = (outputs x*blockDim.x ..., seed y); one thread per output, n fastest (the partials are read coalesced).
template <class Op>
__global__ void batched_gemm_sum_splits_kernel(const Op op, int splits, const float* __restrict__ partial) {
  const int s = int(blockIdx.y), mn = op.M * op.N;  // M * N < 2^31: the launcher checks
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i >= mn) return;
  const int m = i / op.N, n = i - m * op.N;
  const float* p = partial + size_t(s) * splits * mn + i;
  float v = op.init(s, m, n);
  for (int c = 0; c < splits; ++c) v += p[size_t(c) * mn];
  op.store(s, m, n, v);
}

// Launches op for S seeds on stream; `what` names the layer in error messages. workspace == nullptr (the
// default): one chain per output. Otherwise split_plan(M, N, R) splits, and workspace holds at least
// S * split_workspace_per_seed(M, N, R) floats (unused when the plan gives one split).
template <class Op>
void launch_batched_gemm(const Op& op, int S, cudaStream_t stream, const char* what, float* workspace = nullptr) {
  if (S < 1 || op.M < 1 || op.N < 1 || op.R < 0)
    throw std::invalid_argument(std::string(what) + ": empty or negative GEMM dimensions");
  SplitPlan plan = split_plan(op.M, op.N, op.R);
  if (!workspace) plan = SplitPlan{1, op.R};
  const unsigned gx = unsigned((op.M + kTileM - 1) / kTileM), gy = unsigned((op.N + kTileN - 1) / kTileN);
  if ((unsigned long long)gy * unsigned(plan.splits) > kMaxGridYZ || unsigned(S) > kMaxGridYZ)
    throw std::invalid_argument(std::string(what) + ": too many seeds (" + std::to_string(S) + ") or columns (" +
                                std::to_string(op.N) + ") for one launch");
  float* partial = plan.splits > 1 ? workspace : nullptr;
  batched_gemm_kernel<Op><<<dim3(gx, gy * unsigned(plan.splits), unsigned(S)), kThreads, 0, stream>>>(
      op, int(gy), plan.chunk, plan.splits, partial);
  SB_CUDA_CHECK_LAUNCH();
  if (!partial) return;
  constexpr int kSumThreads = 256;
  const long long mn = (long long)op.M * op.N;
  if (mn >= 0x7fffffffll) throw std::invalid_argument(std::string(what) + ": too many outputs for one launch");
  const unsigned blocks = unsigned((mn + kSumThreads - 1) / kSumThreads);
  batched_gemm_sum_splits_kernel<Op><<<dim3(blocks, unsigned(S)), kSumThreads, 0, stream>>>(op, plan.splits, partial);
  SB_CUDA_CHECK_LAUNCH();
}

}  // namespace sb::gpu::gemm
