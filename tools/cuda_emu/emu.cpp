// CPU runtime for tools/cuda_emu/cuda_runtime.h. Blocks run one after another; the threads of a
// block run either as fibers on one OS thread (default: fast and deterministic, __syncthreads is
// a switch back to a round-robin scheduler) or, with -DEMU_OS_THREADS, as real threads meeting at
// a real barrier (for ThreadSanitizer, which then sees every shared-memory access that is not
// ordered by a barrier). Device memory is host memory, so AddressSanitizer bounds-checks it.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

#ifndef EMU_OS_THREADS
#include <ucontext.h>
#endif

#include "cuda_runtime.h"
#include "cuda/memory.h"

thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace emu {
namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "cuda_emu: %s\n", what);
  std::abort();
}

dim3 thread_index(int i, dim3 bdim) {
  return dim3(i % bdim.x, (i / bdim.x) % bdim.y, i / (bdim.x * bdim.y));
}

#ifndef EMU_OS_THREADS
// ---------------------------------------------------------------- fibers
struct Fiber {
  ucontext_t ctx;
  std::unique_ptr<char[]> stack;
  bool done = false;
};
constexpr size_t kStack = 512 * 1024;
ucontext_t scheduler;
std::vector<Fiber> fibers;
int current = -1;
const std::function<void()>* body_fn = nullptr;

void fiber_main() {
  (*body_fn)();
  fibers[current].done = true;  // returning resumes `scheduler` through uc_link
}

void run_block(dim3 bidx, dim3 bdim, dim3 gdim, const std::function<void()>& body) {
  const int n = static_cast<int>(bdim.x * bdim.y * bdim.z);
  if (static_cast<int>(fibers.size()) < n) fibers.resize(n);
  body_fn = &body;
  blockIdx = bidx;
  blockDim = bdim;
  gridDim = gdim;
  for (int i = 0; i < n; ++i) {
    Fiber& f = fibers[i];
    if (!f.stack) f.stack.reset(new char[kStack]);
    f.done = false;
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack.get();
    f.ctx.uc_stack.ss_size = kStack;
    f.ctx.uc_link = &scheduler;
    makecontext(&f.ctx, fiber_main, 0);
  }
  // Each round runs every live thread up to its next __syncthreads or its end.
  for (;;) {
    int finished = 0, waiting = 0;
    for (int i = 0; i < n; ++i) {
      if (fibers[i].done) continue;
      current = i;
      threadIdx = thread_index(i, bdim);
      swapcontext(&scheduler, &fibers[i].ctx);
      if (fibers[i].done)
        ++finished;
      else
        ++waiting;
    }
    if (waiting == 0) break;
    if (finished > 0)  // some threads ended while others wait at a barrier: a GPU would hang
      fail("divergent __syncthreads: threads of a block exited while others wait at a barrier");
  }
  current = -1;
}

}  // namespace

void sync_block() {
  if (current < 0) fail("__syncthreads outside a kernel");
  swapcontext(&fibers[current].ctx, &scheduler);
}

#else
// ---------------------------------------------------------------- OS threads
class Barrier {
 public:
  void reset(int n) { expected_ = n; }
  void wait() {
    const unsigned gen = gen_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) + 1 == expected_) {
      count_.store(0, std::memory_order_relaxed);
      gen_.fetch_add(1, std::memory_order_acq_rel);
      gen_.notify_all();
      return;
    }
    while (gen_.load(std::memory_order_acquire) == gen) gen_.wait(gen, std::memory_order_acquire);
  }

 private:
  std::atomic<int> count_{0};
  std::atomic<unsigned> gen_{0};
  int expected_ = 0;
};

Barrier barrier;

class Pool {
 public:
  ~Pool() {
    stop_ = true;
    start_.fetch_add(1, std::memory_order_release);
    start_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void run_block(dim3 bidx, dim3 bdim, dim3 gdim, const std::function<void()>& body) {
    const int n = static_cast<int>(bdim.x * bdim.y * bdim.z);
    while (static_cast<int>(threads_.size()) < n) {
      const int i = static_cast<int>(threads_.size());
      threads_.emplace_back([this, i] { worker(i); });
    }
    barrier.reset(n);
    body_ = &body;
    active_ = n;
    bidx_ = bidx;
    bdim_ = bdim;
    gdim_ = gdim;
    // Every worker checks in, idle ones too, so that the next block's setup is ordered after
    // all of this block's reads of it.
    pending_.store(static_cast<int>(threads_.size()), std::memory_order_relaxed);
    start_.fetch_add(1, std::memory_order_release);
    start_.notify_all();
    for (int p = pending_.load(std::memory_order_acquire); p != 0;
         p = pending_.load(std::memory_order_acquire))
      pending_.wait(p, std::memory_order_acquire);
  }

 private:
  void worker(int i) {
    unsigned seen = 0;
    for (;;) {
      start_.wait(seen, std::memory_order_acquire);
      const unsigned now = start_.load(std::memory_order_acquire);
      if (now == seen) continue;
      seen = now;
      if (stop_) return;
      if (i < active_) {
        threadIdx = thread_index(i, bdim_);
        blockIdx = bidx_;
        blockDim = bdim_;
        gridDim = gdim_;
        (*body_)();
      }
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_all();
    }
  }

  std::vector<std::thread> threads_;
  std::atomic<unsigned> start_{0};
  std::atomic<int> pending_{0};
  const std::function<void()>* body_ = nullptr;
  int active_ = 0;
  bool stop_ = false;
  dim3 bidx_, bdim_, gdim_;
};

void run_block(dim3 bidx, dim3 bdim, dim3 gdim, const std::function<void()>& body) {
  static Pool pool;
  pool.run_block(bidx, bdim, gdim, body);
}

}  // namespace

void sync_block() { barrier.wait(); }
#endif

void run_grid(dim3 grid, dim3 block, const std::function<void()>& body) {
  // The launch limits a GPU enforces.
  const unsigned long threads = static_cast<unsigned long>(block.x) * block.y * block.z;
  if (threads == 0 || threads > 1024) fail("invalid block size");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 ||
      grid.z > 65535)
    fail("invalid grid size");
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) run_block(dim3(x, y, z), block, grid, body);
}

}  // namespace emu

void __syncthreads() { emu::sync_block(); }

cudaError_t cudaGetLastError() { return cudaSuccess; }
cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr, int) {
  const char* s = std::getenv("EMU_SMS");  // the SM count the tile/split heuristics see
  *value = s ? std::atoi(s) : 132;
  return cudaSuccess;
}

namespace alexnet_ext::cuda {
void* device_alloc(size_t bytes, int, cudaStream_t) {
  void* p = nullptr;  // exactly `bytes`, so that AddressSanitizer sees any overrun
  if (posix_memalign(&p, 256, bytes ? bytes : 1) != 0) emu::fail("out of memory");
  return p;
}
void device_free(void* ptr) { std::free(ptr); }
}  // namespace alexnet_ext::cuda
