// CUDA ReLU and its undo: grid-stride elementwise passes, four floats per load (float4) when
// every pointer is 16-byte aligned, one at a time otherwise. Each element is read and then written
// by the same thread at the same index, so out may be an input (in place). Results equal the
// CPU's exactly (selects, no arithmetic).
#include <cstdint>

#include "cuda/common.cuh"
#include "relu.h"

namespace alexnet_ext::cuda {
namespace {

constexpr int kThreads = 256;

// The CPU's selects (relu.h), so the results are the same bits.
__device__ __forceinline__ float relu1(float v) { return relu_select(v); }
__device__ __forceinline__ float undo1(float g, float y) { return relu_undo_select(g, y); }

// Vector part [0, n4) as float4, the tail [4*n4, n) one element per thread.
__global__ void __launch_bounds__(kThreads)
relu_vec(const float4* x, float4* y, int64_t n4, const float* xs, float* ys, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t i = t0; i < n4; i += stride) {
    float4 v = x[i];
    v.x = relu1(v.x);
    v.y = relu1(v.y);
    v.z = relu1(v.z);
    v.w = relu1(v.w);
    y[i] = v;
  }
  for (int64_t i = 4 * n4 + t0; i < n; i += stride) ys[i] = relu1(xs[i]);
}

__global__ void __launch_bounds__(kThreads)
relu_undo_vec(const float4* gy, const float4* y, float4* gx, int64_t n4, const float* gys,
              const float* ys, float* gxs, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t i = t0; i < n4; i += stride) {
    const float4 g = gy[i], v = y[i];
    gx[i] = make_float4(undo1(g.x, v.x), undo1(g.y, v.y), undo1(g.z, v.z), undo1(g.w, v.w));
  }
  for (int64_t i = 4 * n4 + t0; i < n; i += stride) gxs[i] = undo1(gys[i], ys[i]);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace

// No __restrict__ here: out may be the input itself.
void relu(const float* x, float* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  const int64_t n4 = aligned16(x) && aligned16(y) ? n / 4 : 0;
  launch(relu_vec, blocks_for(n4 + (n - 4 * n4), kThreads), kThreads, stream, reinterpret_cast<const
      float4*>(x), reinterpret_cast<float4*>(y), n4, x, y, n);
  check_launch("relu");
}

void relu_undo(const float* grad_y, const float* y, float* grad_x, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  const int64_t n4 = aligned16(grad_y) && aligned16(y) && aligned16(grad_x) ? n / 4 : 0;
  launch(relu_undo_vec, blocks_for(n4 + (n - 4 * n4), kThreads), kThreads, stream,
      reinterpret_cast<const float4*>(grad_y), reinterpret_cast<const float4*>(y),
      reinterpret_cast<float4*>(grad_x), n4, grad_y, y, grad_x, n);
  check_launch("relu_undo");
}

}  // namespace alexnet_ext::cuda
