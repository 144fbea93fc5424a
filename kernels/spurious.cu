// Batched noise injection (study.md §1.2): D_sp and the aligned / conflicting test sets of S seeds in a
// few launches. The CPU twin is host/cpu/spurious.cpp; every draw below names the sub-stream it reads there.
//
// D_sp takes three launches after a memset of planted to -1:
//   sort_by_class_kernel    one thread per class: the indices of class k in ascending order (members) and
//                           where each class starts (class_start) -- the Fisher-Yates starting point,
//                           shared by the seeds (labels are shared).
//   choose_planted_kernel   one thread per (seed, class): the partial Fisher-Yates of the CPU on that
//                           seed's private copy of the class's members (scratch work (S, N)); writes
//                           planted[s, i] = k for the round(p * n_k) chosen samples.
//   spurious_rows_kernel    a block per (seed, tile of rows): stage the clean rows in shared memory
//                           (coalesced), one thread per row adds the noise of its planted block, write the
//                           tile out (coalesced). The aligned and conflicting sets need only this launch
//                           (it also writes planted).
// All the work is tiny (D_sp of 10 000 seeds is 6.4 GB of output), so the row kernel is bound by the
// output write; the choice kernel by the ~N random swaps per seed in L1/L2.
//
// Floating point: the device uses RngStream::normal() of philox.h (logf, cosf, sqrtf; device logf/cosf
// may differ from glibc by an ulp or two), but forms z = mean + sd * normal() with __fmul_rn/__fadd_rn:
// nvcc would otherwise fuse it into one fma, which the host (x86-64 SSE2, no contraction) never does and
// which could move the rejection test z >= 0 by half an ulp. Likewise round(p * n_k) uses
// __dmul_rn/__dsub_rn, so the planted counts are computed exactly as on the host.
#include "kernels/spurious_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "core/philox.h"
#include "kernels/cuda_check.h"

namespace sb {

namespace {

constexpr int kThreads = 128;          // threads per block of every kernel here
constexpr int kTileFloats = 8192;      // 32 KB of staged rows per block of spurious_rows_kernel
static_assert(max_spurious_cuda_length <= kTileFloats, "a tile must hold at least one row");

enum class SetKind : int { train, aligned, conflicting };

// The part of SpuriousConfig the row kernel reads (p stays on the choice kernel).
struct NoiseParams {
  float mean, sd;
  int stride, width, classes;
  NoiseDraw draw;
};

// RngStream::truncated_normal_nonneg with the multiply and add rounded separately, as on the host.
__device__ float truncated_normal_nonneg_rn(RngStream& rng, float mean, float sd) {
  for (;;) {
    const float z = __fadd_rn(mean, __fmul_rn(sd, rng.normal()));
    if (z >= 0.0f) return z;
  }
}

// c_k of seed `seed` (class_noise_values): one draw from unit k of Purpose::spurious_class_noise.
__device__ float class_noise_value(const NoiseParams& np, uint64_t base_seed, uint32_t seed, int k) {
  RngStream rng(base_seed, seed, Purpose::spurious_class_noise, uint64_t(k) << 32);
  return truncated_normal_nonneg_rn(rng, np.mean, np.sd);
}

// round_half_even(p * n) (host/cpu/spurious.cpp planted_count), without fma contraction.
__device__ int planted_count_device(double p, int n) {
  const double v = __dmul_rn(p, double(n));
  const double f = floor(v);
  const double d = __dsub_rn(v, f);
  long long r = static_cast<long long>(f);
  if (d > 0.5 || (d == 0.5 && (r % 2 != 0))) ++r;
  return static_cast<int>(r);
}

// add_block_noise of host/cpu/spurious.cpp: noise on block k = [k*stride, min(L, k*stride + width)) of `row`;
// per_class adds c, per_sample one value drawn from rng, per_element one value per feature in ascending order.
__device__ void add_block_noise(const NoiseParams& np, float* row, int k, int L, float c, RngStream* rng) {
  const int lo = k * np.stride;
  const int hi = min(L, lo + np.width);
  switch (np.draw) {
    case NoiseDraw::per_class:
      for (int j = lo; j < hi; ++j) row[j] += c;
      break;
    case NoiseDraw::per_sample: {
      const float v = truncated_normal_nonneg_rn(*rng, np.mean, np.sd);
      for (int j = lo; j < hi; ++j) row[j] += v;
      break;
    }
    case NoiseDraw::per_element:
      for (int j = lo; j < hi; ++j) row[j] += truncated_normal_nonneg_rn(*rng, np.mean, np.sd);
      break;
  }
}

// labels (N) -> class_start (classes + 1): number of labels in [0, k); members (N): indices of class 0 in
// ascending order, then class 1, ... Thread k (0 <= k <= classes) scans all labels; labels outside
// [0, classes) are in no class. N * classes reads in all: microseconds for MNIST-1D.
__global__ void sort_by_class_kernel(const int32_t* __restrict__ labels, int N, int classes,
                                     int32_t* __restrict__ class_start, int32_t* __restrict__ members) {
  const int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k > classes) return;
  int start = 0;
  for (int i = 0; i < N; ++i) start += (labels[i] >= 0 && labels[i] < k) ? 1 : 0;
  class_start[k] = start;
  if (k == classes) return;
  for (int i = 0, pos = start; i < N; ++i)
    if (labels[i] == k) members[pos++] = i;
}

// One thread per (seed s, class k): the partial Fisher-Yates of plant_spurious_feature over the members of
// class k, on seed s's copy in work (S, N) (same offsets as members); planted (S, N), already -1, gets k at
// the m_k chosen rows. Unit k of Purpose::spurious_choice: one below(n - j) per step j < m_k.
__global__ void choose_planted_kernel(double p, const int32_t* __restrict__ class_start,
                                      const int32_t* __restrict__ members, int N, int classes, uint64_t base_seed,
                                      uint32_t s0, int S, int32_t* __restrict__ work,
                                      int32_t* __restrict__ planted) {
  const long long t = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= static_cast<long long>(S) * classes) return;
  const int s = static_cast<int>(t / classes), k = static_cast<int>(t % classes);
  const int b = class_start[k], n = class_start[k + 1] - b;
  const int m = planted_count_device(p, n);
  if (m <= 0) return;
  int32_t* idx = work + static_cast<size_t>(s) * N + b;
  for (int j = 0; j < n; ++j) idx[j] = members[b + j];
  RngStream choice(base_seed, s0 + static_cast<uint32_t>(s), Purpose::spurious_choice, uint64_t(k) << 32);
  for (int j = 0; j < m; ++j) {
    const int o = j + static_cast<int>(choice.below(static_cast<uint32_t>(n - j)));
    const int32_t v = idx[j];
    idx[j] = idx[o];
    idx[o] = v;
  }
  int32_t* planted_s = planted + static_cast<size_t>(s) * N;
  for (int j = 0; j < m; ++j) planted_s[idx[j]] = k;
}

// Block (s, tile): rows [r0, r0 + rows) of seed s. x (N, L), labels (N), out (S, N, L), planted (S, N).
// gridDim.x = S * tiles_per_seed; dynamic shared memory rows_per_block * L floats; rows_per_block <= blockDim.x.
// train: planted holds the choice (or -1); noise from unit i of spurious_sample_noise, or c_k.
// aligned: k = y_i, noise from unit i of test_aligned, or c_k; writes planted.
// conflicting: unit i of test_conflicting: r = below(classes - 1), k = r < y_i ? r : r + 1, then the noise
// draws from the same unit (or c_k, no draw); writes planted.
__global__ void spurious_rows_kernel(SetKind kind, NoiseParams np, const float* __restrict__ x,
                                     const int32_t* __restrict__ labels, int N, int L, int rows_per_block,
                                     int tiles_per_seed, uint64_t base_seed, uint32_t s0,
                                     float* __restrict__ out, int32_t* __restrict__ planted) {
  extern __shared__ float tile[];  // (rows, L)
  const int s = static_cast<int>(blockIdx.x / tiles_per_seed);
  const int r0 = static_cast<int>(blockIdx.x % tiles_per_seed) * rows_per_block;
  const int rows = min(rows_per_block, N - r0);
  const int n_el = rows * L;  // <= kTileFloats
  const float* src = x + static_cast<size_t>(r0) * L;
  for (int e = threadIdx.x; e < n_el; e += blockDim.x) tile[e] = src[e];
  __syncthreads();

  const uint32_t seed = s0 + static_cast<uint32_t>(s);
  for (int t = threadIdx.x; t < rows; t += blockDim.x) {
    const int i = r0 + t;
    float* row = tile + t * L;
    int32_t& planted_i = planted[static_cast<size_t>(s) * N + i];
    if (kind == SetKind::train) {
      const int k = planted_i;
      if (k < 0) continue;
      if (np.draw == NoiseDraw::per_class) {
        add_block_noise(np, row, k, L, class_noise_value(np, base_seed, seed, k), nullptr);
      } else {
        RngStream rng(base_seed, seed, Purpose::spurious_sample_noise, uint64_t(i) << 32);
        add_block_noise(np, row, k, L, 0.0f, &rng);
      }
    } else if (kind == SetKind::aligned) {
      const int k = labels[i];
      if (k < 0 || k >= np.classes) {  // precondition violated (see spurious_cuda.h): leave the row clean
        planted_i = -1;
        continue;
      }
      planted_i = k;
      if (np.draw == NoiseDraw::per_class) {
        add_block_noise(np, row, k, L, class_noise_value(np, base_seed, seed, k), nullptr);
      } else {
        RngStream rng(base_seed, seed, Purpose::test_aligned, uint64_t(i) << 32);
        add_block_noise(np, row, k, L, 0.0f, &rng);
      }
    } else {
      RngStream rng(base_seed, seed, Purpose::test_conflicting, uint64_t(i) << 32);
      const int r = static_cast<int>(rng.below(static_cast<uint32_t>(np.classes - 1)));
      const int k = r < labels[i] ? r : r + 1;  // in [0, classes) whatever the label
      planted_i = k;
      const float c = np.draw == NoiseDraw::per_class ? class_noise_value(np, base_seed, seed, k) : 0.0f;
      add_block_noise(np, row, k, L, c, &rng);
    }
  }
  __syncthreads();
  float* dst = out + (static_cast<size_t>(s) * N + r0) * L;
  for (int e = threadIdx.x; e < n_el; e += blockDim.x) dst[e] = tile[e];
}

unsigned blocks_for(long long threads) { return static_cast<unsigned>((threads + kThreads - 1) / kThreads); }

// Checks shared by the device entry points and the host wrappers (before any CUDA call).
void check_sizes(const SpuriousConfig& cfg, int N, int L, uint32_t s0, int S, const char* what) {
  validate(cfg, L);
  auto fail = [what](const std::string& msg) { throw std::invalid_argument(std::string(what) + ": " + msg); };
  if (N < 0) fail("negative sample count " + std::to_string(N));
  if (S < 0) fail("negative seed count " + std::to_string(S));
  if (L > max_spurious_cuda_length)
    fail("sequence length " + std::to_string(L) + " exceeds " + std::to_string(max_spurious_cuda_length));
  if (uint64_t(s0) + uint64_t(S) > (uint64_t(1) << 32))
    fail("seed indices " + std::to_string(s0) + " + " + std::to_string(S) + " pass 2^32");
}

void check_device_args(const SpuriousConfig& cfg, const void* d_x, const void* d_labels, int N, int L, uint32_t s0,
                       int S, const void* d_out, const void* d_planted, const char* what) {
  check_sizes(cfg, N, L, s0, S, what);
  if (N > 0 && S > 0 && (!d_x || !d_labels || !d_out || !d_planted))
    throw std::invalid_argument(std::string(what) + ": null device pointer");
}

// Frees a stream-ordered allocation on the same stream, also when a launch check throws.
struct AsyncScratch {
  void* ptr = nullptr;
  cudaStream_t stream = nullptr;
  AsyncScratch(size_t bytes, cudaStream_t s) : stream(s) { SB_CUDA_CHECK(cudaMallocAsync(&ptr, bytes, stream)); }
  ~AsyncScratch() {
    if (ptr) cudaFreeAsync(ptr, stream);  // an error here would resurface at the caller's next CUDA call
  }
  AsyncScratch(const AsyncScratch&) = delete;
  AsyncScratch& operator=(const AsyncScratch&) = delete;
};

void launch_rows(SetKind kind, const SpuriousConfig& cfg, const float* d_x, const int32_t* d_labels, int N, int L,
                 uint64_t base_seed, uint32_t s0, int S, float* d_out, int32_t* d_planted, cudaStream_t stream) {
  const int rows_per_block = std::min(kThreads, kTileFloats / L);  // >= 1 since L <= kTileFloats
  const int tiles_per_seed = (N + rows_per_block - 1) / rows_per_block;
  const long long blocks = static_cast<long long>(S) * tiles_per_seed;
  if (blocks > 0x7fffffffLL)
    throw std::invalid_argument("spurious transform (CUDA): " + std::to_string(S) + " seeds x " +
                                std::to_string(N) + " samples is more than one launch takes");
  const NoiseParams np{cfg.mean, cfg.sd, cfg.stride, cfg.width, cfg.classes, cfg.draw};
  const size_t smem = static_cast<size_t>(rows_per_block) * L * sizeof(float);
  spurious_rows_kernel<<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(
      kind, np, d_x, d_labels, N, L, rows_per_block, tiles_per_seed, base_seed, s0, d_out, d_planted);
  SB_CUDA_CHECK_LAUNCH();
}

// Host side of the wrappers: device buffers freed on every path.
struct DeviceBuffer {
  void* ptr = nullptr;
  explicit DeviceBuffer(size_t bytes) {
    if (bytes > 0) SB_CUDA_CHECK(cudaMalloc(&ptr, bytes));
  }
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <class T>
  T* as() const { return static_cast<T*>(ptr); }
};

struct EventPair {
  cudaEvent_t start = nullptr, stop = nullptr;
  EventPair() {
    SB_CUDA_CHECK(cudaEventCreate(&start));
    SB_CUDA_CHECK(cudaEventCreate(&stop));
  }
  ~EventPair() {
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
  }
  EventPair(const EventPair&) = delete;
  EventPair& operator=(const EventPair&) = delete;
};

using DeviceEntry = void (*)(const SpuriousConfig&, const float*, const int32_t*, int, int, uint64_t, uint32_t, int,
                             float*, int32_t*, void*);

SpuriousBatch run_on_host_pointers(DeviceEntry entry, const SpuriousConfig& cfg, const float* x, const int32_t* y,
                                   int N, int L, uint64_t base_seed, uint32_t s0, int S) {
  // The checks of check_inputs in host/cpu/spurious.cpp (same messages), plus the length and seed limits.
  check_sizes(cfg, N, L, s0, S, "spurious transform (CUDA)");
  if (N > 0 && (x == nullptr || y == nullptr)) throw std::invalid_argument("spurious transform: null input");
  for (int i = 0; i < N; ++i)
    if (y[i] < 0 || y[i] >= cfg.classes)
      throw std::invalid_argument("spurious transform: label " + std::to_string(y[i]) + " of sample " +
                                  std::to_string(i) + " is outside [0, " + std::to_string(cfg.classes) + ")");
  SpuriousBatch b;
  b.S = S;
  b.N = N;
  b.L = L;
  const size_t rows = static_cast<size_t>(S) * N, elems = rows * L;
  b.x.resize(elems);
  b.planted_class.resize(rows);
  if (rows == 0) return b;

  DeviceBuffer dx(static_cast<size_t>(N) * L * sizeof(float)), dy(static_cast<size_t>(N) * sizeof(int32_t));
  DeviceBuffer dout(elems * sizeof(float)), dplanted(rows * sizeof(int32_t));
  SB_CUDA_CHECK(cudaMemcpy(dx.ptr, x, static_cast<size_t>(N) * L * sizeof(float), cudaMemcpyHostToDevice));
  SB_CUDA_CHECK(cudaMemcpy(dy.ptr, y, static_cast<size_t>(N) * sizeof(int32_t), cudaMemcpyHostToDevice));
  // Poison: 0xFFFFFFFF is a NaN; 0x80808080 is no class and not -1.
  SB_CUDA_CHECK(cudaMemset(dout.ptr, 0xFF, elems * sizeof(float)));
  SB_CUDA_CHECK(cudaMemset(dplanted.ptr, 0x80, rows * sizeof(int32_t)));
  EventPair ev;
  SB_CUDA_CHECK(cudaEventRecord(ev.start, nullptr));
  entry(cfg, dx.as<float>(), dy.as<int32_t>(), N, L, base_seed, s0, S, dout.as<float>(), dplanted.as<int32_t>(),
        nullptr);
  SB_CUDA_CHECK(cudaEventRecord(ev.stop, nullptr));
  SB_CUDA_CHECK(cudaEventSynchronize(ev.stop));
  SB_CUDA_CHECK(cudaEventElapsedTime(&b.kernel_ms, ev.start, ev.stop));
  SB_CUDA_CHECK(cudaMemcpy(b.x.data(), dout.ptr, elems * sizeof(float), cudaMemcpyDeviceToHost));
  SB_CUDA_CHECK(cudaMemcpy(b.planted_class.data(), dplanted.ptr, rows * sizeof(int32_t), cudaMemcpyDeviceToHost));
  return b;
}

}  // namespace

void plant_spurious_feature_cuda(const SpuriousConfig& cfg, const float* d_x, const int32_t* d_labels, int N, int L,
                                 uint64_t base_seed, uint32_t s0, int S, float* d_out, int32_t* d_planted,
                                 void* stream_) {
  check_device_args(cfg, d_x, d_labels, N, L, s0, S, d_out, d_planted, "plant_spurious_feature_cuda");
  if (N == 0 || S == 0) return;
  const cudaStream_t stream = static_cast<cudaStream_t>(stream_);
  const size_t rows = static_cast<size_t>(S) * N;
  SB_CUDA_CHECK(cudaMemsetAsync(d_planted, 0xFF, rows * sizeof(int32_t), stream));  // every int32 = -1
  if (cfg.p > 0.0) {  // p = 0 is D_base exactly, with no draws (as on the CPU)
    // Scratch: class_start (classes + 1) | members (N) | work (S, N).
    const size_t n_start = static_cast<size_t>(cfg.classes) + 1;
    AsyncScratch scratch((n_start + N + rows) * sizeof(int32_t), stream);
    int32_t* class_start = static_cast<int32_t*>(scratch.ptr);
    int32_t* members = class_start + n_start;
    int32_t* work = members + N;
    sort_by_class_kernel<<<blocks_for(cfg.classes + 1), kThreads, 0, stream>>>(d_labels, N, cfg.classes, class_start,
                                                                               members);
    SB_CUDA_CHECK_LAUNCH();
    choose_planted_kernel<<<blocks_for(static_cast<long long>(S) * cfg.classes), kThreads, 0, stream>>>(
        cfg.p, class_start, members, N, cfg.classes, base_seed, s0, S, work, d_planted);
    SB_CUDA_CHECK_LAUNCH();
  }
  launch_rows(SetKind::train, cfg, d_x, d_labels, N, L, base_seed, s0, S, d_out, d_planted, stream);
}

void make_test_aligned_cuda(const SpuriousConfig& cfg, const float* d_x, const int32_t* d_labels, int N, int L,
                            uint64_t base_seed, uint32_t s0, int S, float* d_out, int32_t* d_planted, void* stream) {
  check_device_args(cfg, d_x, d_labels, N, L, s0, S, d_out, d_planted, "make_test_aligned_cuda");
  if (N == 0 || S == 0) return;
  launch_rows(SetKind::aligned, cfg, d_x, d_labels, N, L, base_seed, s0, S, d_out, d_planted,
              static_cast<cudaStream_t>(stream));
}

void make_test_conflicting_cuda(const SpuriousConfig& cfg, const float* d_x, const int32_t* d_labels, int N, int L,
                                uint64_t base_seed, uint32_t s0, int S, float* d_out, int32_t* d_planted,
                                void* stream) {
  check_device_args(cfg, d_x, d_labels, N, L, s0, S, d_out, d_planted, "make_test_conflicting_cuda");
  if (N == 0 || S == 0) return;
  launch_rows(SetKind::conflicting, cfg, d_x, d_labels, N, L, base_seed, s0, S, d_out, d_planted,
              static_cast<cudaStream_t>(stream));
}

void make_spurious_set_cuda(SpuriousSetKind kind, const SpuriousConfig& cfg, const float* d_x, const int32_t* d_labels,
                            int N, int L, uint64_t base_seed, uint32_t s0, int S, float* d_out, int32_t* d_planted,
                            void* stream) {
  const DeviceEntry entry = kind == SpuriousSetKind::train     ? plant_spurious_feature_cuda
                            : kind == SpuriousSetKind::aligned ? make_test_aligned_cuda
                                                               : make_test_conflicting_cuda;
  entry(cfg, d_x, d_labels, N, L, base_seed, s0, S, d_out, d_planted, stream);
}

SpuriousBatch plant_spurious_feature_cuda_host(const SpuriousConfig& cfg, const float* x, const int32_t* y, int N,
                                               int L, uint64_t base_seed, uint32_t s0, int S) {
  return run_on_host_pointers(plant_spurious_feature_cuda, cfg, x, y, N, L, base_seed, s0, S);
}

SpuriousBatch make_test_aligned_cuda_host(const SpuriousConfig& cfg, const float* x, const int32_t* y, int N, int L,
                                          uint64_t base_seed, uint32_t s0, int S) {
  return run_on_host_pointers(make_test_aligned_cuda, cfg, x, y, N, L, base_seed, s0, S);
}

SpuriousBatch make_test_conflicting_cuda_host(const SpuriousConfig& cfg, const float* x, const int32_t* y, int N,
                                              int L, uint64_t base_seed, uint32_t s0, int S) {
  return run_on_host_pointers(make_test_conflicting_cuda, cfg, x, y, N, L, base_seed, s0, S);
}

}  // namespace sb
