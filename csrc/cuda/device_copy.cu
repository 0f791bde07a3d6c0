// Copies between GPUs: see device_copy.h for the routes and the ordering they guarantee.
// Events order the streams (no host synchronisation); each is destroyed right after its waits
// are queued, which CUDA allows (its resources go once the work completes).
#include <initializer_list>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "cuda/common.cuh"
#include "cuda/device_copy.h"
#include "cuda/memory.h"
#include "cuda/stream.h"

namespace alexnet_ext::cuda {
namespace {

std::mutex mu;

// One non-blocking copy stream per (device, purpose), created on first use, never destroyed.
cudaStream_t copy_stream(int device) {
  static std::map<int, cudaStream_t> streams;
  std::lock_guard<std::mutex> lock(mu);
  auto it = streams.find(device);
  if (it != streams.end()) return it->second;
  DeviceScope scope(device);
  cudaStream_t s;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate (copy stream)");
  streams[device] = s;
  return s;
}

// An event recorded now on `stream` of `device` (current device: `device`).
cudaEvent_t record(cudaStream_t stream, const char* what) {
  cudaEvent_t e;
  check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), what);
  check(cudaEventRecord(e, stream), what);
  return e;
}

void wait(cudaStream_t stream, cudaEvent_t e, const char* what) {
  check(cudaStreamWaitEvent(stream, e, 0), what);
}

// One leg of a copy, on the current device: stream cs waits for the events `after`, queues
// copy(cs), and records the event that marks the leg's end; `current` (the caller's stream, on
// either device) waits for it too. Returns that event.
template <class Copy>
cudaEvent_t copy_leg(cudaStream_t cs, std::initializer_list<cudaEvent_t> after, Copy copy,
                     const char* recorded, cudaStream_t current, const char* current_waits) {
  for (cudaEvent_t e : after) wait(cs, e, "copy: cudaStreamWaitEvent");
  copy(cs);
  const cudaEvent_t done = record(cs, recorded);
  wait(current, done, current_waits);
  return done;
}

}  // namespace

bool peer_access(int device, int peer) {
  static std::map<std::pair<int, int>, bool> known;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = known.find({device, peer});
    if (it != known.end()) return it->second;
  }
  int can = 0;
  check(cudaDeviceCanAccessPeer(&can, device, peer), "cudaDeviceCanAccessPeer");
  if (can) {
    DeviceScope scope(device);
    const cudaError_t err = cudaDeviceEnablePeerAccess(peer, 0);
    if (err == cudaErrorPeerAccessAlreadyEnabled)
      cudaGetLastError();  // enabled by someone else (PyTorch, say): fine
    else
      check(err, "cudaDeviceEnablePeerAccess");
  }
  std::lock_guard<std::mutex> lock(mu);
  known[{device, peer}] = can != 0;
  return can != 0;
}

void copy_between(void* dst, int dst_device, const void* src, int src_device, size_t bytes,
                  CopyRoute route) {
  if (bytes == 0) return;
  const cudaStream_t current = current_stream();
  if (dst_device == src_device && route == CopyRoute::Auto) {
    DeviceScope scope(dst_device);
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, current), "copy: cudaMemcpyAsync");
    return;
  }
  // The copy streams start the copy only after both devices' earlier work: the producer of src
  // on one side, and on the other whatever still reads or writes dst (its last reader, say, or
  // the memset of a fresh zeros()).
  cudaEvent_t src_ready, dst_ready;
  {
    DeviceScope scope(src_device);
    src_ready = record(current, "copy: cudaEventRecord (source ready)");
  }
  {
    DeviceScope scope(dst_device);
    dst_ready = record(current, "copy: cudaEventRecord (destination ready)");
  }
  // An explicit route on one device takes the two-GPU path anyway (a "peer" copy within the
  // device, or a trip through the host), so one GPU exercises the code two GPUs run.
  const bool peer = route != CopyRoute::Host &&
                    (dst_device == src_device ||
                     (peer_access(dst_device, src_device) && peer_access(src_device, dst_device)));
  if (peer) {
    const cudaStream_t cs = copy_stream(dst_device);
    cudaEvent_t done;
    {
      DeviceScope scope(dst_device);
      done = copy_leg(cs, {src_ready, dst_ready}, [&](cudaStream_t s) {
        check(cudaMemcpyPeerAsync(dst, dst_device, src, src_device, bytes, s),
              "copy: cudaMemcpyPeerAsync");
      }, "copy: cudaEventRecord (copied)", current, "copy: cudaStreamWaitEvent (destination)");
    }
    {
      DeviceScope scope(src_device);
      wait(current, done, "copy: cudaStreamWaitEvent (source)");
    }
    cudaEventDestroy(done);
  } else {
    if (route == CopyRoute::Peer)
      throw CudaError("copy: no peer access between devices " + std::to_string(src_device) +
                      " and " + std::to_string(dst_device));
    const cudaStream_t cs_src = copy_stream(src_device), cs_dst = copy_stream(dst_device);
    void* staging = nullptr;
    cudaEvent_t staged, done;
    {
      DeviceScope scope(src_device);
      staging = pinned_acquire(bytes);
      staged = copy_leg(cs_src, {src_ready}, [&](cudaStream_t s) {
        check(cudaMemcpyAsync(staging, src, bytes, cudaMemcpyDeviceToHost, s),
              "copy: cudaMemcpyAsync (to host)");
      }, "copy: cudaEventRecord (staged)", current, "copy: cudaStreamWaitEvent (source)");
    }
    {
      DeviceScope scope(dst_device);
      done = copy_leg(cs_dst, {staged, dst_ready}, [&](cudaStream_t s) {
        check(cudaMemcpyAsync(dst, staging, bytes, cudaMemcpyHostToDevice, s),
              "copy: cudaMemcpyAsync (to device)");
      }, "copy: cudaEventRecord (copied)", current, "copy: cudaStreamWaitEvent (destination)");
    }
    {
      // The staging buffer goes back to the cache once the second copy has read it; its event is
      // recorded on the source device's copy stream, made to wait for that copy.
      DeviceScope scope(src_device);
      wait(cs_src, done, "copy: cudaStreamWaitEvent");
      pinned_release(staging, cs_src);
    }
    cudaEventDestroy(staged);
    cudaEventDestroy(done);
  }
  cudaEventDestroy(src_ready);
  cudaEventDestroy(dst_ready);
}

}  // namespace alexnet_ext::cuda
