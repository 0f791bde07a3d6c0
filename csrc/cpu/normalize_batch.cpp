// CPU normalize_batch (normalize_batch.h): the offsets are checked first (nothing is written when
// one is bad), then one OpenMP loop over the B*C planes, each row read forwards from the crop and
// forwards or backwards from the mean image. Elementwise, so the result does not depend on the
// thread count.
#include "normalize_batch.h"

namespace alexnet_ext::cpu {

int64_t normalize_batch(const uint8_t* x, const float* mean, const int32_t* offsets,
                        const float* shift, float scale, float* out, const NormalizeShape& g) {
  int64_t top, left;
  bool flipped;
  for (int64_t b = 0; b < g.b; ++b) {
    const int64_t bad = normalize_corner(offsets, b, g, &top, &left, &flipped);
    if (bad >= 0) return bad;
  }
  const int64_t planes = g.b * g.c, plane = g.s * g.t;
#pragma omp parallel for schedule(static) if (planes * plane >= (1 << 16))
  for (int64_t p = 0; p < planes; ++p) {
    const int64_t b = p / g.c, c = p % g.c;
    int64_t y0, x0;
    bool fl;
    normalize_corner(offsets, b, g, &y0, &x0, &fl);
    const float sh = shift ? shift[p] : 0.f;
    const uint8_t* src = x + p * plane;
    float* dst = out + p * plane;
    for (int64_t r = 0; r < g.s; ++r) {
      const float* m = mean + (c * g.h + y0 + r) * g.w + x0;
      const uint8_t* xr = src + r * g.t;
      float* o = dst + r * g.t;
      if (fl) {
        for (int64_t q = 0; q < g.t; ++q) o[q] = normalize_value(xr[q], m[g.t - 1 - q], sh, scale);
      } else {
        for (int64_t q = 0; q < g.t; ++q) o[q] = normalize_value(xr[q], m[q], sh, scale);
      }
    }
  }
  return -1;
}

}  // namespace alexnet_ext::cpu
