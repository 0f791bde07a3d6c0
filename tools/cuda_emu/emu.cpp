// The runtime half of the CPU runtime behind tools/cuda_emu/cuda_runtime.h (the model is
// described there; emu_kernels.cpp is the other half: how a grid's blocks and threads run).
//
// Streams: a queue per stream; queued work runs when something waits for it. Dependencies are
// (stream, sequence number) pairs: an event is the pair at record time, a stream wait adds the pair
// to the waiting stream's next item, and the legacy default stream orders itself with every
// blocking stream of its device the way CUDA defines. Everything is serialised by one lock, so a
// host thread per stream (the data loader's copy thread, say) is safe. Stream capture lives in
// emu_graph.cpp: every queueing, waiting or unsafe call here asks it first (emu_capture.h).
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cuda_runtime.h"
#include "emu_capture.h"

namespace emu {

// ================================================================ runtime state
namespace {

std::recursive_mutex& lock() {
  static auto* m = new std::recursive_mutex;
  return *m;
}
using Guard = std::lock_guard<std::recursive_mutex>;

int env_int(const char* name, int fallback) {
  const char* s = std::getenv(name);
  return s && *s ? std::atoi(s) : fallback;
}
int device_count() {
  static const int n = env_int("ALEXNET_EXT_EMU_DEVICES", 2);
  return n;
}
bool peer_supported() {
  static const bool p = env_int("ALEXNET_EXT_EMU_PEER", 1) != 0;
  return p;
}

thread_local int current_device = 0;
thread_local cudaError_t last_error = cudaSuccess;
thread_local std::string last_message;

// ---------------------------------------------------------------- memory registry
struct Allocation {
  size_t bytes;
  int device;           // -1: pinned host memory
  bool registered = false;  // cudaHostRegister'ed: the caller's memory, never freed here
};
std::map<uintptr_t, Allocation> allocations;
std::vector<std::vector<bool>> peer_enabled;  // [device][peer]

const std::pair<const uintptr_t, Allocation>* find_allocation(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  auto it = allocations.upper_bound(a);
  if (it == allocations.begin()) return nullptr;
  --it;
  // One past the end counts (an empty view at the end of a block).
  return a <= it->first + it->second.bytes ? &*it : nullptr;
}

bool can_access(int device, int owner) {
  if (owner == device || owner < 0) return true;  // pinned host memory is mapped everywhere
  return peer_enabled.size() > static_cast<size_t>(device) && peer_enabled[device][owner];
}

// ---------------------------------------------------------------- streams
struct Stream {
  int device;
  bool blocking;  // orders itself with the legacy default stream
  bool legacy;
  std::deque<std::pair<std::vector<std::pair<Stream*, uint64_t>>, std::function<void()>>> queue;
  uint64_t queued = 0, done = 0;
  bool running = false;
  std::vector<std::pair<Stream*, uint64_t>> next_deps;  // from cudaStreamWaitEvent
};
struct Event {
  Stream* stream = nullptr;
  uint64_t seq = 0;
  int device = 0;
};
std::vector<std::unique_ptr<Stream>> streams;  // never freed: events may point at destroyed ones
std::vector<Stream*> legacy_streams, per_thread_streams;

Stream* make_stream(int device, bool blocking, bool legacy) {
  streams.push_back(std::make_unique<Stream>());
  Stream* s = streams.back().get();
  s->device = device;
  s->blocking = blocking;
  s->legacy = legacy;
  return s;
}

Stream* resolve(cudaStream_t handle) {
  const int d = current_device;
  if (legacy_streams.empty()) {
    for (int i = 0; i < device_count(); ++i) {
      legacy_streams.push_back(make_stream(i, true, true));
      per_thread_streams.push_back(make_stream(i, true, false));
    }
  }
  if (handle == nullptr || handle == cudaStreamLegacy) return legacy_streams[d];
  if (handle == cudaStreamPerThread) return per_thread_streams[d];
  return reinterpret_cast<Stream*>(handle);
}

void run_until(Stream* s, uint64_t seq) {
  if (s->done >= seq) return;
  if (s->running) fail("stream dependency cycle (a GPU would deadlock)");
  s->running = true;
  while (s->done < seq) {
    auto item = std::move(s->queue.front());
    s->queue.pop_front();
    for (auto& [dep, dep_seq] : item.first) run_until(dep, dep_seq);
    item.second();
    ++s->done;
  }
  s->running = false;
}
void drain(Stream* s) {
  // Waits queued by cudaStreamWaitEvent with no work after them yet still hold a synchronize.
  for (auto& [dep, seq] : s->next_deps) run_until(dep, seq);
  run_until(s, s->queued);
}

void drain_device(int device) {
  // Newest streams first: work with no ordering between streams may run in any order, and the
  // reverse of creation order is the one most unlike program order.
  for (auto it = streams.rbegin(); it != streams.rend(); ++it)
    if ((*it)->device == device) drain(it->get());
}

}  // namespace

cudaError_t set_error(cudaError_t err, const std::string& message) {
  last_error = err;
  last_message = message;
  std::fprintf(stderr, "cuda_emu: %s\n", message.c_str());
  return err;
}
std::recursive_mutex& runtime_lock() { return lock(); }
StreamFlags stream_flags(cudaStream_t handle) {
  Guard g(lock());
  const Stream* s = resolve(handle);
  return {s->device, s->blocking, s->legacy};
}

cudaError_t enqueue(cudaStream_t handle, std::function<void()> work) {
  Guard g(lock());
  bool recorded = false;  // into a stream capture (emu_graph.cpp), not queued
  const cudaError_t err = capture_work(handle, work, &recorded);
  if (err != cudaSuccess || recorded) return err;
  Stream* s = resolve(handle);
  std::vector<std::pair<Stream*, uint64_t>> deps = std::move(s->next_deps);
  s->next_deps.clear();
  // The legacy stream waits for all work queued before on the device's blocking streams; a
  // blocking stream waits for the legacy stream's earlier work.
  if (s->legacy) {
    for (auto& other : streams)
      if (other.get() != s && other->device == s->device && other->blocking)
        deps.emplace_back(other.get(), other->queued);
  } else if (s->blocking) {
    Stream* l = legacy_streams[s->device];
    deps.emplace_back(l, l->queued);
  }
  s->queue.emplace_back(std::move(deps), std::move(work));
  ++s->queued;
  return cudaSuccess;
}

bool check_launch_config(dim3 grid, dim3 block, cudaStream_t handle) {
  Guard g(lock());
  const unsigned long threads = static_cast<unsigned long>(block.x) * block.y * block.z;
  if (threads == 0 || threads > 1024 || block.z > 64) {
    set_error(cudaErrorInvalidConfiguration, "kernel launch: invalid block size");
    return false;
  }
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 ||
      grid.z > 65535) {
    set_error(cudaErrorInvalidConfiguration, "kernel launch: invalid grid size");
    return false;
  }
  Stream* s = resolve(handle);
  if (s->device != current_device) {
    set_error(cudaErrorInvalidResourceHandle,
              "kernel launch on device " + std::to_string(current_device) +
                  " into a stream of device " + std::to_string(s->device));
    return false;
  }
  return true;
}

bool check_kernel_pointer(const void* p, int index) {
  if (p == nullptr) return true;
  Guard g(lock());
  const auto* a = find_allocation(p);
  if (!a) {
    set_error(cudaErrorIllegalAddress, "kernel argument " + std::to_string(index) +
                                           " is not device memory (a host pointer?)");
    return false;
  }
  if (!can_access(current_device, a->second.device)) {
    set_error(cudaErrorIllegalAddress,
              "kernel argument " + std::to_string(index) + " points to memory of device " +
                  std::to_string(a->second.device) + ", launched on device " +
                  std::to_string(current_device) + " without peer access");
    return false;
  }
  return true;
}

}  // namespace emu

using namespace emu;

// ================================================================ runtime API
const char* cudaGetErrorName(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorPeerAccessUnsupported: return "cudaErrorPeerAccessUnsupported";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorPeerAccessAlreadyEnabled: return "cudaErrorPeerAccessAlreadyEnabled";
    case cudaErrorPeerAccessNotEnabled: return "cudaErrorPeerAccessNotEnabled";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureMerge: return "cudaErrorStreamCaptureMerge";
    case cudaErrorStreamCaptureUnmatched: return "cudaErrorStreamCaptureUnmatched";
    case cudaErrorStreamCaptureUnjoined: return "cudaErrorStreamCaptureUnjoined";
    case cudaErrorStreamCaptureIsolation: return "cudaErrorStreamCaptureIsolation";
    case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
    case cudaErrorCapturedEvent: return "cudaErrorCapturedEvent";
    case cudaErrorStreamCaptureWrongThread: return "cudaErrorStreamCaptureWrongThread";
  }
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t err) {
  // The emulator's own detail for the error it raised last, else the name.
  return err == last_error && !last_message.empty() ? last_message.c_str() : cudaGetErrorName(err);
}
cudaError_t cudaGetLastError() {
  const cudaError_t e = last_error;
  last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return last_error; }
cudaError_t cudaDriverGetVersion(int* v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceCount(int* count) {
  *count = device_count();
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  *device = current_device;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= device_count())
    return set_error(cudaErrorInvalidDevice, "cudaSetDevice(" + std::to_string(device) + ")");
  current_device = device;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device) {
  if (device < 0 || device >= device_count()) return cudaErrorInvalidDevice;
  *p = cudaDeviceProp{};
  std::snprintf(p->name, sizeof(p->name), "cuda_emu CPU emulator");
  p->totalGlobalMem = size_t(16) << 30;
  p->sharedMemPerBlock = 48 << 10;
  p->maxThreadsPerBlock = 1024;
  p->multiProcessorCount = env_int("EMU_SMS", 132);
  p->major = 9;
  p->minor = 0;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr, int) {
  *value = env_int("EMU_SMS", 132);  // the SM count the tile/split heuristics see
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() {
  Guard g(lock());
  if (cudaError_t e = capture_check_unsafe("cudaDeviceSynchronize", current_device)) return e;
  resolve(nullptr);
  drain_device(current_device);
  return cudaSuccess;
}
cudaError_t cudaDeviceCanAccessPeer(int* can, int device, int peer) {
  if (device < 0 || device >= device_count() || peer < 0 || peer >= device_count())
    return cudaErrorInvalidDevice;
  *can = device != peer && peer_supported();
  return cudaSuccess;
}
cudaError_t cudaDeviceEnablePeerAccess(int peer, unsigned) {
  Guard g(lock());
  if (peer < 0 || peer >= device_count() || peer == current_device) return cudaErrorInvalidDevice;
  if (!peer_supported()) return set_error(cudaErrorPeerAccessUnsupported, "no peer access (ALEXNET_EXT_EMU_PEER=0)");
  if (peer_enabled.empty())
    peer_enabled.assign(device_count(), std::vector<bool>(device_count(), false));
  if (peer_enabled[current_device][peer])
    return set_error(cudaErrorPeerAccessAlreadyEnabled, "peer access already enabled");
  peer_enabled[current_device][peer] = true;
  return cudaSuccess;
}
cudaError_t cudaDeviceDisablePeerAccess(int peer) {
  Guard g(lock());
  if (peer_enabled.empty() || !peer_enabled[current_device][peer]) return cudaErrorPeerAccessNotEnabled;
  peer_enabled[current_device][peer] = false;
  return cudaSuccess;
}

static cudaError_t allocate(void** ptr, size_t bytes, int device) {
  {
    Guard g(lock());
    if (cudaError_t e = capture_check_unsafe(device < 0 ? "cudaHostAlloc" : "cudaMalloc", -1)) return e;
  }
  void* p = nullptr;  // exactly `bytes`, so that AddressSanitizer sees any overrun
  if (posix_memalign(&p, 256, bytes ? bytes : 1) != 0) return cudaErrorMemoryAllocation;
  Guard g(lock());
  allocations[reinterpret_cast<uintptr_t>(p)] = {bytes, device};
  *ptr = p;
  return cudaSuccess;
}
static cudaError_t release(void* ptr, bool pinned) {
  if (!ptr) return cudaSuccess;
  Guard g(lock());
  if (cudaError_t e = capture_check_unsafe(pinned ? "cudaFreeHost" : "cudaFree", -1)) return e;
  auto it = allocations.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == allocations.end() || (it->second.device < 0) != pinned || it->second.registered)
    return set_error(cudaErrorInvalidValue, pinned ? "cudaFreeHost of memory cudaHostAlloc did not return"
                                                   : "cudaFree of memory cudaMalloc did not return");
  // cudaFree and cudaFreeHost wait for the device (every device here, to be safe).
  resolve(nullptr);
  for (auto& s : streams) drain(s.get());
  allocations.erase(it);
  std::free(ptr);
  return cudaSuccess;
}
cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  static const size_t limit = size_t(env_int("ALEXNET_EXT_EMU_MEMORY_GB", 16)) << 30;
  if (bytes > limit)
    return set_error(cudaErrorMemoryAllocation, "cudaMalloc: more than the emulated device holds");
  return allocate(ptr, bytes, current_device);
}
cudaError_t cudaFree(void* ptr) { return release(ptr, false); }
cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned) { return allocate(ptr, bytes, -1); }
cudaError_t cudaMallocHost(void** ptr, size_t bytes) { return allocate(ptr, bytes, -1); }
cudaError_t cudaFreeHost(void* ptr) { return release(ptr, true); }
cudaError_t cudaHostRegister(void* ptr, size_t bytes, unsigned) {
  Guard g(lock());
  const auto a = reinterpret_cast<uintptr_t>(ptr);
  auto next = allocations.lower_bound(a);
  if (find_allocation(ptr) || (next != allocations.end() && next->first < a + bytes))
    return set_error(cudaErrorInvalidValue, "cudaHostRegister: the range overlaps memory CUDA knows");
  allocations[a] = {bytes, -1, true};
  return cudaSuccess;
}
cudaError_t cudaHostUnregister(void* ptr) {
  Guard g(lock());
  auto it = allocations.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == allocations.end() || !it->second.registered)
    return set_error(cudaErrorInvalidValue, "cudaHostUnregister: not a registered range");
  // Copies still reading it must finish first (CUDA's unregister waits the same way).
  resolve(nullptr);
  for (auto& s : streams) drain(s.get());
  allocations.erase(it);
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  *free_bytes = *total_bytes = size_t(16) << 30;
  return cudaSuccess;
}
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attr, const void* ptr) {
  Guard g(lock());
  *attr = cudaPointerAttributes{cudaMemoryTypeUnregistered, -2, nullptr, const_cast<void*>(ptr)};
  if (const auto* a = find_allocation(ptr)) {
    if (a->second.device < 0) {
      *attr = {cudaMemoryTypeHost, current_device, const_cast<void*>(ptr), const_cast<void*>(ptr)};
    } else {
      *attr = {cudaMemoryTypeDevice, a->second.device, const_cast<void*>(ptr), nullptr};
    }
  }
  return cudaSuccess;
}

namespace {
// Where a pointer lives: a device number, -1 pinned host, -2 pageable host.
int where(const void* p) {
  const auto* a = find_allocation(p);
  return a ? a->second.device : -2;
}
bool range_ok(const void* p, size_t bytes) {
  const auto* a = find_allocation(p);
  return !a || reinterpret_cast<uintptr_t>(p) + bytes <= a->first + a->second.bytes;
}

cudaError_t copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t handle,
                 const char* what) {
  if (bytes == 0) return cudaSuccess;
  Guard g(lock());
  const int d = where(dst), s = where(src);
  const bool dst_dev = d >= 0, src_dev = s >= 0;
  const bool ok_kind = kind == cudaMemcpyDefault || (kind == cudaMemcpyHostToDevice && dst_dev && !src_dev) ||
                       (kind == cudaMemcpyDeviceToHost && !dst_dev && src_dev) ||
                       (kind == cudaMemcpyDeviceToDevice && dst_dev && src_dev) ||
                       (kind == cudaMemcpyHostToHost && !dst_dev && !src_dev);
  if (!ok_kind)
    return set_error(cudaErrorInvalidMemcpyDirection,
                     std::string(what) + ": the pointers do not match the copy direction");
  if (!range_ok(dst, bytes) || !range_ok(src, bytes))
    return set_error(cudaErrorInvalidValue, std::string(what) + ": the copy runs past an allocation");
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  if (s == -2 || d == -2) cudaStreamIsCapturing(handle, &capturing);
  if (capturing != cudaStreamCaptureStatusNone)
    return capture_refuse(handle, std::string(what) + " with pageable host memory during a stream "
                          "capture (CUDA stages or waits for such a copy at the call, not at each "
                          "replay; the capture is now invalid)");
  cudaError_t queued;
  if (s == -2) {
    // Pageable source: CUDA stages it before returning, so the caller may reuse it at once.
    auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src),
                                                      static_cast<const char*>(src) + bytes);
    queued = enqueue(handle, [dst, staged] { std::memcpy(dst, staged->data(), staged->size()); });
  } else {
    queued = enqueue(handle, [dst, src, bytes] { std::memcpy(dst, src, bytes); });
  }
  // Into pageable memory the call returns when the copy is done.
  if (d == -2 && queued == cudaSuccess) drain(resolve(handle));
  return queued;
}
}  // namespace

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  Guard g(lock());
  if (cudaError_t e = capture_check_unsafe("cudaMemcpy (synchronous)", -1)) return e;
  const cudaError_t e = copy(dst, src, bytes, kind, nullptr, "cudaMemcpy");
  if (e == cudaSuccess) drain(resolve(nullptr));
  return e;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  return copy(dst, src, bytes, kind, stream, "cudaMemcpyAsync");
}
cudaError_t cudaMemcpyPeerAsync(void* dst, int dst_device, const void* src, int src_device,
                                size_t bytes, cudaStream_t stream) {
  Guard g(lock());
  if (bytes && (where(dst) != dst_device || where(src) != src_device))
    return set_error(cudaErrorInvalidValue, "cudaMemcpyPeerAsync: a pointer is not on the device named");
  return copy(dst, src, bytes, cudaMemcpyDeviceToDevice, stream, "cudaMemcpyPeerAsync");
}
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch,
                              size_t width, size_t height, cudaMemcpyKind kind, cudaStream_t stream) {
  for (size_t r = 0; r < height; ++r) {
    const cudaError_t e = copy(static_cast<char*>(dst) + r * dpitch,
                               static_cast<const char*>(src) + r * spitch, width, kind, stream,
                               "cudaMemcpy2DAsync");
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return cudaSuccess;
  Guard g(lock());
  if (where(ptr) < 0) return set_error(cudaErrorInvalidValue, "cudaMemsetAsync: not device memory");
  if (!range_ok(ptr, bytes))
    return set_error(cudaErrorInvalidValue, "cudaMemsetAsync: runs past an allocation");
  return enqueue(stream, [ptr, value, bytes] { std::memset(ptr, value, bytes); });
}
cudaError_t cudaMemset(void* ptr, int value, size_t bytes) {
  Guard g(lock());
  if (cudaError_t e = capture_check_unsafe("cudaMemset (synchronous)", -1)) return e;
  const cudaError_t e = cudaMemsetAsync(ptr, value, bytes, nullptr);
  if (e == cudaSuccess) drain(resolve(nullptr));
  return e;
}

cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, cudaStreamDefault); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags) {
  Guard g(lock());
  resolve(nullptr);
  *s = reinterpret_cast<cudaStream_t>(make_stream(current_device, !(flags & cudaStreamNonBlocking), false));
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  Guard g(lock());
  // CUDA lets queued work finish after destroy returns; running it now is one such schedule.
  drain(resolve(s));
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  Guard g(lock());
  if (cudaError_t e = capture_check_wait(s, "cudaStreamSynchronize")) return e;
  drain(resolve(s));
  return cudaSuccess;
}
// Queries never run work: a stream's work runs only when something waits for it, so that a
// program which treats "not ready" as "wait" is exercised, and one which reads results after a
// query alone sees stale data. (A program that spins on a query would spin forever here.)
cudaError_t cudaStreamQuery(cudaStream_t s) {
  Guard g(lock());
  if (cudaError_t e = capture_check_wait(s, "cudaStreamQuery")) return e;
  Stream* st = resolve(s);
  // Like CUDA, "not ready" is also left as the last error (callers clear it).
  return st->done == st->queued ? cudaSuccess : (last_error = cudaErrorNotReady);
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned) {
  Guard g(lock());
  bool handled = false;  // by a capture (emu_graph.cpp)
  if (cudaError_t err = capture_event_wait(s, e, &handled)) return err;
  auto* ev = reinterpret_cast<Event*>(e);
  if (!handled && ev->stream) resolve(s)->next_deps.emplace_back(ev->stream, ev->seq);
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, cudaEventDefault); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  auto* ev = new Event;
  ev->device = current_device;
  *e = reinterpret_cast<cudaEvent_t>(ev);
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  Guard g(lock());
  capture_event_forget(e);
  delete reinterpret_cast<Event*>(e);
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  Guard g(lock());
  auto* ev = reinterpret_cast<Event*>(e);
  Stream* st = resolve(s);
  bool recorded = false;  // inside a capture: marks a capture point instead
  if (cudaError_t err = capture_event_record(e, s, &recorded)) return err;
  if (recorded) return cudaSuccess;
  if (st->device != ev->device)
    return set_error(cudaErrorInvalidResourceHandle,
                     "cudaEventRecord: an event of device " + std::to_string(ev->device) +
                         " on a stream of device " + std::to_string(st->device));
  // Pending cudaStreamWaitEvent dependencies belong to the work before the event too.
  if (!st->next_deps.empty()) enqueue(s, [] {});
  ev->stream = st;
  ev->seq = st->queued;
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t e) {
  Guard g(lock());
  if (cudaError_t err = capture_event_use(e, "cudaEventQuery")) return err;
  auto* ev = reinterpret_cast<Event*>(e);
  return !ev->stream || ev->stream->done >= ev->seq ? cudaSuccess : (last_error = cudaErrorNotReady);
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  Guard g(lock());
  if (cudaError_t err = capture_event_use(e, "cudaEventSynchronize")) return err;
  auto* ev = reinterpret_cast<Event*>(e);
  if (ev->stream) run_until(ev->stream, ev->seq);
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t, cudaEvent_t) {
  *ms = 0.f;
  return cudaSuccess;
}
