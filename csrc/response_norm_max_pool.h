// Response normalization followed by max pooling, forward in one pass (the paper's norm1 -> pool1
// and norm2 -> pool2). Exactly response_norm (response_norm.h) then max_pool (max_pool.h):
//   denoms[n,i,y,x]     = k + a * sum_{j in window(i)} x[n,j,y,x]^2        (full size, as LRN's)
//   pooled[n,i,oy,ox]   = max over the pooling window of t = x * denoms^(-beta)
//   switches[n,i,oy,ox] = iy*W + ix of that maximum (max_pool's scan order, tie and NaN rules)
// The LRN output t itself is never stored: the pooled values, switches and denoms are the same
// bits the two unfused ops give, yet the full-size t is neither written nor read back.
//
// Backward: max_pool_undo (the pooled gradient scattered through the switches to full size),
// then response_norm_undo with y = null, which recomputes the LRN output it needs as
// x * denoms^(-beta) -- the very float the forward computed (same operands, same rounding), so
// the gradient equals the unfused one bit for bit while reading one full-size tensor less.
//
// Layout: x, denoms (N, C, H, W); pooled, switches (N, C, Ho, Wo), or all four channels-last
// with g.nhwc; dense row-major float32 (on
// the GPU x and pooled may be bfloat16, see below), switches int32 or int64 as max_pool's. Geometry: PoolGeometry (pool.h, checked with
// pool_geometry_ok) and ResponseNormParams (response_norm.h).
//
// CPU (cpu/response_norm_max_pool.cpp): one task per (image, band of output rows); the band's
// input rows plus the halo its windows reach past them are contiguous pixel runs per channel, so
// the running window sum of response_norm.cpp runs over them unchanged, channel by channel, and
// each channel's normalised band is pooled from a scratch row band at once. Each task writes the
// denoms of the input rows it owns (the bands partition the image; halo rows are recomputed, not
// written), so every denominator is written once, including rows no window reaches.
#pragma once
#include <cstdint>

#include "pool.h"
#include "response_norm.h"

namespace alexnet_ext {

// Input rows [lo, hi) whose denoms band `band` of output rows [o0, o1) writes (a partition of
// [0, size): consecutive bands meet where the next band's first window starts), and the end of
// the rows it must normalise (its own rows and its windows' reach). Shared by both kernels.
struct BandRows {
  int64_t own_lo, own_hi, end;
};
ALEXNET_EXT_HD inline BandRows band_rows(int64_t o0, int64_t o1, int64_t outs, int64_t k,
                                         int64_t s, int64_t p, int64_t size) {
  auto clamp = [size](int64_t v) { return v < 0 ? int64_t{0} : (v > size ? size : v); };
  BandRows b;
  b.own_lo = o0 == 0 ? 0 : clamp(o0 * s - p);  // o*s <= 2^62: no overflow (GEOMETRY_MAX)
  b.own_hi = o1 == outs ? size : clamp(o1 * s - p);
  const int64_t reach = clamp((o1 - 1) * s - p + k);
  b.end = reach > b.own_hi ? reach : b.own_hi;
  return b;
}

namespace cpu {
template <class I>
void response_norm_max_pool(const float* x, float* pooled, I* switches, float* denoms,
                            const PoolGeometry& g, const ResponseNormParams& p);
}  // namespace cpu

}  // namespace alexnet_ext

#ifdef ALEXNET_EXT_WITH_CUDA
#include <cuda_runtime.h>

// CUDA (cuda/response_norm_max_pool.cu): one block per tile of pooled outputs of one image. Its
// threads own the tile's input pixels (its own rows and columns plus the halo of overlapping
// windows), walk the channels with response_norm.cu's running double sum and IEEE-explicit
// arithmetic, write the denoms they own, put the channel's normalised tile in shared memory and
// pool it there (double-buffered: one barrier per channel). DRAM traffic: x read, denoms written,
// the pooled output and switches written (vs. response_norm + max_pool: also the full-size y
// written and read back). Results equal the CPU's bit for bit (beta = 0.75; other exponents up to
// powf's last bit, as response_norm). A geometry whose smallest tile (one output and its window)
// exceeds the shared tile -- windows or strides far beyond any net's -- runs the two unfused
// kernels through a pooled scratch buffer instead (then exactly what the unfused ops give on the
// GPU, whose channel split for few pixel columns may differ from the CPU in the last bit).
//
// bf16 (T = uint16_t for x and pooled; denoms float32, as response_norm's): each normalised value
// is rounded to bf16 before it is pooled, as response_norm then max_pool store and read it, so the
// fused op equals the two unfused bf16 ops bit for bit (switches included: rounding can make
// ties); the undo (response_norm_undo with y = null) rounds its recomputed y the same way.
namespace alexnet_ext::cuda {
// T is float or uint16_t, I int32_t or int64_t (instantiated there).
template <class T, class I>
void response_norm_max_pool(const T* x, T* pooled, I* switches, float* denoms,
                            const PoolGeometry& g, const ResponseNormParams& p, cudaStream_t stream);
}  // namespace alexnet_ext::cuda
#endif
