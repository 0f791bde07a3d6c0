// Value checks that need the data (label ranges, max-pool switch ranges) run inside the kernels
// on the GPU: a thread that meets a bad value records its flat position here and never indexes
// memory with it. The binding reads the record back after the launch, which waits for the stream:
// that synchronisation is the price of the check, one per op that has one (softmax_log_loss_undo,
// top_k_errors, max_pool_undo; softmax_log_loss syncs anyway to return its loss). Copying the
// labels or switches to the host instead would cost the same sync plus a transfer.
//
// Usable from .cu files (the device half) and from the C++ bindings (the host half).
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

#include "cuda/common.cuh"
#include "cuda/memory.h"

namespace alexnet_ext::cuda {

// In device memory. first: smallest flat position of a bad value (~0ull when none was seen);
// count: how many bad values. Both are order-independent, so the report is deterministic.
struct BadValues {
  unsigned long long first;
  unsigned long long count;
};

#if defined(__CUDACC__) || defined(ALEXNET_EXT_CUDA_EMULATION)
__device__ inline void report_bad(BadValues* r, int64_t position) {
  atomicMin(&r->first, static_cast<unsigned long long>(position));
  atomicAdd(&r->count, 1ull);
}
#endif

// Host side: a cleared record on `stream` (from the caching allocator), read back once.
class BadValueReport {
 public:
  BadValueReport(int device, cudaStream_t stream) : stream_(stream) {
    ptr_ = static_cast<BadValues*>(device_alloc(sizeof(BadValues), device, stream));
    // first = all ones, count = 0: two memsets, queued before the kernel on the same stream.
    check(cudaMemsetAsync(&ptr_->first, 0xFF, sizeof(ptr_->first), stream), "cudaMemsetAsync");
    check(cudaMemsetAsync(&ptr_->count, 0, sizeof(ptr_->count), stream), "cudaMemsetAsync");
  }
  ~BadValueReport() { device_free(ptr_); }
  BadValueReport(const BadValueReport&) = delete;
  BadValueReport& operator=(const BadValueReport&) = delete;

  BadValues* device_ptr() const { return ptr_; }

  // Waits for the stream (the kernel must have been queued), then returns the record.
  BadValues read() const {
    BadValues h{};
    check(cudaMemcpyAsync(&h, ptr_, sizeof(h), cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync");
    check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    return h;
  }

 private:
  cudaStream_t stream_;
  BadValues* ptr_ = nullptr;
};

// A scratch block from the caching allocator for the duration of one op (freed on scope exit,
// exceptions included; stream-ordered reuse makes the free safe while kernels still use it).
class Scratch {
 public:
  Scratch(size_t bytes, int device, cudaStream_t stream)
      : ptr_(bytes ? device_alloc(bytes, device, stream) : nullptr) {}
  ~Scratch() {
    if (ptr_) device_free(ptr_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }

 private:
  void* ptr_;
};

// One element of a device array, copied to the host to quote a bad value in an error message
// (error path only; synchronises the stream).
template <class T>
T fetch_element(const T* base, int64_t index, cudaStream_t stream) {
  T v{};
  check(cudaMemcpyAsync(&v, base + index, sizeof(T), cudaMemcpyDeviceToHost, stream),
        "cudaMemcpyAsync");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  return v;
}

}  // namespace alexnet_ext::cuda
