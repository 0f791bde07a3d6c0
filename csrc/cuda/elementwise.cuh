// Elementwise maps on n dense elements of T (float, or bf16 bits: real.h), out[i] =
// op(in0[i], in1[i], ...), for add.cu and relu.cu: a grid-stride pass, four elements per load
// (float4, or 8 bytes of bf16) when every pointer is aligned to four elements, one at a time
// otherwise (and for the tail past the last whole group of four). Each element is read and then
// written by the same thread at the same index, so out may be one of the inputs (in place): no
// __restrict__. op is a functor with a __device__ call operator on floats: inputs are widened to
// float32 and each result rounded once to T.
#pragma once
#include <cstdint>

#include "cuda/common.cuh"
#include "real.h"

namespace alexnet_ext::cuda {

constexpr int kElementwiseThreads = 256;

// Whether p is aligned to `bytes` (a power of two).
inline bool aligned_to(const void* p, uintptr_t bytes) {
  return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0;
}

// Four elements of T loaded or stored at once: float4, or four bf16 in 8 bytes.
template <class T> struct Vec4Of;
template <> struct Vec4Of<float> { using type = float4; };
struct alignas(8) Bf16x4 { uint16_t x, y, z, w; };
template <> struct Vec4Of<uint16_t> { using type = Bf16x4; };
template <class T> using Vec4 = typename Vec4Of<T>::type;

#if defined(__CUDACC__) || defined(ALEXNET_EXT_CUDA_EMULATION)
// By value: each operand is loaded whole (one vector load), not field by field.
template <class T, class Op, class... V>
__device__ __forceinline__ Vec4<T> map4(Op op, V... v) {
  return {from_f32<T>(op(to_f32(v.x)...)), from_f32<T>(op(to_f32(v.y)...)),
          from_f32<T>(op(to_f32(v.z)...)), from_f32<T>(op(to_f32(v.w)...))};
}

// Vector part [0, n4) as Vec4<T>, the tail [4*n4, n) one element per thread.
template <class T, class Op, class... In>
__global__ void __launch_bounds__(kElementwiseThreads)
map_kernel(Op op, T* out, int64_t n4, int64_t n, In... in) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t i = t0; i < n4; i += stride)
    reinterpret_cast<Vec4<T>*>(out)[i] = map4<T>(op, reinterpret_cast<const Vec4<T>*>(in)[i]...);
  for (int64_t i = 4 * n4 + t0; i < n; i += stride) out[i] = from_f32<T>(op(to_f32(in[i])...));
}

// Queues out = op(in...) on `stream` (in: const T* each); `name` goes into a launch error's
// message.
template <class T, class Op, class... In>
void map_elementwise(const char* name, Op op, T* out, int64_t n, cudaStream_t stream, In... in) {
  if (n == 0) return;
  constexpr uintptr_t vec = sizeof(Vec4<T>);
  const int64_t n4 = (aligned_to(out, vec) && ... && aligned_to(in, vec)) ? n / 4 : 0;
  launch(map_kernel<T, Op, In...>, blocks_for(n4 + (n - 4 * n4), kElementwiseThreads),
         kElementwiseThreads, stream, op, out, n4, n, in...);
  check_launch(name);
}
#endif

}  // namespace alexnet_ext::cuda
