// Device and pinned-host memory for the CUDA build.
//
// A caching allocator keeps freed device blocks in per-(device, stream) free lists so a training
// step never calls cudaMalloc/cudaFree once warm. A block is reused only on the stream it was
// allocated for: work queued on that stream is ordered, so reuse needs no event. Sizes round up to
// 512 bytes (small) or 2 MiB (>= 1 MiB) so that blocks are interchangeable. When cudaMalloc
// fails, the cache of that device is released and the allocation retried once before
// OutOfMemory is thrown.
//
// CUDA graphs (python/graph.cpp): while a graph pool is open on (device, stream), allocations for
// that stream (and for streams forked into its capture) come from the pool (its own free list, else cudaMalloc with the thread's capture mode
// relaxed for the call: cudaMalloc is not stream-ordered, so a capture forbids it otherwise), and
// blocks of the shared cache freed during the capture join the pool (a captured kernel may use
// them). A pool block freed later goes back to its pool, never to the shared cache, so nothing
// outside the graph reuses memory its replays touch. pool_release (the graph is destroyed) frees
// the pool's cached blocks now and its live ones when they are freed.
//
// Pinned host buffers (for host<->device staging) are cached the same way; each carries an event
// recorded after its last copy and is handed out again only once that event has completed.
#pragma once
#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

namespace alexnet_ext::cuda {

void* device_alloc(size_t bytes, int device, cudaStream_t stream);
void device_free(void* ptr);  // back to the cache

struct MemoryStats {
  size_t allocated_bytes;  // handed out now
  size_t cached_bytes;     // held in free lists
  size_t peak_bytes;       // max allocated_bytes seen
  size_t cuda_mallocs;     // cudaMalloc calls so far
};
MemoryStats memory_stats(int device);
void empty_cache();        // cudaFree every cached block (device and pinned)

uint64_t pool_create();
void pool_begin(uint64_t pool, int device, cudaStream_t stream);
void pool_end(int device, cudaStream_t stream);
void pool_release(uint64_t pool);

// Pinned host staging buffer of at least `bytes`; release with pinned_release(ptr, stream),
// which records an event on `stream` so the buffer is not reused before the copy finished.
// Refused (CudaError) while the current stream captures: a replay would read the buffer again
// long after it was reused.
void* pinned_acquire(size_t bytes);
void pinned_release(void* ptr, cudaStream_t stream);

}  // namespace alexnet_ext::cuda
