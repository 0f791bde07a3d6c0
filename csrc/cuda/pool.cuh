// Device versions of pool.h's window arithmetic, for max_pool.cu and avg_pool.cu. Idx is the
// index type of the launch: int32_t when every flat index of the op (and the grid-stride step
// past it) fits, which spares the GPU 64-bit divisions, else int64_t.
#pragma once
#include <cstdint>
#include <initializer_list>

#include "pool.h"

namespace alexnet_ext::cuda {

// Largest input or output element count for which int32 index arithmetic is safe: a grid-stride
// loop adds at most 2^30 threads (blocks_for caps the grid well below that) to an index < 2^30.
constexpr int64_t kInt32IndexLimit = int64_t{1} << 30;

// int32 arithmetic also needs the window values small: o*s - p, i + p - k + 1 and size - k then
// stay within +-2^31 for indices below 2^30.
inline bool pool_fits_int32(const PoolGeometry& g) {
  for (int64_t v : {g.h, g.w, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.ho, g.wo})
    if (v >= (int64_t{1} << 29)) return false;
  return true;
}

// Rows (or columns) [lo, hi) of output o's window, clipped to the image (pool.h pool_window).
template <class Idx>
__device__ __forceinline__ void window(Idx o, Idx k, Idx stride, Idx pad, Idx size, Idx& lo, Idx& hi) {
  const Idx start = o * stride - pad;
  lo = start > 0 ? start : Idx{0};
  hi = start < size - k ? start + k : size;  // not start + k < size: no overflow in int32
}

// Outputs [lo, hi) whose windows hold input index i along one axis: o*s - p <= i <= o*s - p + k - 1
// (cpu/avg_pool.cpp covering()).
template <class Idx>
__device__ __forceinline__ void covering(Idx i, Idx k, Idx s, Idx p, Idx out, Idx& lo, Idx& hi) {
  const Idx a = i + p - k + 1;  // o >= ceil(a / s)
  const Idx h = (i + p) / s + 1;
  hi = h < out ? h : out;
  const Idx l = a <= 0 ? Idx{0} : ceil_div_nonneg(a, s);  // not (a + s - 1) / s: overflows
  lo = l < hi ? l : hi;
}

}  // namespace alexnet_ext::cuda
