// Caching device allocator and pinned staging pool: see memory.h for the policy.
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/memory.h"

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
  auto& list = free_lists[{device, stream}];
  auto it = list.lower_bound(size);
  // Reuse a cached block only if it is not much larger than asked (at most 2x): a huge block
  // serving a small request would pin memory that a later large request needs.
  if (it != list.end() && it->first <= 2 * size) {
    void* p = it->second;
    const size_t got = it->first;
    list.erase(it);
    auto& c = counters[device];
    c.cached -= got;
    c.allocated += got;
    c.peak = std::max(c.peak, c.allocated);
    live[p] = {got, device, stream};
    return p;
  }
  DeviceScope guard(device);
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, size);
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
  auto& c = counters[device];
  c.mallocs += 1;
  c.allocated += size;
  c.peak = std::max(c.peak, c.allocated);
  live[p] = {size, device, stream};
  return p;
}

void device_free(void* ptr) {
  if (!ptr) return;
  std::lock_guard<std::mutex> lock(mu);
  auto it = live.find(ptr);
  if (it == live.end()) return;  // not ours (never happens for arrays we allocate)
  const Block b = it->second;
  live.erase(it);
  free_lists[{b.device, b.stream}].emplace(b.size, ptr);
  auto& c = counters[b.device];
  c.allocated -= b.size;
  c.cached += b.size;
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
