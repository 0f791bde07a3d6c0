// ALEXNET_EXT_HD marks inline functions that both the CPU sources and the CUDA kernels call
// (__host__ __device__ under nvcc, nothing in plain C++), so the math shared by both paths is
// written once, in the op's header. Also the overflow-proof index helpers every geometry uses.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define ALEXNET_EXT_HD __host__ __device__
#else
#define ALEXNET_EXT_HD
#endif

namespace alexnet_ext {

// Largest stride, padding, window/filter side or LRN size accepted anywhere (alexnet_ext's
// _validate.GEOMETRY_MAX says the same). A stride or padding past the padded image has no meaning,
// and with every such value below 2^31 and every array extent below 2^62 the index arithmetic
// of the kernels (a few additions, products of an output index and a stride) stays in int64.
constexpr int64_t kGeometryMax = (int64_t{1} << 31) - 1;
constexpr int64_t kExtentMax = int64_t{1} << 62;

// ceil(a / b) for a >= 0, b >= 1, without the a + b - 1 that overflows for large b.
template <class T>
ALEXNET_EXT_HD inline T ceil_div_nonneg(T a, T b) {
  return a == 0 ? T{0} : (a - 1) / b + 1;
}

// The accumulate-form store of cuda-convnet: *target = st * *target + so * v, where st == 0 never
// reads the target (it may hold garbage or NaNs). Each operation rounded on its own on the GPU
// too (no FMA contraction), so both sides store the same float.
ALEXNET_EXT_HD inline void accumulate_store(float* target, float v, float st, float so) {
#ifdef __CUDA_ARCH__
  *target = __fadd_rn(st == 0.f ? 0.f : __fmul_rn(st, *target), __fmul_rn(so, v));
#else
  *target = (st == 0.f ? 0.f : st * *target) + so * v;
#endif
}

}  // namespace alexnet_ext
