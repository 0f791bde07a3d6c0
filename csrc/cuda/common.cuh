// Shared by every CUDA source: error checks that become Python exceptions (through the binding
// layer), the launch helpers, and the general utilities the kernels share: integer rounding,
// the SM count, scratch memory for one op (Workspace) and a deterministic block reduction.
// Every runtime call and every launch is checked; the op name travels in the message so a
// failure says which op it came from.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/memory.h"

namespace alexnet_ext::cuda {

// Raised for any CUDA runtime error; the binding maps it to alexnet_ext.cuda.CudaError.
struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Raised when device memory runs out even after the cache is emptied; mapped to MemoryError.
struct OutOfMemory : std::runtime_error {
  size_t bytes;
  OutOfMemory(size_t b, int device, const std::string& detail)
      : std::runtime_error("CUDA out of memory: could not allocate " + std::to_string(b) +
                           " bytes on device " + std::to_string(device) + " (" + detail + ")"),
        bytes(b) {}
};

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw CudaError(std::string(what) + ": " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
}

// After a kernel launch: catches bad launch configurations at once. Asynchronous faults surface
// at the next synchronising call, which is checked too.
inline void check_launch(const char* op) { check(cudaGetLastError(), op); }

// Every kernel launch goes through here: tools/cuda_emu (ALEXNET_EXT_CUDA_EMULATION) supplies its
// own launch() that runs the kernel on a CPU. No kernel here uses dynamic shared memory. (This
// header is also included by host-only C++ files, which see no launch().)
#if defined(__CUDACC__) && !defined(ALEXNET_EXT_CUDA_EMULATION)
template <class... P, class... A>
void launch(void (*kernel)(P...), dim3 grid, dim3 block, cudaStream_t stream, A... args) {
  kernel<<<grid, block, 0, stream>>>(args...);
}
#endif

// Makes `device` current for a scope and restores the caller's device after (exceptions too).
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    check(cudaGetDevice(&prev_), "cudaGetDevice");
    if (prev_ != device) check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceScope() { cudaSetDevice(prev_); }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int prev_ = 0;
};

inline unsigned blocks_for(int64_t work, int threads, int64_t max_blocks = 65535LL * 16) {
  int64_t b = (work + threads - 1) / threads;
  if (b < 1) b = 1;
  return static_cast<unsigned>(b < max_blocks ? b : max_blocks);
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Multiprocessors of the current device (cached per device; the tile and split heuristics ask
// on every call).
inline int sm_count() {
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  static std::atomic<int> cache[64];  // zero (unknown) until first asked
  if (dev >= 0 && dev < 64) {
    const int v = cache[dev].load(std::memory_order_relaxed);
    if (v > 0) return v;
  }
  int sms = 0;
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev),
        "cudaDeviceGetAttribute");
  sms = std::max(sms, 1);
  if (dev >= 0 && dev < 64) cache[dev].store(sms, std::memory_order_relaxed);
  return sms;
}

// Scratch memory of one op from the caching allocator on the op's stream, on the current device:
// freeing it right after the launches is safe because a block is only handed out again for work
// queued later on the same stream.
class Workspace {
 public:
  Workspace(size_t bytes, cudaStream_t stream) {
    if (bytes == 0) return;
    int dev = 0;
    check(cudaGetDevice(&dev), "cudaGetDevice");
    ptr_ = device_alloc(bytes, dev, stream);
  }
  ~Workspace() { device_free(ptr_); }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  template <class T>
  T* get() const { return static_cast<T*>(ptr_); }

 private:
  void* ptr_ = nullptr;
};

#if defined(__CUDACC__) || defined(ALEXNET_EXT_CUDA_EMULATION)
// Block-wide reduction of v with `op` over a block of exactly T threads (T a power of two,
// blockDim.x == T), deterministic: a fixed tree in shared memory, red[T] (element i combines
// with i + s for s = T/2, T/4, ..., 1), so the result depends only on the inputs. Every thread
// of the block must call it; all get the result. Barriers only, no warp shuffles (so the
// emulator's OS-thread mode under ThreadSanitizer runs it too).
template <int T, class V, class Op>
__device__ V block_reduce(V v, V* red, Op op) {
  red[threadIdx.x] = v;
  __syncthreads();
#pragma unroll 1
  for (int s = T / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) red[threadIdx.x] = op(red[threadIdx.x], red[threadIdx.x + s]);
    __syncthreads();
  }
  const V total = red[0];
  __syncthreads();  // red may be written again by the caller's next call
  return total;
}

// The operands come from shared memory, not from a multiply, so nothing can contract into an FMA.
struct SumOp {
  template <class V>
  __device__ V operator()(V a, V b) const { return a + b; }
};
struct MaxOp {  // ignores NaNs, as fmaxf does
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

template <int T, class V>
__device__ V block_sum(V v, V* red) { return block_reduce<T>(v, red, SumOp{}); }
template <int T>
__device__ float block_max(float v, float* red) { return block_reduce<T>(v, red, MaxOp{}); }
#endif

}  // namespace alexnet_ext::cuda
