// The execution half of the CPU runtime behind tools/cuda_emu/cuda_runtime.h (the model is
// described there; emu.cpp is the other half: devices, memory, streams and the runtime API).
//
// Threads of a block: fibers on one OS thread by default (fast, deterministic; __syncthreads and
// warp operations switch back to a round-robin scheduler), or with -DEMU_OS_THREADS real threads
// meeting at a real barrier, so that ThreadSanitizer sees every shared-memory access that no
// barrier orders (the conv sources only: warp operations are fiber-only).
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#ifndef EMU_OS_THREADS
#include <ucontext.h>
#else
#include <atomic>
#endif

#include "cuda_runtime.h"

thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace emu {

void fail(const std::string& what) {
  std::fprintf(stderr, "cuda_emu: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

namespace {

dim3 thread_index(int i, dim3 bdim) {
  return dim3(i % bdim.x, (i / bdim.x) % bdim.y, i / (bdim.x * bdim.y));
}

int linear_thread() {
  return static_cast<int>(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
}

#ifndef EMU_OS_THREADS
// ---------------------------------------------------------------- fibers
// Switching: glibc's swapcontext saves the signal mask with a system call at every switch, which
// dominates kernels with many barriers; on x86-64 a switch of the callee-saved registers and the
// stack pointer does (with ucontext kept for AddressSanitizer, which understands it).
#if defined(__x86_64__) && !defined(__SANITIZE_ADDRESS__)
#define EMU_FAST_SWITCH 1
extern "C" void emu_switch(void** save_sp, void* load_sp);
asm(R"(
  .text
  .globl emu_switch
  .type emu_switch, @function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emu_switch, .-emu_switch
)");
#endif

enum class State { Ready, AtBarrier, AtWarp, Done };
struct Fiber {
#ifdef EMU_FAST_SWITCH
  void* sp = nullptr;
#else
  ucontext_t ctx;
#endif
  std::unique_ptr<char[]> stack;
  State state = State::Ready;
  uint64_t warp_values[32];
};
struct Warp {
  unsigned arrived = 0, expected = 0;
  uint64_t values[32];
};
constexpr size_t kStack = 256 * 1024;
std::vector<Fiber> fibers;
std::vector<Warp> warps;
int current = -1, block_threads = 0;
const std::function<void()>* body_fn = nullptr;

#ifdef EMU_FAST_SWITCH
void* scheduler_sp = nullptr;

void to_scheduler() { emu_switch(&fibers[current].sp, scheduler_sp); }
void to_fiber(int i) { emu_switch(&scheduler_sp, fibers[i].sp); }

[[noreturn]] void fiber_entry() {
  (*body_fn)();
  fibers[current].state = State::Done;
  void* discard;
  emu_switch(&discard, scheduler_sp);  // never resumed
  __builtin_unreachable();
}

// A new fiber's stack as emu_switch leaves a suspended one: control words, six callee-saved
// registers, then the "return address" fiber_entry, entered with the stack aligned as after a call.
void start_fiber(Fiber& f) {
  auto top = reinterpret_cast<uintptr_t>(f.stack.get() + kStack) & ~uintptr_t(15);
  auto* p = reinterpret_cast<uint64_t*>(top);
  *--p = 0;                                                  // fiber_entry's own return slot
  *--p = reinterpret_cast<uint64_t>(&fiber_entry);
  for (int r = 0; r < 6; ++r) *--p = 0;                      // rbp rbx r12 r13 r14 r15
  uint32_t control[2] = {0x1F80u, 0x037Fu};                  // MXCSR and x87 control word defaults
  *--p = 0;
  std::memcpy(p, control, sizeof(control));
  f.sp = p;
}
#else
ucontext_t scheduler;

void fiber_main() {
  (*body_fn)();
  fibers[current].state = State::Done;  // returning resumes `scheduler` through uc_link
}

void to_scheduler() { swapcontext(&fibers[current].ctx, &scheduler); }
void to_fiber(int i) { swapcontext(&scheduler, &fibers[i].ctx); }

void start_fiber(Fiber& f) {
  getcontext(&f.ctx);
  f.ctx.uc_stack.ss_sp = f.stack.get();
  f.ctx.uc_stack.ss_size = kStack;
  f.ctx.uc_link = &scheduler;
  makecontext(&f.ctx, fiber_main, 0);
}
#endif

void run_block(dim3 bidx, dim3 bdim, dim3 gdim, const std::function<void()>& body) {
  const int n = static_cast<int>(bdim.x * bdim.y * bdim.z);
  if (static_cast<int>(fibers.size()) < n) fibers.resize(n);
  warps.assign((n + 31) / 32, Warp{});
  block_threads = n;
  body_fn = &body;
  blockIdx = bidx;
  blockDim = bdim;
  gridDim = gdim;
  for (int i = 0; i < n; ++i) {
    Fiber& f = fibers[i];
    if (!f.stack) f.stack.reset(new char[kStack]);
    f.state = State::Ready;
    start_fiber(f);
  }
  // Each round runs every ready thread up to its next barrier, warp operation or end.
  for (;;) {
    bool ran = false;
    for (int i = 0; i < n; ++i) {
      if (fibers[i].state != State::Ready) continue;
      ran = true;
      current = i;
      threadIdx = thread_index(i, bdim);
      to_fiber(i);
    }
    if (ran) continue;
    int done = 0, barrier = 0, warp = 0;
    for (int i = 0; i < n; ++i) {
      done += fibers[i].state == State::Done;
      barrier += fibers[i].state == State::AtBarrier;
      warp += fibers[i].state == State::AtWarp;
    }
    if (done == n) break;
    if (warp > 0)  // nobody left to complete their warp operation: a GPU would hang
      fail("a warp operation waits for lanes that exited or never reach it (block " +
           std::to_string(bidx.x) + "," + std::to_string(bidx.y) + "," + std::to_string(bidx.z) + ")");
    if (done > 0)  // some threads ended while others wait at a barrier: a GPU would hang
      fail("divergent __syncthreads: threads of a block exited while others wait at a barrier");
    for (int i = 0; i < n; ++i) fibers[i].state = State::Ready;  // everybody reached the barrier
  }
  current = -1;
}

}  // namespace

void sync_block() {
  if (current < 0) fail("__syncthreads outside a kernel");
  fibers[current].state = State::AtBarrier;
  to_scheduler();
}

void warp_exchange(unsigned mask, uint64_t value, uint64_t* all) {
  if (current < 0) fail("warp operation outside a kernel");
  const int lane = current % 32, w = current / 32;
  if (!(mask >> lane & 1u)) fail("warp operation by a lane its mask does not name");
  for (int l = 0; l < 32; ++l)
    if ((mask >> l & 1u) && w * 32 + l >= block_threads)
      fail("warp operation's mask names lanes beyond the block");
  Warp& wp = warps[w];
  if (wp.arrived == 0)
    wp.expected = mask;
  else if (wp.expected != mask)
    fail("lanes of a warp meet at a warp operation with different masks");
  wp.values[lane] = value;
  wp.arrived |= 1u << lane;
  if (wp.arrived == wp.expected) {  // the last lane in: hand everybody the values
    for (int l = 0; l < 32; ++l) {
      if (!(mask >> l & 1u)) continue;
      Fiber& f = fibers[w * 32 + l];
      std::memcpy(f.warp_values, wp.values, sizeof(wp.values));
      if (l != lane) f.state = State::Ready;
    }
    wp.arrived = 0;
  } else {
    fibers[current].state = State::AtWarp;
    to_scheduler();
  }
  std::memcpy(all, fibers[current].warp_values, sizeof(uint64_t) * 32);
}

int lane_id() { return linear_thread() % 32; }
void atomic_lock() {}
void atomic_unlock() {}

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
std::mutex atomics;

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
void warp_exchange(unsigned, uint64_t, uint64_t*) {
  fail("warp operations are emulated with fibers only (build without -DEMU_OS_THREADS)");
}
int lane_id() { return linear_thread() % 32; }
void atomic_lock() { atomics.lock(); }
void atomic_unlock() { atomics.unlock(); }
#endif

void require_lane(unsigned mask, int lane, const char* op) {
  if (lane < 0 || lane > 31 || !(mask >> lane & 1u))
    fail(std::string(op) + " reads a lane its mask does not name");
}

void run_grid(dim3 grid, dim3 block, const std::function<void()>& body) {
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) run_block(dim3(x, y, z), block, grid, body);
}

}  // namespace emu

void __syncthreads() { emu::sync_block(); }
