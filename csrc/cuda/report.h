// Value checks that need the data (label ranges, max-pool switch ranges) run inside the kernels
// on the GPU: a thread that meets a bad value records its flat position here and never indexes
// memory with it. Two ways to get the verdict to the host:
// - BadValueReport: read back right after the launch (a stream synchronisation; used by the ops
//   that return a host value anyway: softmax_log_loss, top_k_errors, label_ranks);
// - defer_check(): no wait. The record is a slot of a per-device table; the slot's bad value is
//   captured on the stream right after the op (capture_bad_value), and collect_deferred() reads
//   every pending slot at the next point where the host waits anyway (the loss read at the end of
//   a step, DeviceArray.get, synchronize), where the binding raises the op's own error. Used by
//   the ops inside a training step's backward pass (max_pool_undo, softmax_log_loss_undo).
//
// Usable from .cu files (the device half) and from the C++ bindings (the host half).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

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

// A deferred check's record: the op's BadValues and the value at position `first` (captured on the
// stream after the op, while the array is still alive).
struct DeferredRecord {
  BadValues bad;
  long long value;
};

// Turns a bad record into the op's error message (called on the host by collect_deferred).
using DeferredFormat = std::function<std::string(const DeferredRecord&)>;

// A cleared record for one op queued on `stream` of `device` (the current device). Never waits,
// except once per kDeferredSlots checks queued without a collect in between (the table is then
// collected to make room, and a bad verdict is kept for the next collect).
constexpr int kDeferredSlots = 1024;
DeferredRecord* defer_check(int device, cudaStream_t stream, DeferredFormat format);
// Queues record->value = base[record->bad.first] when the op found a bad value (cuda/report.cu).
void capture_bad_value(DeferredRecord* record, const int32_t* base, cudaStream_t stream);
void capture_bad_value(DeferredRecord* record, const int64_t* base, cudaStream_t stream);
// Reads the pending records of `device` (waits for the streams they were queued on) and clears
// the table; the message of the first bad one in queue order, or "" when all were good.
std::string collect_deferred(int device);
// How many checks of `device` await a collect (for tests).
int deferred_pending(int device);

// Deferred checks inside a CUDA graph. While a GraphChecks is attached to a capturing stream,
// defer_check on that stream takes its record from the graph's memory pool (the record's clearing
// memsets and the op are then part of the graph) and keeps it, with its message, in the
// GraphChecks instead of the table. arm_graph_checks, right before each launch of the graph on
// `stream`, makes those records pending like an eager op's, so the next collect (queued after the
// launch) reads and raises them. A record still pending from the previous launch is collected
// there first (its verdict kept): the new launch clears it. defer_check on a capturing stream with no GraphChecks attached throws.
struct GraphChecks {
  int device = 0;
  std::vector<std::pair<DeferredRecord*, DeferredFormat>> checks;
};
void attach_graph_checks(cudaStream_t stream, GraphChecks* checks);  // nullptr: detach
void arm_graph_checks(const GraphChecks& checks, cudaStream_t stream);
void free_graph_checks(GraphChecks& checks);  // the records back to the graph's pool

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
