// CPU convolution: im2col / col2im + OpenBLAS sgemm, one image per OpenMP iteration.
//
// For image n and group g the patch matrix col (K x P), K = Cg*kh*kw, P = Ho*Wo, holds in row
// (c*kh + i)*kw + j the input pixel each output position reads through filter tap (c, i, j).
// The filter block of group g is then a dense (Fg x K) matrix and
//   filterActs:  out_g (Fg x P)  = W_g (Fg x K) . col (K x P)          written straight into NCHW
//   imgActs:     col   (K x P)   = W_g^T . hid_g (Fg x P), then col2im scatter-adds into the image
//   weightActs:  dW_g  (Fg x K) += hid_g (Fg x P) . col^T, summed over images
// so no pass needs a transpose of the activations (NHWC, below: the transposed patch matrix).
// A 1x1 stride-1 unpadded filter reads the image as col directly. weightActs keeps one
// accumulator per thread with a static schedule, so for a given thread count the result is
// deterministic.
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include <omp.h>

#include "conv.h"
#include "cpu/blas.h"
#include "relu.h"

namespace alexnet_ext::cpu {
namespace {

bool is_pointwise(const ConvGeometry& g) {
  return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0 &&
         g.ho == g.h && g.wo == g.w;
}

// Output columns ox whose input column ox*s - pad + tap lies in [0, size): [lo, hi).
inline void valid_range(int64_t size, int64_t out, int64_t s, int64_t pad, int64_t tap,
                        int64_t& lo, int64_t& hi) {
  int64_t a = pad - tap;              // need ox*s >= a
  int64_t b = size - 1 + pad - tap;   // need ox*s <= b
  lo = a <= 0 ? 0 : ceil_div_nonneg(a, s);  // not (a + s - 1) / s: s may be near 2^31
  hi = b < 0 ? 0 : std::min(out, b / s + 1);
  lo = std::min(lo, hi);
}

// img: the Cg channels of one group of one image.
void im2col(const float* img, float* col, const ConvGeometry& g) {
  const int64_t P = g.p();
  for (int64_t c = 0; c < g.cg(); ++c) {
    const float* plane = img + c * g.h * g.w;
    for (int64_t i = 0; i < g.kh; ++i) {
      for (int64_t j = 0; j < g.kw; ++j) {
        float* row = col + ((c * g.kh + i) * g.kw + j) * P;
        int64_t lo, hi;
        valid_range(g.w, g.wo, g.sw, g.pw, j, lo, hi);
        for (int64_t oy = 0; oy < g.ho; ++oy) {
          float* dst = row + oy * g.wo;
          const int64_t iy = oy * g.sh - g.ph + i;
          if (iy < 0 || iy >= g.h) {
            std::fill(dst, dst + g.wo, 0.f);
            continue;
          }
          std::fill(dst, dst + lo, 0.f);
          const float* src = plane + iy * g.w - g.pw + j;
          if (g.sw == 1) {
            std::memcpy(dst + lo, src + lo, (hi - lo) * sizeof(float));
          } else {
            for (int64_t ox = lo; ox < hi; ++ox) dst[ox] = src[ox * g.sw];
          }
          std::fill(dst + hi, dst + g.wo, 0.f);
        }
      }
    }
  }
}

// The adjoint of im2col: img += scale * (scatter of col).
void col2im_add(const float* col, float* img, const ConvGeometry& g, float scale) {
  const int64_t P = g.p();
  for (int64_t c = 0; c < g.cg(); ++c) {
    float* plane = img + c * g.h * g.w;
    for (int64_t i = 0; i < g.kh; ++i) {
      for (int64_t j = 0; j < g.kw; ++j) {
        const float* row = col + ((c * g.kh + i) * g.kw + j) * P;
        int64_t lo, hi;
        valid_range(g.w, g.wo, g.sw, g.pw, j, lo, hi);
        for (int64_t oy = 0; oy < g.ho; ++oy) {
          const int64_t iy = oy * g.sh - g.ph + i;
          if (iy < 0 || iy >= g.h) continue;
          const float* src = row + oy * g.wo;
          float* dst = plane + iy * g.w - g.pw + j;
          for (int64_t ox = lo; ox < hi; ++ox) dst[ox * g.sw] += scale * src[ox];
        }
      }
    }
  }
}

// Everything that can throw happens here, before any OpenMP region: an exception escaping a
// parallel region would terminate the process instead of reaching Python.
void check_gemm_dims(const ConvGeometry& g) {
  blas_dim(g.k(), "K (channels per group * kh * kw)");
  blas_dim(g.p(), "P (output pixels)");
  blas_dim(g.fg(), "filters per group");
}

// One K x P patch matrix per thread (none for pointwise filters, which read the image directly).
std::vector<float> scratch_columns(const ConvGeometry& g, int threads) {
  return std::vector<float>(is_pointwise(g) ? 0 : static_cast<size_t>(threads) * g.k() * g.p());
}

// target = st * target over n elements, never reading target when st == 0.
inline void scale_in_place(float* x, int64_t n, float st) {
  if (st == 0.f)
    std::fill(x, x + n, 0.f);
  else if (st != 1.f)
    for (int64_t i = 0; i < n; ++i) x[i] *= st;
}

// Runs body(n, gi, col, t) for every image n and group gi, one image per OpenMP iteration over
// `threads` threads (static schedule: deterministic for a given count); col is thread t's K x P
// patch matrix, null for pointwise filters (they read the image directly).
template <class Body>
void for_each_image_group(const ConvGeometry& g, int threads, Body body) {
  check_gemm_dims(g);
  std::vector<float> scratch = scratch_columns(g, threads);
  const int64_t per_thread = is_pointwise(g) ? 0 : g.k() * g.p();
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    float* col = per_thread ? scratch.data() + t * per_thread : nullptr;
#pragma omp for schedule(static)
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t gi = 0; gi < g.groups; ++gi) body(n, gi, col, t);
  }
}

// ConvEpilogue on the CPU: fp32 out and mask only (bf16 is GPU only; the binding refuses first).
void check_epilogue(const ConvEpilogue& ep) {
  if (ep.out_bf16 || (ep.relu_mask && ep.mask_bf16))
    throw std::invalid_argument("conv: bf16 out or relu_mask run on the GPU only");
}

// The epilogue after a block's accumulate form is complete: rows x len elements at `stride`
// from o, the mask at the same offset `at` from its start as o from out's. The same selects
// as ops.relu / relu_undo (relu.h), so fused == unfused bit for bit.
void epilogue_block(float* o, int64_t at, int64_t rows, int64_t len, int64_t stride,
                    const ConvEpilogue& ep) {
  if (!ep.relu && !ep.relu_mask) return;
  const float* m = ep.relu_mask ? static_cast<const float*>(ep.relu_mask) + at : nullptr;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < len; ++i) {
      float& v = o[r * stride + i];
      if (ep.relu) v = relu_select(v);
      if (m) v = relu_undo_select(v, m[r * stride + i]);
    }
}

}  // namespace

void filter_acts(const float* images, const float* filters, const float* bias, float* out,
                 const ConvGeometry& g, float st, float so, const ConvEpilogue& ep) {
  check_epilogue(ep);
  const int64_t K = g.k(), P = g.p(), Fg = g.fg(), Cg = g.cg();
  for_each_image_group(g, omp_get_max_threads(), [&](int64_t n, int64_t gi, float* col, int) {
    const float* img = images + (n * g.c + gi * Cg) * g.h * g.w;
    const float* b = img;
    if (col) {
      im2col(img, col, g);
      b = col;
    }
    float* o = out + (n * g.f + gi * Fg) * P;
    sgemm(false, false, Fg, P, K, so, filters + gi * Fg * K, K, b, P, st, o, P);
    if (bias) {
      for (int64_t f = 0; f < Fg; ++f) {
        const float v = so * bias[gi * Fg + f];
        float* row = o + f * P;
        for (int64_t p = 0; p < P; ++p) row[p] += v;
      }
    }
    epilogue_block(o, o - out, 1, Fg * P, 0, ep);
  });
}

void img_acts(const float* hid_grads, const float* filters, float* out, const ConvGeometry& g,
              float st, float so, const ConvEpilogue& ep) {
  check_epilogue(ep);
  const int64_t K = g.k(), P = g.p(), Fg = g.fg(), Cg = g.cg();
  for_each_image_group(g, omp_get_max_threads(), [&](int64_t n, int64_t gi, float* col, int) {
    const float* hid = hid_grads + (n * g.f + gi * Fg) * P;
    const float* w = filters + gi * Fg * K;
    float* img = out + (n * g.c + gi * Cg) * g.h * g.w;
    if (!col) {  // pointwise: the group's image block is exactly K x P
      sgemm(true, false, K, P, Fg, so, w, K, hid, P, st, img, P);
    } else {
      sgemm(true, false, K, P, Fg, 1.f, w, K, hid, P, 0.f, col, P);
      scale_in_place(img, Cg * g.h * g.w, st);
      col2im_add(col, img, g, so);
    }
    epilogue_block(img, img - out, 1, Cg * g.h * g.w, 0, ep);
  });
}

namespace {
// weightActs of either layout: gemm(n, gi, col, acc) adds image n's group gi to the group's
// (Fg x K) accumulator; one accumulator set per thread, summed in thread order.
template <class Gemm>
void weight_acts_sum(float* out, const ConvGeometry& g, float st, float so, Gemm gemm) {
  const int64_t total = g.f * g.k();
  check_gemm_dims(g);  // before the accumulators are sized
  const int threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(omp_get_max_threads(), g.n)));
  std::vector<float> partial(static_cast<size_t>(threads) * total, 0.f);
  for_each_image_group(g, threads, [&](int64_t n, int64_t gi, float* col, int t) {
    gemm(n, gi, col, partial.data() + t * total + gi * g.fg() * g.k());
  });
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < total; ++i) {
    float sum = 0.f;
    for (int t = 0; t < threads; ++t) sum += partial[t * total + i];
    accumulate_store(out + i, sum, st, so);
  }
}

}  // namespace

void weight_acts(const float* images, const float* hid_grads, float* out, const ConvGeometry& g,
                 float st, float so) {
  const int64_t K = g.k(), P = g.p(), Fg = g.fg(), Cg = g.cg();
  weight_acts_sum(out, g, st, so, [&](int64_t n, int64_t gi, float* col, float* acc) {
    const float* img = images + (n * g.c + gi * Cg) * g.h * g.w;
    const float* b = img;
    if (col) {
      im2col(img, col, g);
      b = col;
    }
    sgemm(false, true, Fg, K, P, 1.f, hid_grads + (n * g.f + gi * Fg) * P, P, b, P, 1.f, acc, K);
  });
}

void conv_bias_grad(const float* hid_grads, float* out, int64_t n, int64_t f, int64_t pixels,
                    float st, float so) {
  if (pixels == 1) {
    // NHWC: hid_grads is an (n, f) matrix. Walk it by rows over a block of columns (contiguous
    // reads) instead of down each column; per column the same sum in the same order as below.
    constexpr int64_t kCols = 64;
#pragma omp parallel for schedule(static)
    for (int64_t f0 = 0; f0 < f; f0 += kCols) {
      const int64_t f1 = std::min(f, f0 + kCols);
      double acc[kCols] = {};
      for (int64_t ni = 0; ni < n; ++ni) {
        const float* row = hid_grads + ni * f;
        for (int64_t fi = f0; fi < f1; ++fi) acc[fi - f0] += row[fi];
      }
      for (int64_t fi = f0; fi < f1; ++fi)
        accumulate_store(out + fi, static_cast<float>(acc[fi - f0]), st, so);
    }
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t fi = 0; fi < f; ++fi) {
    double sum = 0.0;
    for (int64_t ni = 0; ni < n; ++ni) {
      const float* row = hid_grads + (ni * f + fi) * pixels;
      float s = 0.f;
      for (int64_t p = 0; p < pixels; ++p) s += row[p];
      sum += s;
    }
    accumulate_store(out + fi, static_cast<float>(sum), st, so);
  }
}

// ---------------------------------------------------------------- NHWC
// Images (N, H, W, C), filters (F, kh, kw, Cg), outputs (N, Ho, Wo, F). The patch matrix is the
// transpose of NCHW's: col (P x K) with K ordered (i, j, c), so a filter row is a contiguous K
// vector, each window tap copies Cg contiguous channels, and the output block of group gi is a
// (P x Fg) submatrix with leading dimension F:
//   filterActs:  out_g (P x Fg)  = col (P x K) . W_g^T
//   imgActs:     col   (P x K)   = hid_g (P x Fg) . W_g, then col2im scatter-adds
//   weightActs:  dW_g  (Fg x K) += hid_g^T . col
// Pointwise filters read the group's channels of the image (leading dimension C) as col.
namespace {

// fn(col_offset, img_offset) for every output pixel and filter tap (i, j): where the tap's Cg
// values sit in col, and where their input pixel's channels start in the image, -1 when the tap
// reads padding.
template <class Fn>
void for_each_tap_nhwc(const ConvGeometry& g, Fn fn) {
  const int64_t K = g.k(), Cg = g.cg();
  for (int64_t i = 0; i < g.kh; ++i) {
    for (int64_t j = 0; j < g.kw; ++j) {
      int64_t ylo, yhi, xlo, xhi;
      valid_range(g.h, g.ho, g.sh, g.ph, i, ylo, yhi);
      valid_range(g.w, g.wo, g.sw, g.pw, j, xlo, xhi);
      for (int64_t p = 0; p < g.p(); ++p) {
        const int64_t oy = p / g.wo, ox = p % g.wo;
        const bool inside = oy >= ylo && oy < yhi && ox >= xlo && ox < xhi;
        const int64_t pixel = (oy * g.sh - g.ph + i) * g.w + ox * g.sw - g.pw + j;
        fn(p * K + (i * g.kw + j) * Cg, inside ? pixel * g.c : -1);
      }
    }
  }
}

// img: one image, offset to group gi's first channel (pixel stride C).
void im2col_nhwc(const float* img, float* col, const ConvGeometry& g) {
  const int64_t Cg = g.cg();
  for_each_tap_nhwc(g, [&](int64_t at, int64_t src) {
    if (src < 0)
      std::fill(col + at, col + at + Cg, 0.f);
    else
      std::memcpy(col + at, img + src, Cg * sizeof(float));
  });
}

// The adjoint of im2col_nhwc: img += scale * (scatter of col).
void col2im_nhwc_add(const float* col, float* img, const ConvGeometry& g, float scale) {
  const int64_t Cg = g.cg();
  for_each_tap_nhwc(g, [&](int64_t at, int64_t dst) {
    if (dst >= 0)
      for (int64_t c = 0; c < Cg; ++c) img[dst + c] += scale * col[at + c];
  });
}

// NHWC's leading dimensions F and C go to sgemm as well: checked before any OpenMP region.
void check_nhwc_dims(const ConvGeometry& g) {
  blas_dim(g.f, "F (filters, the NHWC pixel stride of the outputs)");
  blas_dim(g.c, "C (channels, the NHWC pixel stride of the images)");
}

}  // namespace

void filter_acts_nhwc(const float* images, const float* filters, const float* bias, float* out,
                      const ConvGeometry& g, float st, float so, const ConvEpilogue& ep) {
  check_nhwc_dims(g);
  check_epilogue(ep);
  const int64_t K = g.k(), P = g.p(), Fg = g.fg(), Cg = g.cg();
  for_each_image_group(g, omp_get_max_threads(), [&](int64_t n, int64_t gi, float* col, int) {
    const float* img = images + n * g.h * g.w * g.c + gi * Cg;
    if (col) im2col_nhwc(img, col, g);
    float* o = out + n * P * g.f + gi * Fg;
    sgemm(false, true, P, Fg, K, so, col ? col : img, col ? K : g.c, filters + gi * Fg * K, K, st,
          o, g.f);
    if (bias)
      for (int64_t p = 0; p < P; ++p)
        for (int64_t f = 0; f < Fg; ++f) o[p * g.f + f] += so * bias[gi * Fg + f];
    epilogue_block(o, o - out, P, Fg, g.f, ep);
  });
}

void img_acts_nhwc(const float* hid_grads, const float* filters, float* out, const ConvGeometry& g,
                   float st, float so, const ConvEpilogue& ep) {
  check_nhwc_dims(g);
  check_epilogue(ep);
  const int64_t K = g.k(), P = g.p(), Fg = g.fg(), Cg = g.cg();
  for_each_image_group(g, omp_get_max_threads(), [&](int64_t n, int64_t gi, float* col, int) {
    const float* hid = hid_grads + n * P * g.f + gi * Fg;
    const float* w = filters + gi * Fg * K;
    float* img = out + n * g.h * g.w * g.c + gi * Cg;
    if (!col) {  // pointwise: the group's channels of the image are exactly P x K
      sgemm(false, false, P, K, Fg, so, hid, g.f, w, K, st, img, g.c);
    } else {
      sgemm(false, false, P, K, Fg, 1.f, hid, g.f, w, K, 0.f, col, K);
      for (int64_t px = 0; px < g.h * g.w; ++px) scale_in_place(img + px * g.c, Cg, st);
      col2im_nhwc_add(col, img, g, so);
    }
    epilogue_block(img, img - out, g.h * g.w, Cg, g.c, ep);
  });
}

void weight_acts_nhwc(const float* images, const float* hid_grads, float* out,
                      const ConvGeometry& g, float st, float so) {
  check_nhwc_dims(g);
  const int64_t K = g.k(), P = g.p(), Fg = g.fg(), Cg = g.cg();
  weight_acts_sum(out, g, st, so, [&](int64_t n, int64_t gi, float* col, float* acc) {
    const float* img = images + n * g.h * g.w * g.c + gi * Cg;
    if (col) im2col_nhwc(img, col, g);
    sgemm(true, false, Fg, K, P, 1.f, hid_grads + n * P * g.f + gi * Fg, g.f, col ? col : img,
          col ? K : g.c, 1.f, acc, K);
  });
}

}  // namespace alexnet_ext::cpu
