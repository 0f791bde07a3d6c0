// CPU response normalization: for each image and each block of kBlock contiguous pixels, walk the
// channels once, keeping per pixel a running sum over the current window (one channel enters and
// one leaves per step). NCHW puts a channel's pixels next to each other, so every step reads a
// contiguous run of kBlock floats per channel touched; the sums live in a small stack array.
#include <algorithm>
#include <cmath>

#include "response_norm.h"

namespace alexnet_ext::cpu {
namespace {

constexpr int64_t kBlock = 128;  // pixels per task: 0.5 KiB per channel row, 1 KiB of sums

// d^(-beta) for d > 0 (response_norm.h, shared with the GPU).
inline float inv_pow(float d, float beta, bool three_quarters) {
  return three_quarters ? lrn_inv_pow<true>(d, beta) : lrn_inv_pow<false>(d, beta);
}

// A NaN or inf that entered a running sum would stay after its channel left, so where the sum is
// not finite it is recomputed over the current window [lo, hi] with term(ch, q). The check is a
// separate vectorisable pass; the recompute runs only for pixels that see a non-finite value.
template <class Term>
inline void refresh_nonfinite(double* sum, int64_t len, int64_t lo, int64_t hi, Term term) {
  bool any = false;
  for (int64_t q = 0; q < len; ++q) any |= !(sum[q] - sum[q] == 0.0);
  if (!any) return;
  for (int64_t q = 0; q < len; ++q) {
    if (sum[q] - sum[q] == 0.0) continue;
    double s = 0.0;
    for (int64_t ch = lo; ch <= hi; ++ch) s += term(ch, q);
    sum[q] = s;
  }
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
                   const ResponseNormParams& p) {
  const int64_t before = p.size / 2, after = (p.size - 1) / 2;
  const float beta = static_cast<float>(p.beta);
  const bool tq = beta == 0.75f;
  for_blocks(n, pixels, [&](int64_t ni, int64_t p0, int64_t len) {
    const int64_t base = ni * c * pixels + p0;
    double sum[kBlock];
    std::fill(sum, sum + len, 0.0);
    // A float's square is exact in double, and the sum of a window of them nearly so.
    auto sq = [&](int64_t ch, int64_t q) {
      const double v = x[base + ch * pixels + q];
      return v * v;
    };
    auto add = [&](int64_t ch, double sign) {
      for (int64_t q = 0; q < len; ++q) sum[q] += sign * sq(ch, q);
    };
    for (int64_t j = 0; j < std::min(after, c); ++j) add(j, 1.0);
    for (int64_t i = 0; i < c; ++i) {
      if (i + after < c) add(i + after, 1.0);           // window(i) = [i - before, i + after]
      if (i - before - 1 >= 0) add(i - before - 1, -1.0);
      refresh_nonfinite(sum, len, std::max<int64_t>(i - before, 0), std::min(i + after, c - 1), sq);
      const int64_t off = base + i * pixels;
      for (int64_t q = 0; q < len; ++q) {
        const float d = static_cast<float>(p.k + p.a * sum[q]);
        denoms[off + q] = d;
        y[off + q] = x[off + q] * inv_pow(d, beta, tq);
      }
    }
  });
}

void response_norm_undo(const float* grad_y, const float* x, const float* y, const float* denoms,
                        float* grad_x, int64_t n, int64_t c, int64_t pixels,
                        const ResponseNormParams& p) {
  // Channel j receives from every i whose window holds j: i in [j - after, j + before].
  const int64_t before = p.size / 2, after = (p.size - 1) / 2;
  const float beta = static_cast<float>(p.beta);
  const bool tq = beta == 0.75f;
  const double coef = 2.0 * p.a * p.beta;
  for_blocks(n, pixels, [&](int64_t ni, int64_t p0, int64_t len) {
    const int64_t base = ni * c * pixels + p0;
    double sum[kBlock];
    std::fill(sum, sum + len, 0.0);
    // r[i] = grad_y[i] * y[i] / denoms[i], recomputed identically when channel i leaves. Without
    // y, y[i] is recomputed as the forward computed it: x[i] * denoms[i]^(-beta), the same float.
    auto r_read = [&](int64_t ch, int64_t q) {
      const int64_t o = base + ch * pixels + q;
      return double(grad_y[o]) * double(y[o]) / double(denoms[o]);
    };
    auto r_recompute = [&](int64_t ch, int64_t q) {
      const int64_t o = base + ch * pixels + q;
      const float yo = x[o] * inv_pow(denoms[o], beta, tq);
      return double(grad_y[o]) * double(yo) / double(denoms[o]);
    };
    auto r = [&](int64_t ch, int64_t q) { return y ? r_read(ch, q) : r_recompute(ch, q); };
    auto add = [&](int64_t ch, double sign) {  // the choice hoisted: each loop vectorises
      if (y)
        for (int64_t q = 0; q < len; ++q) sum[q] += sign * r_read(ch, q);
      else
        for (int64_t q = 0; q < len; ++q) sum[q] += sign * r_recompute(ch, q);
    };
    for (int64_t i = 0; i < std::min(before, c); ++i) add(i, 1.0);
    for (int64_t j = 0; j < c; ++j) {
      if (j + before < c) add(j + before, 1.0);
      if (j - after - 1 >= 0) add(j - after - 1, -1.0);
      refresh_nonfinite(sum, len, std::max<int64_t>(j - after, 0), std::min(j + before, c - 1), r);
      const int64_t off = base + j * pixels;
      for (int64_t q = 0; q < len; ++q) {
        const float g = grad_y[off + q] * inv_pow(denoms[off + q], beta, tq);
        grad_x[off + q] = static_cast<float>(double(g) - coef * double(x[off + q]) * sum[q]);
      }
    }
  });
}

}  // namespace alexnet_ext::cpu
