// CPU response norm + max pool forward (response_norm_max_pool.h). A task is (image, band of
// output rows). Its input rows [own_lo, end) are one contiguous pixel run per channel (full image
// width), walked exactly as cpu/response_norm.cpp walks a pixel block: a running double sum per
// pixel, one channel in and one out per step, recomputed where not finite. The per-pixel sequence
// of operations is response_norm's, so denoms and the normalised values are its bits; each
// channel's normalised band goes to a scratch band and is pooled at once in max_pool's scan order.
// NHWC (g.nhwc): the same bands and operations through strides (channel step 1, pixel step C).
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/lrn_window.h"
#include "max_pool.h"
#include "response_norm_max_pool.h"

namespace alexnet_ext::cpu {
namespace {

constexpr int64_t kBandPixels = 4096;  // input pixels a band aims at: 64 KiB of sums and scratch

}  // namespace

template <class I>
void response_norm_max_pool(const float* x, float* pooled, I* switches, float* denoms,
                            const PoolGeometry& g, const ResponseNormParams& p) {
  const int64_t c = g.c, h = g.h, w = g.w, pixels = h * w;
  const int64_t cs = g.nhwc ? 1 : pixels, ps = g.col_step();  // channel and pixel steps
  const int64_t before = p.size / 2, after = (p.size - 1) / 2;
  const float beta = static_cast<float>(p.beta);
  const bool tq = beta == 0.75f;
  // Output rows per band: about kBandPixels input pixels (at least one row; no product overflows).
  const int64_t band = std::max<int64_t>(1, std::min(g.ho, kBandPixels / w / g.sh));
  const int64_t bands = (g.ho + band - 1) / band;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t ni = 0; ni < g.n; ++ni) {
    for (int64_t b = 0; b < bands; ++b) {
      const int64_t o0 = b * band, o1 = std::min(o0 + band, g.ho);
      const BandRows rows = band_rows(o0, o1, g.ho, g.kh, g.sh, g.ph, h);
      const int64_t len = (rows.end - rows.own_lo) * w;
      const int64_t own1 = (rows.own_hi - rows.own_lo) * w;  // owned: band pixels [0, own1)
      const int64_t base = ni * c * pixels + rows.own_lo * w * ps;
      std::vector<double> sum(static_cast<size_t>(len));
      std::vector<float> t(static_cast<size_t>(len));  // this channel's normalised band
      std::vector<float> dband(static_cast<size_t>(len));  // and its denominators
      // As response_norm.cpp: a float's square is exact in double; same terms, same walk.
      auto sq = [&](int64_t ch, int64_t q) {
        const double v = x[base + ch * cs + q * ps];
        return v * v;
      };
      walk_channel_windows(sum.data(), len, c, before, after, sq, [&](int64_t i) {
        const int64_t off = base + i * cs;
        // Branch-free loops (they vectorise): the band's denoms into dband, its own rows copied out.
        for (int64_t q = 0; q < len; ++q) dband[q] = static_cast<float>(p.k + p.a * sum[q]);
        const float* xo = x + off;
        if (tq)
          for (int64_t q = 0; q < len; ++q) t[q] = xo[q * ps] * lrn_inv_pow<true>(dband[q], beta);
        else
          for (int64_t q = 0; q < len; ++q) t[q] = xo[q * ps] * lrn_inv_pow<false>(dband[q], beta);
        for (int64_t q = 0; q < own1; ++q) denoms[off + q * ps] = dband[q];
        // max_pool.cpp's loop on the band (whose top row is own_lo), with max_pool's rule.
        const int64_t plane = ni * c + i;
        for (int64_t oy = o0; oy < o1; ++oy) {
          int64_t y0, y1;
          pool_window(oy, g.kh, g.sh, g.ph, h, y0, y1);
          const int64_t row = g.plane_offset(plane, g.ho * g.wo) + oy * g.row_step(g.wo);
          float* prow = pooled + row;
          I* srow = switches + row;
          for (int64_t ox = 0; ox < g.wo; ++ox) {
            int64_t x0, x1;
            pool_window(ox, g.kw, g.sw, g.pw, w, x0, x1);
            int64_t r, cc;
            const float best =
                window_max(t.data() + (y0 - rows.own_lo) * w + x0, w, y1 - y0, x1 - x0, r, cc);
            prow[ox * ps] = best;
            srow[ox * ps] = static_cast<I>((y0 + r) * w + x0 + cc);
          }
        }
      });
    }
  }
}

template void response_norm_max_pool<int32_t>(const float*, float*, int32_t*, float*,
                                              const PoolGeometry&, const ResponseNormParams&);
template void response_norm_max_pool<int64_t>(const float*, float*, int64_t*, float*,
                                              const PoolGeometry&, const ResponseNormParams&);

}  // namespace alexnet_ext::cpu
