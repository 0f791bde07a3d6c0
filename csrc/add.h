// Elementwise sum: out[i] = a[i] + b[i] (IEEE float32 addition, so CPU and GPU agree bit for bit).
// What a graph needs where a tensor's gradient arrives from several layers (a column's activations
// read by its own conv3 and, through a copy, by the other column's): the later gradient is added
// to the first with out = a. Arrays of any shape, seen as n dense float32. Each element is read and
// then written at index i only, so out may be a or b (in place); a partial overlap is not allowed.
#pragma once
#include <cstdint>

namespace alexnet_ext::cpu {
void add(const float* a, const float* b, float* out, int64_t n);
}  // namespace alexnet_ext::cpu

#ifdef ALEXNET_EXT_WITH_CUDA
#include <cuda_runtime.h>

// The same on device pointers, queued on `stream` (cuda/add.cu; float4 when aligned).
namespace alexnet_ext::cuda {
void add(const float* a, const float* b, float* out, int64_t n, cudaStream_t stream);
}  // namespace alexnet_ext::cuda
#endif
