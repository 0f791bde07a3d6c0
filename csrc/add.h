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

// The same on device pointers, queued on `stream` (cuda/add.cu; four elements per access when
// aligned). T is float or bf16 (uint16_t bits, real.h; GPU only): the float32 sum of the two
// widened values, rounded once to bf16. That equals the exact sum rounded to nearest even: the
// float32 sum is exact unless the exponents differ by more than 15, and then the smaller term is
// below 2^-15 of the larger, which is a bf16 value, so both roundings return the larger term
// (its bf16 neighbours and their midpoints are at least 2^-9 of it away).
namespace alexnet_ext::cuda {
template <class T>
void add(const T* a, const T* b, T* out, int64_t n, cudaStream_t stream);
}  // namespace alexnet_ext::cuda
#endif
