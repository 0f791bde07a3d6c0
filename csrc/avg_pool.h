// Average pooling and its gradient.
//   y[n,c,oy,ox] = (sum of x over the window's real pixels) / (number of real pixels)
// Windows: see pool.h. Padding and ceil-mode overhang are excluded from the count (PyTorch's
// count_include_pad=False); every window holds at least one real pixel.
// Backward (the exact adjoint): grad_x[iy,ix] = sum over the windows w holding (iy,ix) of
// grad_y[w] / count[w], computed as a gather so each grad_x element is written once.
// Layout: (N, C, H, W) / (N, C, Ho, Wo) dense row-major float32 (on the GPU also bfloat16: both
// arrays of one call, uint16_t bits, real.h). Deterministic. With g.nhwc both arrays are
// (N, H, W, C) / (N, Ho, Wo, C) instead: the same operations in the same order per element.
#pragma once
#include <cstdint>

#include "pool.h"

namespace alexnet_ext::cpu {

void avg_pool(const float* x, float* y, const PoolGeometry& g);
void avg_pool_undo(const float* grad_y, float* grad_x, const PoolGeometry& g);

}  // namespace alexnet_ext::cpu

#ifdef ALEXNET_EXT_WITH_CUDA
#include <cuda_runtime.h>

// The same on device pointers, queued on `stream` (cuda/avg_pool.cu): one thread per output
// forward, a gather (one thread per input pixel) backward; both equal the CPU's bit for bit.
// T is float or uint16_t (bf16): the float32 computation on the widened inputs, each result
// rounded once to bf16.
namespace alexnet_ext::cuda {
template <class T>
void avg_pool(const T* x, T* y, const PoolGeometry& g, cudaStream_t stream);
template <class T>
void avg_pool_undo(const T* grad_y, T* grad_x, const PoolGeometry& g, cudaStream_t stream);
}  // namespace alexnet_ext::cuda
#endif
