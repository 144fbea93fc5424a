#include <cuda_runtime.h>

#include <cstdio>
#include <memory>
#include <set>
#include <map>

uint3 threadIdx, blockIdx;
int g_graph_launches = 0;
dim3 blockDim, gridDim;
void* emu_dynamic_smem = nullptr;

namespace {
std::map<void*, size_t> g_device;  // live device allocations
ucontext_t g_sched;
struct Fiber {
  ucontext_t ctx;
  std::vector<char> stack;
  bool done = false;
};
std::vector<Fiber> g_fibers;
int g_current = -1;
const std::function<void()>* g_body = nullptr;
int g_barrier_count = 0;

void fiber_entry() {
  (*g_body)();
  g_fibers[size_t(g_current)].done = true;
  // returns to uc_link = scheduler
}

bool is_device(const void* p, size_t bytes) {
  auto it = g_device.upper_bound(const_cast<void*>(p));
  if (it == g_device.begin()) return false;
  --it;
  const char* base = static_cast<const char*>(it->first);
  return static_cast<const char*>(p) >= base && static_cast<const char*>(p) + bytes <= base + it->second;
}
void check_kind(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, const char* what) {
  if (bytes == 0) return;
  const bool dd = is_device(dst, bytes), sd = is_device(src, bytes);
  bool ok = true;
  switch (kind) {
    case cudaMemcpyHostToDevice: ok = dd && !sd; break;
    case cudaMemcpyDeviceToHost: ok = !dd && sd; break;
    case cudaMemcpyDeviceToDevice: ok = dd && sd; break;
    case cudaMemcpyHostToHost: ok = !dd && !sd; break;
  }
  if (!ok) {
    std::fprintf(stderr, "EMU: %s with wrong kind %d (dst device %d, src device %d, %zu bytes)\n", what, int(kind), dd, sd, bytes);
    std::abort();
  }
}
}  // namespace

bool emu_is_device(const void* p, size_t bytes) { return is_device(p, bytes); }

void __syncthreads() {
  ++g_barrier_count;
  swapcontext(&g_fibers[size_t(g_current)].ctx, &g_sched);
}

void emu_run(dim3 grid, dim3 block, size_t smem, const std::function<void()>& body) {
  const int n = int(block.x * block.y * block.z);
  if (n < 1 || n > 1024 || grid.y > 65535 || grid.z > 65535) {
    std::fprintf(stderr, "EMU: bad launch configuration\n");
    std::abort();
  }
  std::vector<char> dyn(smem + 16, char(0x7f));  // junk: the kernel must initialise what it reads
  emu_dynamic_smem = dyn.data();
  blockDim = block, gridDim = grid;
  g_body = &body;
  if (g_fibers.size() < size_t(n)) g_fibers.resize(size_t(n));
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        blockIdx = {bx, by, bz};
        for (int i = 0; i < n; ++i) {
          Fiber& f = g_fibers[size_t(i)];
          f.stack.resize(256 * 1024);
          f.done = false;
          getcontext(&f.ctx);
          f.ctx.uc_stack.ss_sp = f.stack.data();
          f.ctx.uc_stack.ss_size = f.stack.size();
          f.ctx.uc_link = &g_sched;
          makecontext(&f.ctx, fiber_entry, 0);
        }
        for (;;) {
          int alive = 0, at_barrier = 0;
          const int before = g_barrier_count;
          for (int i = 0; i < n; ++i) {
            if (g_fibers[size_t(i)].done) continue;
            g_current = i;
            threadIdx = {unsigned(i) % block.x, (unsigned(i) / block.x) % block.y, unsigned(i) / (block.x * block.y)};
            swapcontext(&g_sched, &g_fibers[size_t(i)].ctx);
            if (!g_fibers[size_t(i)].done) ++at_barrier;
            ++alive;
          }
          if (alive == 0) break;
          if (at_barrier != 0 && at_barrier != alive) {
            std::fprintf(stderr, "EMU: divergent __syncthreads (%d of %d threads)\n", at_barrier, alive);
            std::abort();
          }
          (void)before;
        }
      }
  emu_dynamic_smem = nullptr;
}

void emu_enqueue(cudaStream_t s, std::function<void()> op) {
  if (s && s->capturing)
    s->graph->ops.push_back(std::move(op));
  else
    op();
}

static void fail_if_capturing(cudaStream_t s, const char* what) {
  if (s && s->capturing) {
    std::fprintf(stderr, "EMU: %s during capture\n", what);
    std::abort();
  }
}

cudaError_t cudaGetLastError() { return cudaSuccess; }
const char* cudaGetErrorString(cudaError_t) { return "emulated error"; }
cudaError_t cudaGetDeviceCount(int* n) { *n = 1; return cudaSuccess; }
cudaError_t cudaGetDevice(int* d) { *d = 0; return cudaSuccess; }
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidValue; }  // one emulated device
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
  std::strcpy(p->name, "Emulated GPU");
  p->major = 9, p->minor = 0;
  return cudaSuccess;
}
cudaError_t cudaMalloc(void** p, size_t bytes) {
  *p = std::malloc(bytes);
  g_device[*p] = bytes;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  if (!g_device.erase(p)) { std::fprintf(stderr, "EMU: cudaFree of a non-device pointer\n"); std::abort(); }
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** p, size_t bytes) { *p = std::malloc(bytes); return cudaSuccess; }
cudaError_t cudaFreeHost(void* p) { std::free(p); return cudaSuccess; }
cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind k) {
  check_kind(d, s, n, k, "cudaMemcpy");
  std::memcpy(d, s, n);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind k, cudaStream_t st) {
  fail_if_capturing(st, "cudaMemcpyAsync");
  check_kind(d, s, n, k, "cudaMemcpyAsync");
  std::memcpy(d, s, n);
  return cudaSuccess;
}
cudaError_t cudaMemcpy2DAsync(void* d, size_t dp, const void* s, size_t sp, size_t w, size_t h, cudaMemcpyKind k,
                              cudaStream_t st) {
  fail_if_capturing(st, "cudaMemcpy2DAsync");
  if (w > dp || w > sp) { std::fprintf(stderr, "EMU: 2D copy wider than a pitch\n"); std::abort(); }
  for (size_t r = 0; r < h; ++r) {
    check_kind(static_cast<char*>(d) + r * dp, static_cast<const char*>(s) + r * sp, w, k, "cudaMemcpy2DAsync");
    std::memcpy(static_cast<char*>(d) + r * dp, static_cast<const char*>(s) + r * sp, w);
  }
  return cudaSuccess;
}
cudaError_t cudaMemset(void* p, int v, size_t n) {
  if (n && !is_device(p, n)) { std::fprintf(stderr, "EMU: cudaMemset on host memory\n"); std::abort(); }
  std::memset(p, v, n);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t st) {
  fail_if_capturing(st, "cudaMemsetAsync");
  return cudaMemset(p, v, n);
}
cudaError_t cudaMallocAsync(void** p, size_t bytes, cudaStream_t st) {
  fail_if_capturing(st, "cudaMallocAsync");
  return cudaMalloc(p, bytes);
}
cudaError_t cudaFreeAsync(void* p, cudaStream_t st) {
  fail_if_capturing(st, "cudaFreeAsync");
  return cudaFree(p);
}
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) { *s = new CUstream_st; return cudaSuccess; }
cudaError_t cudaStreamDestroy(cudaStream_t s) { delete s; return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t s) { fail_if_capturing(s, "sync"); return cudaSuccess; }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { *e = new CUevent_st; return cudaSuccess; }
cudaError_t cudaEventCreate(cudaEvent_t* e) { *e = new CUevent_st; return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t, cudaEvent_t) { *ms = 0.0f; return cudaSuccess; }
cudaError_t cudaEventDestroy(cudaEvent_t e) { delete e; return cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t s) { fail_if_capturing(s, "event record"); return cudaSuccess; }
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
  if (!s || s->capturing) return cudaErrorInvalidValue;
  s->capturing = true;
  s->graph = new EmuGraph;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* g) {
  if (!s || !s->capturing) return cudaErrorInvalidValue;
  s->capturing = false;
  *g = s->graph;
  s->graph = nullptr;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long) {
  *e = new EmuGraph(*g);
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) { delete g; return cudaSuccess; }
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) { delete e; return cudaSuccess; }

cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s) {
  fail_if_capturing(s, "graph launch");
  ++g_graph_launches;
  for (auto& op : e->ops) op();
  return cudaSuccess;
}
namespace {
struct ReportGraphs {
  ~ReportGraphs() { std::fprintf(stderr, "EMU: %d graph launches\n", g_graph_launches); }
} g_report_graphs;
}
