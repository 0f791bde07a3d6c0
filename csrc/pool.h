// Window geometry shared by max_pool and avg_pool.
//
// Output size along one axis: floor((size + 2*pad - k)/stride) + 1, or with ceil_mode
// ceil((size + 2*pad - k)/stride) + 1, less one when that last window would start at or beyond
// the end of the input plus its leading padding ((out-1)*stride >= size + pad; PyTorch's rule).
// With pad <= k/2 (required) every window then holds at least one real pixel. Padding is never
// read: windows are clipped to the image.
#pragma once
#include <algorithm>
#include <cstdint>

#include "host_device.h"

namespace alexnet_ext {

struct PoolGeometry {
  int64_t n, c, h, w;     // input
  int64_t kh, kw;         // window
  int64_t sh, sw, ph, pw; // stride, padding (top/left)
  int64_t ho, wo;         // output size, computed by the caller with pool_out_size
  // Layout of every array of the op: false (N, C, H, W), true (N, H, W, C) dense (channels
  // innermost). Set by the bindings from the layout argument, not part of the Python geometry.
  bool nhwc = false;

  ALEXNET_EXT_HD int64_t planes() const { return n * c; }
  // The kernels index both layouts through these: element (plane, iy, ix) of an (h x w) array
  // sits at plane_offset(plane, h*w) + iy*row_step(w) + ix*col_step().
  ALEXNET_EXT_HD int64_t col_step() const { return nhwc ? c : 1; }
  ALEXNET_EXT_HD int64_t row_step(int64_t width) const { return width * col_step(); }
  ALEXNET_EXT_HD int64_t plane_offset(int64_t plane, int64_t pixels) const {
    return nhwc ? (plane / c) * pixels * c + plane % c : plane * pixels;
  }
};

inline int64_t pool_out_size(int64_t size, int64_t k, int64_t stride, int64_t pad, bool ceil_mode) {
  const int64_t span = size + 2 * pad - k;
  int64_t out = (ceil_mode ? ceil_div_nonneg(span, stride) : span / stride) + 1;
  if (ceil_mode && (out - 1) * stride >= size + pad) --out;  // (out-1)*stride <= span: no overflow
  return out;
}

// Everything the kernels rely on (in-bounds windows, each with a real pixel, and values small
// enough for overflow-free index arithmetic: see host_device.h). The memory-safety check of
// both pooling ops, shared by their bindings.
inline bool pool_geometry_ok(const PoolGeometry& g) {
  auto axis_ok = [](int64_t size, int64_t k, int64_t s, int64_t p, int64_t out) {
    return size >= 1 && size <= kExtentMax && k >= 1 && k <= kGeometryMax && s >= 1 &&
           s <= kGeometryMax && p >= 0 && 2 * p <= k && size + 2 * p >= k && out >= 1 &&
           (out == pool_out_size(size, k, s, p, false) || out == pool_out_size(size, k, s, p, true));
  };
  return g.n >= 1 && g.c >= 1 && g.n <= kExtentMax && g.c <= kExtentMax &&
         axis_ok(g.h, g.kh, g.sh, g.ph, g.ho) && axis_ok(g.w, g.kw, g.sw, g.pw, g.wo);
}

// The input rows (or columns) [lo, hi) of output row o's window, clipped to the image.
inline void pool_window(int64_t o, int64_t k, int64_t stride, int64_t pad, int64_t size,
                        int64_t& lo, int64_t& hi) {
  const int64_t start = o * stride - pad;
  lo = std::max<int64_t>(start, 0);
  hi = std::min(start + k, size);
}

}  // namespace alexnet_ext
