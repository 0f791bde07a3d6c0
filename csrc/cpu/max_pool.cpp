// CPU max pooling: one output row per OpenMP iteration (planes x rows); the backward scatters
// one plane per iteration (NHWC: one image and block of channels), so windows that share a pixel
// add up in a fixed order: the same in both layouts.
#include <algorithm>
#include <cstdint>
#include <limits>

#include "cpu/pool_windows.h"
#include "max_pool.h"
#include "relu.h"

namespace alexnet_ext::cpu {

template <class I>
void max_pool(const float* x, float* y, I* switches, const PoolGeometry& g) {
  const int64_t rs = g.row_step(g.w), cs = g.col_step();
  for_each_pool_window(x, g, [&](const float* plane, int64_t o, int64_t y0, int64_t y1,
                                 int64_t x0, int64_t x1) {
    int64_t r, c;
    y[o] = window_max(plane + y0 * rs + x0 * cs, rs, cs, y1 - y0, x1 - x0, r, c);
    switches[o] = static_cast<I>((y0 + r) * g.w + x0 + c);
  });
}

template <class I>
int64_t max_pool_undo(const float* grad_y, const I* switches, float* grad_x, int64_t planes,
                      int64_t in_pixels, int64_t out_pixels, int64_t inner,
                      const float* relu_y) {
  int64_t first_bad = std::numeric_limits<int64_t>::max();
  const int64_t in_len = in_pixels * inner, out_len = out_pixels * inner;
  // Tasks: (plane, block of kChannelBlock interleaved channels), each the only writer of its
  // channels, so NHWC still parallelises over channels when the batch is small.
  constexpr int64_t kChannelBlock = 16;  // one 64-byte line of float32 per pixel
  const int64_t blocks = (inner + kChannelBlock - 1) / kChannelBlock;
#pragma omp parallel for collapse(2) schedule(static) reduction(min : first_bad)
  for (int64_t pl = 0; pl < planes; ++pl) {
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t k0 = b * kChannelBlock, k1 = std::min(k0 + kChannelBlock, inner);
      float* gx = grad_x + pl * in_len;
      const I* sw = switches + pl * out_len;
      const float* gy = grad_y + pl * out_len;
      const float* ry = relu_y ? relu_y + pl * in_len : nullptr;
      if (inner == 1) {  // NCHW: one plane per task, contiguous (no per-pixel channel loop)
        std::fill(gx, gx + in_pixels, 0.f);
        for (int64_t q = 0; q < out_pixels; ++q) {
          const int64_t s = static_cast<int64_t>(sw[q]);
          if (s < 0 || s >= in_pixels) {
            first_bad = std::min(first_bad, pl * out_len + q);
            continue;
          }
          gx[s] += gy[q];
        }
        if (ry)
          for (int64_t i = 0; i < in_pixels; ++i) gx[i] = relu_undo_select(gx[i], ry[i]);
        continue;
      }
      for (int64_t i = 0; i < in_pixels; ++i)
        std::fill(gx + i * inner + k0, gx + i * inner + k1, 0.f);
      for (int64_t q = 0; q < out_pixels; ++q) {  // each pixel's gradients in output order
        for (int64_t k = k0; k < k1; ++k) {
          const int64_t e = q * inner + k;
          const int64_t s = static_cast<int64_t>(sw[e]);
          if (s < 0 || s >= in_pixels) {
            first_bad = std::min(first_bad, pl * out_len + e);
            continue;
          }
          gx[s * inner + k] += gy[e];
        }
      }
      if (ry)
        for (int64_t i = 0; i < in_pixels; ++i)
          for (int64_t k = i * inner + k0; k < i * inner + k1; ++k)
            gx[k] = relu_undo_select(gx[k], ry[k]);
    }
  }
  return first_bad == std::numeric_limits<int64_t>::max() ? -1 : first_bad;
}

template void max_pool<int32_t>(const float*, float*, int32_t*, const PoolGeometry&);
template void max_pool<int64_t>(const float*, float*, int64_t*, const PoolGeometry&);
template int64_t max_pool_undo<int32_t>(const float*, const int32_t*, float*, int64_t, int64_t,
                                        int64_t, int64_t, const float*);
template int64_t max_pool_undo<int64_t>(const float*, const int64_t*, float*, int64_t, int64_t,
                                        int64_t, int64_t, const float*);

}  // namespace alexnet_ext::cpu
