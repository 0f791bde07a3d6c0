// Rectified linear unit (the paper's f(x) = max(0, x)) and its gradient ("undo").
//   relu:       y[i] = x[i] > 0 ? x[i] : 0      (NaN propagates: NaN in, NaN out)
//   relu_undo:  grad_x[i] = y[i] > 0 ? grad_y[i] : 0
// The backward reads the forward's output y, not x: y > 0 exactly where x > 0, and keeping y is
// free because the next layer keeps it anyway. Arrays of any shape, seen as n dense float32
// (on the GPU also bfloat16).
// Each element i is read and then written at index i only, so the output may be the same buffer
// as an input (in place); a partially overlapping buffer is not allowed.
#pragma once
#include <cstdint>

#include "host_device.h"

namespace alexnet_ext {
// !(v <= 0) keeps NaN (a NaN activation should show up, not turn into a silent 0).
ALEXNET_EXT_HD inline float relu_select(float v) { return !(v <= 0.f) ? v : 0.f; }
// The gradient passes where the output was positive (a NaN output passes none).
ALEXNET_EXT_HD inline float relu_undo_select(float g, float y) { return y > 0.f ? g : 0.f; }
}  // namespace alexnet_ext

namespace alexnet_ext::cpu {
void relu(const float* x, float* y, int64_t n);
void relu_undo(const float* grad_y, const float* y, float* grad_x, int64_t n);
}  // namespace alexnet_ext::cpu

#ifdef ALEXNET_EXT_WITH_CUDA
#include <cuda_runtime.h>

// The same on device pointers, queued on `stream` (cuda/relu.cu; four elements per access when
// aligned). Same in-place rule, results identical to the CPU's. T is float or bf16 (its uint16_t
// bits, real.h; GPU only): the selects on the widened values, so a bf16 result is the input
// element itself (or +0), exact; a NaN comes back as the quiet NaN of its sign.
namespace alexnet_ext::cuda {
template <class T>
void relu(const T* x, T* y, int64_t n, cudaStream_t stream);
template <class T>
void relu_undo(const T* grad_y, const T* y, T* grad_x, int64_t n, cudaStream_t stream);
}  // namespace alexnet_ext::cuda
#endif
