// The GPU side of pool.h for max_pool.cu, avg_pool.cu and response_norm_max_pool.cu: the window
// arithmetic on device, the grid-stride loops over outputs, and the launch that picks the index
// type. Idx is the index type of the launch: int32_t when every flat index of the op (and the
// grid-stride step past it) fits, which spares the GPU 64-bit divisions, else int64_t.
#pragma once
#include <cstdint>
#include <initializer_list>

#include "cuda/common.cuh"
#include "pool.h"

namespace alexnet_ext::cuda {

// Largest input or output element count for which int32 index arithmetic is safe: a grid-stride
// loop adds at most 2^30 threads (blocks_for caps the grid well below that) to an index < 2^30.
constexpr int64_t kInt32IndexLimit = int64_t{1} << 30;

// int32 arithmetic also needs the window values small: o*s - p, i + p - k + 1 and size - k then
// stay within +-2^31 for indices below 2^30.
inline bool pool_fits_int32(const PoolGeometry& g) {
  for (int64_t v : {g.c, g.h, g.w, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.ho, g.wo})
    if (v >= (int64_t{1} << 29)) return false;
  return true;
}

// Whether a pooling launch may index in int32: every flat index of x and y below the limit, and
// the geometry small enough for the window arithmetic.
inline bool pool_int32_ok(const PoolGeometry& g) {
  return pool_fits_int32(g) && g.planes() * g.h * g.w <= kInt32IndexLimit &&
         g.planes() * g.ho * g.wo <= kInt32IndexLimit;
}

template <class Idx>
struct PoolGeo {  // PoolGeometry in the launch's index type (the kernels' argument)
  Idx c, h, w, kh, kw, sh, sw, ph, pw, ho, wo;
  explicit PoolGeo(const PoolGeometry& g)
      : c(static_cast<Idx>(g.c)), h(static_cast<Idx>(g.h)), w(static_cast<Idx>(g.w)),
        kh(static_cast<Idx>(g.kh)), kw(static_cast<Idx>(g.kw)), sh(static_cast<Idx>(g.sh)),
        sw(static_cast<Idx>(g.sw)), ph(static_cast<Idx>(g.ph)), pw(static_cast<Idx>(g.pw)),
        ho(static_cast<Idx>(g.ho)), wo(static_cast<Idx>(g.wo)) {}
  // Element steps between columns of one channel plane (NCHW 1, NHWC C), and the offset of
  // plane (image, channel) in an array of `pixels` pixels per plane: as PoolGeometry's. The
  // layout is a template parameter of the kernels, so the NCHW ones are what they were.
  template <bool kNHWC>
  __device__ __forceinline__ Idx col_step() const { return kNHWC ? c : Idx{1}; }
  template <bool kNHWC>
  __device__ __forceinline__ int64_t plane_offset(Idx plane, Idx pixels) const {
    return kNHWC ? static_cast<int64_t>(plane / c) * pixels * c + plane % c
                 : static_cast<int64_t>(plane) * pixels;
  }
};

// Grid-stride loop over the elements t < total of dense arrays of planes of rows x cols: calls
// f(t, plane, row, col) once for each. NCHW (chans = 1 here: planes outermost) consecutive
// threads run along a row; NHWC (kNHWC, chans = C) over the channels of one pixel, so either
// way a warp's loads and stores are contiguous. plane = image * C + channel in both.
template <bool kNHWC, class Idx, class F>
__device__ __forceinline__ void for_each_element(Idx total, Idx rows, Idx cols, Idx chans, F f) {
  const Idx stride = static_cast<Idx>(gridDim.x) * static_cast<Idx>(blockDim.x);
  for (Idx t = static_cast<Idx>(blockIdx.x) * static_cast<Idx>(blockDim.x) + threadIdx.x;
       t < total; t += stride) {
    if (kNHWC) {
      const Idx p = t / chans;  // (image, row, col)
      const Idx r = p / cols;
      f(t, (r / rows) * chans + t % chans, r % rows, p % cols);
    } else {
      const Idx r = t / cols;
      f(t, r / rows, r % rows, t % cols);
    }
  }
}

#if defined(__CUDACC__) || defined(ALEXNET_EXT_CUDA_EMULATION)
// Queues k32 (int32 indexing) when pool_int32_ok(g), else k64, one thread per element of
// `total`, as kernel(args..., PoolGeo<Idx>(g), Idx(total)). Callers pick the layout's kernels.
template <class K32, class K64, class... A>
void launch_pool(const char* op, K32 k32, K64 k64, int64_t total, const PoolGeometry& g,
                 int threads, cudaStream_t stream, A... args) {
  if (total == 0) return;
  const unsigned blocks = blocks_for(total, threads);
  if (pool_int32_ok(g))
    launch(k32, blocks, threads, stream, args..., PoolGeo<int32_t>(g), static_cast<int32_t>(total));
  else
    launch(k64, blocks, threads, stream, args..., PoolGeo<int64_t>(g), total);
  check_launch(op);
}
#endif

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

// for_each_element over the outputs of a pooling forward: calls f(t, plane, y0, y1, x0, x1) with
// plane the first element of output t's input plane (pixel (iy, ix) at
// plane[(iy * g.w + ix) * g.col_step<kNHWC>()]) and rows [y0, y1) x columns [x0, x1) its window (as the
// CPU's cpu/pool_windows.h). T: the element type of x (float or bf16 bits).
template <bool kNHWC, class T, class Idx, class F>
__device__ __forceinline__ void for_each_window(const T* x, const PoolGeo<Idx>& g, Idx total, F f) {
  for_each_element<kNHWC>(total, g.ho, g.wo, g.c, [&](Idx t, Idx pl, Idx oy, Idx ox) {
    Idx y0, y1, x0, x1;
    window(oy, g.kh, g.sh, g.ph, g.h, y0, y1);
    window(ox, g.kw, g.sw, g.pw, g.w, x0, x1);
    f(t, x + g.template plane_offset<kNHWC>(pl, g.h * g.w), y0, y1, x0, x1);
  });
}

}  // namespace alexnet_ext::cuda
