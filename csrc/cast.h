// Elementwise conversion between float32 and bfloat16 (bf16: float32's sign and 8-bit exponent,
// 7 stored mantissa bits; an array of bf16 is an array of uint16_t bit patterns, the upper half of
// the float32 it stands for).
//   cast_to_bf16:  round to nearest, ties to even, on the bit pattern (so subnormals round like any
//                  other value and the largest finite values round up to inf when above the bf16
//                  range); a NaN becomes the quiet NaN sign | 0x7fc0, as ml_dtypes / Eigen give
//                  (the top mantissa bit set, so truncating a payload can never make an inf)
//   cast_to_f32:   exact (bits << 16), NaN payloads kept
// The CPU and the GPU call the same inline functions, so both give the same bits.
#pragma once
#include <cstdint>
#include <cstring>

#include "host_device.h"

namespace alexnet_ext {

ALEXNET_EXT_HD inline uint32_t float_bits(float v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  return u;
}

ALEXNET_EXT_HD inline uint16_t bf16_from_float(float v) {
  const uint32_t u = float_bits(v);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16 & 0x8000u) | 0x7fc0u);
  // Adding 0x7fff plus the lowest kept bit rounds half to even; a carry into the exponent is
  // the correct result (up to the next binade, or to inf from the top one). No overflow: u is
  // at most 0xff800000 (-inf) here.
  return static_cast<uint16_t>((u + 0x7fffu + (u >> 16 & 1u)) >> 16);
}

ALEXNET_EXT_HD inline float float_from_bf16(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float v;
  memcpy(&v, &u, 4);
  return v;
}

}  // namespace alexnet_ext

namespace alexnet_ext::cpu {
void cast_to_bf16(const float* x, uint16_t* y, int64_t n);
void cast_to_f32(const uint16_t* x, float* y, int64_t n);
}  // namespace alexnet_ext::cpu

#ifdef ALEXNET_EXT_WITH_CUDA
#include <cuda_runtime.h>

// The same on device pointers, queued on `stream` (cuda/cast.cu).
namespace alexnet_ext::cuda {
void cast_to_bf16(const float* x, uint16_t* y, int64_t n, cudaStream_t stream);
void cast_to_f32(const uint16_t* x, float* y, int64_t n, cudaStream_t stream);
}  // namespace alexnet_ext::cuda
#endif
