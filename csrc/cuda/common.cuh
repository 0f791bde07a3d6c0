// Shared by every CUDA source: error checks that become Python exceptions (through the binding
// layer), and the launch helpers. Every runtime call and every launch is checked; the op name
// travels in the message so a failure says which op it came from.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

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

}  // namespace alexnet_ext::cuda
