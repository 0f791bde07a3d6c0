// CPU average pooling. Forward: one output row per OpenMP iteration. Backward: a gather, one
// input row per iteration, over the outputs whose windows hold each pixel (tabulated once per
// axis by covering()), so no two threads write the same element and the sum order is fixed.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "avg_pool.h"
#include "cpu/pool_windows.h"

namespace alexnet_ext::cpu {
namespace {

// Real pixels in each output's window along one axis, as float (exact: small integers).
std::vector<float> window_counts(int64_t out, int64_t k, int64_t s, int64_t p, int64_t size) {
  std::vector<float> n(out);
  for (int64_t o = 0; o < out; ++o) {
    int64_t lo, hi;
    pool_window(o, k, s, p, size, lo, hi);
    n[o] = static_cast<float>(hi - lo);
  }
  return n;
}

// For each input index i along one axis, the outputs [lo[i], hi[i]) whose windows hold it:
// o*s - p <= i <= o*s - p + k - 1.
void covering(int64_t size, int64_t k, int64_t s, int64_t p, int64_t out,
              std::vector<int64_t>& lo, std::vector<int64_t>& hi) {
  lo.resize(size);
  hi.resize(size);
  for (int64_t i = 0; i < size; ++i) {
    const int64_t a = i + p - k + 1;  // o >= ceil(a / s)
    hi[i] = std::min(out, (i + p) / s + 1);
    lo[i] = std::min(a <= 0 ? int64_t{0} : ceil_div_nonneg(a, s), hi[i]);
  }
}

}  // namespace

void avg_pool(const float* x, float* y, const PoolGeometry& g) {
  const int64_t rs = g.row_step(g.w), cs = g.col_step();
  for_each_pool_window(x, g, [&](const float* plane, int64_t o, int64_t y0, int64_t y1,
                                 int64_t x0, int64_t x1) {
    float sum = 0.f;
    for (int64_t iy = y0; iy < y1; ++iy)
      for (int64_t ix = x0; ix < x1; ++ix) sum += plane[iy * rs + ix * cs];
    y[o] = sum / static_cast<float>((y1 - y0) * (x1 - x0));  // = rows * cols, as in undo
  });
}

void avg_pool_undo(const float* grad_y, float* grad_x, const PoolGeometry& g) {
  const int64_t planes = g.planes();
  const std::vector<float> rows = window_counts(g.ho, g.kh, g.sh, g.ph, g.h);
  const std::vector<float> cols = window_counts(g.wo, g.kw, g.sw, g.pw, g.w);
  std::vector<int64_t> oy_lo, oy_hi, ox_lo, ox_hi;
  covering(g.h, g.kh, g.sh, g.ph, g.ho, oy_lo, oy_hi);
  covering(g.w, g.kw, g.sw, g.pw, g.wo, ox_lo, ox_hi);
  // NCHW: one (plane, input row) per iteration; NHWC: one (image, input row), channels innermost.
  const int64_t outer = g.nhwc ? g.n : planes, inner = g.nhwc ? g.c : 1;
  const int64_t ors = g.row_step(g.wo);  // grad_y's row step (its column step is inner)
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t pl = 0; pl < outer; ++pl) {
    for (int64_t iy = 0; iy < g.h; ++iy) {
      float* gxrow = grad_x + (pl * g.h + iy) * g.w * inner;
      for (int64_t ix = 0; ix < g.w; ++ix) {
        for (int64_t k = 0; k < inner; ++k) {
          const float* gy = grad_y + pl * g.ho * g.wo * inner + k;
          float sum = 0.f;
          for (int64_t oy = oy_lo[iy]; oy < oy_hi[iy]; ++oy)
            for (int64_t ox = ox_lo[ix]; ox < ox_hi[ix]; ++ox)
              sum += gy[oy * ors + ox * inner] / (rows[oy] * cols[ox]);
          gxrow[ix * inner + k] = sum;
        }
      }
    }
  }
}

}  // namespace alexnet_ext::cpu
