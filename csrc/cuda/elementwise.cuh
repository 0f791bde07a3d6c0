// Elementwise maps on n dense floats, out[i] = op(in0[i], in1[i], ...), for add.cu and relu.cu:
// a grid-stride pass, four floats per load (float4) when every pointer is 16-byte aligned, one at
// a time otherwise (and for the tail past the last whole float4). Each element is read and then
// written by the same thread at the same index, so out may be one of the inputs (in place): no
// __restrict__. op is a functor with a __device__ call operator on floats.
#pragma once
#include <cstdint>

#include "cuda/common.cuh"

namespace alexnet_ext::cuda {

constexpr int kElementwiseThreads = 256;

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

#if defined(__CUDACC__) || defined(ALEXNET_EXT_CUDA_EMULATION)
template <class Op, class... V>
__device__ __forceinline__ float4 map4(Op op, const V&... v) {
  return make_float4(op(v.x...), op(v.y...), op(v.z...), op(v.w...));
}

// Vector part [0, n4) as float4, the tail [4*n4, n) one element per thread.
template <class Op, class... In>
__global__ void __launch_bounds__(kElementwiseThreads)
map_kernel(Op op, float* out, int64_t n4, int64_t n, In... in) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t i = t0; i < n4; i += stride)
    reinterpret_cast<float4*>(out)[i] = map4(op, reinterpret_cast<const float4*>(in)[i]...);
  for (int64_t i = 4 * n4 + t0; i < n; i += stride) out[i] = op(in[i]...);
}

// Queues out = op(in...) on `stream`; `name` goes into a launch error's message.
template <class Op, class... In>
void map_elementwise(const char* name, Op op, float* out, int64_t n, cudaStream_t stream,
                     In... in) {
  if (n == 0) return;
  const int64_t n4 = (aligned16(out) && ... && aligned16(in)) ? n / 4 : 0;
  launch(map_kernel<Op, In...>, blocks_for(n4 + (n - 4 * n4), kElementwiseThreads),
         kElementwiseThreads, stream, op, out, n4, n, in...);
  check_launch(name);
}
#endif

}  // namespace alexnet_ext::cuda
