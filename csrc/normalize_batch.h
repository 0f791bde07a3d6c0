// normalize_batch: a batch of uint8 crops (already cropped and flipped by the data loader's
// workers) to the network's float input, in one pass: mean subtraction, PCA lighting shift,
// scaling and the cast (python/alexnet_ext/data/loader.py, _Augmenter.fill, does the same on the
// CPU from float32).
//   x       (B, C, S, T) uint8, dense      crops as the workers wrote them (flips applied)
//   mean    (C, H, W) float32, dense       the dataset's mean image (H >= S, W >= T)
//   offsets (B, 3) int32 or null           per image: crop top, crop left, flipped (0/1); null:
//                                          every image at (0, 0), unflipped
//   shift   (B, C) float32 or null         per-image, per-channel lighting shift (null: 0)
//   out     (B, C, S, T) float32
//   out[b,c,r,q] = ((float(x[b,c,r,q]) - m) + shift[b,c]) * scale,
//   m = mean[c, top + r, left + (flipped ? T-1-q : q)]
// every operation rounded to float32 in exactly that order, which is the float path's order
// (convert, subtract the mean crop, add the shift, multiply by scale): the results are the same
// bits. A crop that does not fit (top outside [0, H-S], left outside [0, W-T]) is clamped into
// the mean image and reported (the host path raises first; the GPU path through a deferred check,
// cuda/report.h). Output dtype: float32; on the GPU also bf16 (uint16_t bits): the float32
// value rounded once (real.h), so bit for bit the float32 result cast to bf16.
#pragma once
#include <cstdint>

#include "host_device.h"

namespace alexnet_ext {

struct NormalizeShape {
  int64_t b, c, s, t;  // the crops' shape
  int64_t h, w;        // the mean image's sides
};

// The crop corner of image b, clamped into the mean image. Returns -1, or the flat position in
// offsets of the row's first bad entry (a corner that does not fit, a flip flag not 0 or 1).
ALEXNET_EXT_HD inline int64_t normalize_corner(const int32_t* offsets, int64_t b,
                                               const NormalizeShape& g, int64_t* top,
                                               int64_t* left, bool* flipped) {
  *top = *left = 0;
  *flipped = false;
  if (!offsets) return -1;
  const int64_t y = offsets[3 * b], x = offsets[3 * b + 1];
  const int32_t f = offsets[3 * b + 2];
  const int64_t ymax = g.h - g.s, xmax = g.w - g.t;
  *top = y < 0 ? 0 : (y > ymax ? ymax : y);
  *left = x < 0 ? 0 : (x > xmax ? xmax : x);
  *flipped = f != 0;
  if (*top != y) return 3 * b;
  if (*left != x) return 3 * b + 1;
  if (f != 0 && f != 1) return 3 * b + 2;
  return -1;
}

// One element, in the float path's order (see above). Written with separate statements so that
// no compiler contracts the add and the multiply into one rounding.
ALEXNET_EXT_HD inline float normalize_value(uint8_t v, float m, float shift, float scale) {
  float d = static_cast<float>(v) - m;
  d = d + shift;
  return d * scale;
}

}  // namespace alexnet_ext

namespace alexnet_ext::cpu {
// Returns -1, or the flat position in offsets of the first bad entry (then nothing is written).
int64_t normalize_batch(const uint8_t* x, const float* mean, const int32_t* offsets,
                        const float* shift, float scale, float* out, const NormalizeShape& g);
}  // namespace alexnet_ext::cpu

#ifdef ALEXNET_EXT_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/report.h"

// The same on device pointers, queued on `stream` (cuda/normalize_batch.cu); identical bits.
// A bad offsets row is clamped and its flat position reported in `bad`.
namespace alexnet_ext::cuda {
template <class Out>  // float or uint16_t (bf16)
void normalize_batch(const uint8_t* x, const float* mean, const int32_t* offsets,
                     const float* shift, float scale, Out* out, const NormalizeShape& g,
                     BadValues* bad, cudaStream_t stream);
}  // namespace alexnet_ext::cuda
#endif
