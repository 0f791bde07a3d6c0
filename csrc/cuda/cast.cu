// CUDA float32 <-> bfloat16 casts: grid-stride elementwise passes over the conversions of cast.h
// (the CPU's own functions, so both sides give the same bits; no __float2bfloat16_rn, whose NaN
// pattern is not ml_dtypes').
#include <cstdint>

#include "cast.h"
#include "cuda/common.cuh"

namespace alexnet_ext::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
to_bf16_kernel(const float* __restrict__ x, uint16_t* __restrict__ y, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = bf16_from_float(x[i]);
}

__global__ void __launch_bounds__(kThreads)
to_f32_kernel(const uint16_t* __restrict__ x, float* __restrict__ y, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    y[i] = float_from_bf16(x[i]);
}

}  // namespace

void cast_to_bf16(const float* x, uint16_t* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  launch(to_bf16_kernel, blocks_for(n, kThreads), kThreads, stream, x, y, n);
  check_launch("cast");
}

void cast_to_f32(const uint16_t* x, float* y, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  launch(to_f32_kernel, blocks_for(n, kThreads), kThreads, stream, x, y, n);
  check_launch("cast");
}

}  // namespace alexnet_ext::cuda
