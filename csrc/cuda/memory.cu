// Caching device allocator and pinned staging pool: see memory.h for the policy.
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/memory.h"
#include "cuda/stream.h"

namespace alexnet_ext::cuda {
namespace {

size_t round_size(size_t bytes) {
  const size_t small = 512, large = size_t(2) << 20;
  if (bytes == 0) bytes = 1;
  const size_t unit = bytes >= (size_t(1) << 20) ? large : small;
  return (bytes + unit - 1) / unit * unit;
}

struct Block {
  size_t size;
  int device;
  cudaStream_t stream;
  uint64_t pool;  // 0: the shared cache, else the graph pool it belongs to
};

struct GraphPool {
  std::multimap<size_t, void*> free;
  size_t live = 0;  // blocks handed out
  bool released = false;
  int device = 0;
};

struct PoolKey {
  int device;
  cudaStream_t stream;
  bool operator<(const PoolKey& o) const {
    return device != o.device ? device < o.device : stream < o.stream;
  }
};

struct DeviceCounters {
  size_t allocated = 0, cached = 0, peak = 0, mallocs = 0;
};

struct PinnedBlock {
  size_t size;
  cudaEvent_t ready;  // recorded after the last copy that used the buffer
  int event_device;   // an event is recorded only on streams of the device it was created on
  bool in_use;
};

std::mutex mu;
std::unordered_map<void*, Block> live;
std::map<PoolKey, std::multimap<size_t, void*>> free_lists;
std::map<int, DeviceCounters> counters;
std::unordered_map<void*, PinnedBlock> pinned;
std::map<uint64_t, GraphPool> pools;
std::map<PoolKey, uint64_t> open_pools;  // (device, capturing stream) -> pool
uint64_t next_pool = 1;

// A block of at most twice `size` from `list`, or null. Not much larger than asked: a huge block
// serving a small request would pin memory that a later large request needs.
void* take(std::multimap<size_t, void*>& list, size_t size, size_t* got) {
  auto it = list.lower_bound(size);
  if (it == list.end() || it->first > 2 * size) return nullptr;
  void* p = it->second;
  *got = it->first;
  list.erase(it);
  return p;
}

void count_out(int device, size_t size) {
  auto& c = counters[device];
  c.allocated += size;
  c.peak = std::max(c.peak, c.allocated);
}

// The pool open on `device` for any stream (blocks freed during a capture join it), or 0.
uint64_t open_pool_on(int device) {
  for (auto& [key, id] : open_pools)
    if (key.device == device) return id;
  return 0;
}

// Whether the work before `e` has completed. "Not ready" is also recorded as the thread's last
// CUDA error, which the next launch check would report: clear it.
bool ready(cudaEvent_t e) {
  const cudaError_t err = cudaEventQuery(e);
  if (err == cudaErrorNotReady) {
    cudaGetLastError();
    return false;
  }
  check(err, "cudaEventQuery");
  return true;
}

// Caller holds mu and has the device current.
void release_cached_locked(int device) {
  for (auto& [key, list] : free_lists) {
    if (key.device != device) continue;
    for (auto& [size, ptr] : list) {
      cudaFree(ptr);
      counters[device].cached -= size;
    }
    list.clear();
  }
}

}  // namespace

void* device_alloc(size_t bytes, int device, cudaStream_t stream) {
  const size_t size = round_size(bytes);
  std::lock_guard<std::mutex> lock(mu);
  const auto open = open_pools.find({device, stream});
  uint64_t pool = open == open_pools.end() ? 0 : open->second;
  if (!pool && (pool = open_pool_on(device))) {
    // A stream forked into the capture (it waited on an event recorded inside it) allocates
    // from the graph's pool too; any other stream of the device from the shared cache.
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    check(cudaStreamIsCapturing(stream, &capturing), "cudaStreamIsCapturing");
    if (capturing == cudaStreamCaptureStatusNone) pool = 0;
  }
  size_t got = 0;
  if (void* p = take(pool ? pools[pool].free : free_lists[{device, stream}], size, &got)) {
    counters[device].cached -= got;
    count_out(device, got);
    live[p] = {got, device, stream, pool};
    if (pool) ++pools[pool].live;
    return p;
  }
  DeviceScope guard(device);
  void* p = nullptr;
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  if (pool) cudaThreadExchangeStreamCaptureMode(&mode);  // see memory.h: graph pools
  cudaError_t err = cudaMalloc(&p, size);
  if (pool) cudaThreadExchangeStreamCaptureMode(&mode);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    // Cached blocks may be in use by queued work on their streams: wait before freeing them.
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize (before emptying the cache)");
    release_cached_locked(device);
    err = cudaMalloc(&p, size);
  }
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    throw OutOfMemory(bytes, device, std::to_string(free_b) + " of " + std::to_string(total_b) +
                                         " bytes free");
  }
  check(err, "cudaMalloc");
  counters[device].mallocs += 1;
  count_out(device, size);
  live[p] = {size, device, stream, pool};
  if (pool) ++pools[pool].live;
  return p;
}

void device_free(void* ptr) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mu);
  auto it = live.find(ptr);
  if (it == live.end()) return;  // not ours (never happens for arrays we allocate)
  Block b = it->second;
  live.erase(it);
  auto& c = counters[b.device];
  c.allocated -= b.size;
  const uint64_t open = open_pool_on(b.device);
  if (open && b.pool != open) {  // freed during a capture: the graph may use it (memory.h)
    if (b.pool && --pools[b.pool].live == 0 && pools[b.pool].released) pools.erase(b.pool);
    b.pool = open;
    ++pools[open].live;
  }
  if (!b.pool) {
    free_lists[{b.device, b.stream}].emplace(b.size, ptr);
    c.cached += b.size;
    return;
  }
  GraphPool& gp = pools[b.pool];
  --gp.live;
  if (!gp.released) {
    gp.free.emplace(b.size, ptr);
    c.cached += b.size;
    return;
  }
  DeviceScope guard(b.device);
  check(cudaFree(ptr), "cudaFree (a released graph pool's block)");
  if (gp.live == 0) pools.erase(b.pool);
}

uint64_t pool_create() {
  std::lock_guard<std::mutex> lock(mu);
  const uint64_t id = next_pool++;
  pools[id];
  return id;
}

void pool_begin(uint64_t pool, int device, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(mu);
  open_pools[{device, stream}] = pool;
  pools[pool].device = device;
}

void pool_end(int device, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(mu);
  open_pools.erase({device, stream});
}

void pool_release(uint64_t pool) {
  std::lock_guard<std::mutex> lock(mu);
  auto it = pools.find(pool);
  if (it == pools.end()) return;
  const int device = it->second.device;
  DeviceScope guard(device);
  for (auto& [size, ptr] : it->second.free) {
    check(cudaFree(ptr), "cudaFree (graph pool)");
    counters[device].cached -= size;
  }
  it->second.free.clear();
  it->second.released = true;
  if (it->second.live == 0) pools.erase(it);
}

MemoryStats memory_stats(int device) {
  std::lock_guard<std::mutex> lock(mu);
  const auto& c = counters[device];
  return {c.allocated, c.cached, c.peak, c.mallocs};
}

void empty_cache() {
  std::lock_guard<std::mutex> lock(mu);
  check(cudaDeviceSynchronize(), "cudaDeviceSynchronize (empty_cache)");
  for (auto& [key, list] : free_lists) {
    DeviceScope guard(key.device);
    for (auto& [size, ptr] : list) {
      cudaFree(ptr);
      counters[key.device].cached -= size;
    }
    list.clear();
  }
  for (auto it = pinned.begin(); it != pinned.end();) {
    if (!it->second.in_use && ready(it->second.ready)) {
      cudaEventDestroy(it->second.ready);
      cudaFreeHost(it->first);
      it = pinned.erase(it);
    } else {
      ++it;
    }
  }
}

void* pinned_acquire(size_t bytes) {
  const size_t size = round_size(bytes);
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  check(cudaStreamIsCapturing(current_stream(), &capturing), "cudaStreamIsCapturing");
  if (capturing != cudaStreamCaptureStatusNone)
    throw CudaError("a copy between host memory and the GPU inside a CUDA graph capture: the graph "
                    "would copy through a staging buffer that is reused after the capture (copy "
                    "into the graph's static buffers before each replay instead)");
  std::lock_guard<std::mutex> lock(mu);
  void* best = nullptr;
  for (auto& [ptr, b] : pinned) {
    if (b.in_use || b.size < size || b.size > 2 * size) continue;
    if (!ready(b.ready)) continue;  // a copy may still read it
    best = ptr;
    break;
  }
  if (!best) {
    check(cudaHostAlloc(&best, size, cudaHostAllocDefault), "cudaHostAlloc");
    int device = 0;
    check(cudaGetDevice(&device), "cudaGetDevice");
    cudaEvent_t ev;
    check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate");
    pinned[best] = {size, ev, device, false};
  }
  pinned[best].in_use = true;
  return best;
}

void pinned_release(void* ptr, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(mu);
  auto it = pinned.find(ptr);
  if (it == pinned.end()) return;
  // A cached buffer may serve another device's copy next: its event must be that device's.
  // (The old event has completed: pinned_acquire hands out only buffers whose event has.)
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  if (device != it->second.event_device) {
    cudaEventDestroy(it->second.ready);
    check(cudaEventCreateWithFlags(&it->second.ready, cudaEventDisableTiming), "cudaEventCreate");
    it->second.event_device = device;
  }
  check(cudaEventRecord(it->second.ready, stream), "cudaEventRecord");
  it->second.in_use = false;
}

}  // namespace alexnet_ext::cuda
