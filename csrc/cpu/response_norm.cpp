// CPU response normalization: for each image and each block of kBlock contiguous pixels, walk the
// channels once, keeping per pixel a running sum over the current window (one channel enters and
// one leaves per step). NCHW puts a channel's pixels next to each other, so every step reads a
// contiguous run of kBlock floats per channel touched; the sums live in a small stack array.
// NHWC walks the same blocks with the same operations through strides (a channel step of 1, a
// pixel step of C): the same bits, the block's kBlock x C floats read from cache.
// relu (undo): grad_x through relu_undo_select(., x) as it is stored, relu_undo's exact rule.
#include <algorithm>
#include <cmath>

#include "cpu/lrn_window.h"
#include "relu.h"
#include "response_norm.h"

namespace alexnet_ext::cpu {
namespace {

constexpr int64_t kBlock = 128;  // pixels per task: 0.5 KiB per channel row, 1 KiB of sums

// d^(-beta) for d > 0 (response_norm.h, shared with the GPU).
inline float inv_pow(float d, float beta, bool three_quarters) {
  return three_quarters ? lrn_inv_pow<true>(d, beta) : lrn_inv_pow<false>(d, beta);
}

// Splits [0, pixels) into blocks; calls f(image, first pixel, pixel count) for each, in parallel.
template <class F>
void for_blocks(int64_t n, int64_t pixels, F f) {
  const int64_t blocks = (pixels + kBlock - 1) / kBlock;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t ni = 0; ni < n; ++ni)
    for (int64_t b = 0; b < blocks; ++b) f(ni, b * kBlock, std::min(kBlock, pixels - b * kBlock));
}

}  // namespace

void response_norm(const float* x, float* y, float* denoms, int64_t n, int64_t c, int64_t pixels,
                   const ResponseNormParams& p, bool nhwc) {
  const int64_t before = p.size / 2, after = (p.size - 1) / 2;
  const float beta = static_cast<float>(p.beta);
  const bool tq = beta == 0.75f;
  const int64_t cs = nhwc ? 1 : pixels, ps = nhwc ? c : 1;  // channel and pixel steps
  for_blocks(n, pixels, [&](int64_t ni, int64_t p0, int64_t len) {
    const int64_t base = ni * c * pixels + p0 * ps;
    double sum[kBlock];
    // A float's square is exact in double, and the sum of a window of them nearly so.
    auto sq = [&](int64_t ch, int64_t q) {
      const double v = x[base + ch * cs + q * ps];
      return v * v;
    };
    // window(i) = [i - before, i + after]
    walk_channel_windows(sum, len, c, before, after, sq, [&](int64_t i) {
      const int64_t off = base + i * cs;
      for (int64_t q = 0; q < len; ++q) {
        const float d = static_cast<float>(p.k + p.a * sum[q]);
        denoms[off + q * ps] = d;
        y[off + q * ps] = x[off + q * ps] * inv_pow(d, beta, tq);
      }
    });
  });
}

void response_norm_undo(const float* grad_y, const float* x, const float* y, const float* denoms,
                        float* grad_x, int64_t n, int64_t c, int64_t pixels,
                        const ResponseNormParams& p, bool nhwc, bool relu) {
  // Channel j receives from every i whose window holds j: i in [j - after, j + before].
  const int64_t before = p.size / 2, after = (p.size - 1) / 2;
  const float beta = static_cast<float>(p.beta);
  const bool tq = beta == 0.75f;
  const double coef = 2.0 * p.a * p.beta;
  const int64_t cs = nhwc ? 1 : pixels, ps = nhwc ? c : 1;  // channel and pixel steps
  for_blocks(n, pixels, [&](int64_t ni, int64_t p0, int64_t len) {
    const int64_t base = ni * c * pixels + p0 * ps;
    double sum[kBlock];
    auto step = [&](int64_t j) {
      const int64_t off = base + j * cs;
      for (int64_t q = 0; q < len; ++q) {
        const int64_t o = off + q * ps;
        const float g = grad_y[o] * inv_pow(denoms[o], beta, tq);
        const float gx = static_cast<float>(double(g) - coef * double(x[o]) * sum[q]);
        grad_x[o] = relu ? relu_undo_select(gx, x[o]) : gx;
      }
    };
    // r[i] = grad_y[i] * y[i] / denoms[i], recomputed identically when channel i leaves. Without
    // y, y[i] is recomputed as the forward computed it: x[i] * denoms[i]^(-beta), the same float.
    // The choice is made once per walk, so each of its loops vectorises.
    auto r_read = [&](int64_t ch, int64_t q) {
      const int64_t o = base + ch * cs + q * ps;
      return double(grad_y[o]) * double(y[o]) / double(denoms[o]);
    };
    auto r_recompute = [&](int64_t ch, int64_t q) {
      const int64_t o = base + ch * cs + q * ps;
      const float yo = x[o] * inv_pow(denoms[o], beta, tq);
      return double(grad_y[o]) * double(yo) / double(denoms[o]);
    };
    if (y)
      walk_channel_windows(sum, len, c, after, before, r_read, step);
    else
      walk_channel_windows(sum, len, c, after, before, r_recompute, step);
  });
}

}  // namespace alexnet_ext::cpu
