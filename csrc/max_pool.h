// Max pooling (the paper's overlapping pooling: 3x3 windows, stride 2) and its gradient.
//   y[n,c,oy,ox]        = max over the window's real pixels of x[n,c,iy,ix]
//   switches[n,c,oy,ox] = iy*W + ix of that maximum, the flat index inside its input plane
// Windows: see pool.h (padding never wins: it is not read). Ties go to the first maximum in
// row-major scan order of the window; a NaN wins over every number and the first NaN is kept,
// so NaNs propagate. Backward: grad_x[n,c,s] += grad_y[n,c,oy,ox] for s = switches[n,c,oy,ox]
// (overlapping windows may share a pixel, hence the sum).
// Layout: (N, C, H, W) / (N, C, Ho, Wo) dense row-major, or with g.nhwc (N, H, W, C) /
// (N, Ho, Wo, C) (switches in y's layout, the same values); switches int32 or int64 (the index type
// I; int64 is needed when H*W > 2^31 - 1). Parallel over planes; deterministic. On the GPU x, y,
// grad_y and grad_x may instead be bfloat16 (uint16_t bits, real.h), all of one call alike.
#pragma once
#include <cstdint>

#include "pool.h"
#include "real.h"

namespace alexnet_ext {

// The maximum of a window of rows x cols elements (float, or bf16 widened exactly) whose top-left
// is at `top` (row stride `stride`), and its place in the window (r, c): row-major scan, strict >
// (ties keep the earlier pixel), and a NaN replaces a number, never a NaN. The rule of every max
// pool here (CPU, GPU, fused with response norm, float or bf16), so all pick the same pixel.
// Selects, not branches: random data makes the outcome unpredictable.
// col_step: the element distance between neighbouring columns (1 in NCHW, C in NHWC).
template <class T, class Idx>
ALEXNET_EXT_HD inline float window_max(const T* top, Idx stride, Idx col_step, Idx rows, Idx cols,
                                       Idx& r, Idx& c) {
  r = 0;
  c = 0;
  float best = to_f32(top[0]);
  for (Idx iy = 0; iy < rows; ++iy) {
    for (Idx ix = 0; ix < cols; ++ix) {
      const float v = to_f32(top[iy * stride + ix * col_step]);
      const bool take = !(v <= best) & (best == best);
      best = take ? v : best;
      r = take ? iy : r;
      c = take ? ix : c;
    }
  }
  return best;
}
template <class T, class Idx>
ALEXNET_EXT_HD inline float window_max(const T* top, Idx stride, Idx rows, Idx cols, Idx& r,
                                       Idx& c) {
  return window_max(top, stride, Idx{1}, rows, cols, r, c);
}

}  // namespace alexnet_ext

namespace alexnet_ext::cpu {

template <class I>
void max_pool(const float* x, float* y, I* switches, const PoolGeometry& g);

// grad_x (planes x in_pixels x inner) = scatter-add of grad_y (planes x out_pixels x inner)
// through switches: element (p, q, k) goes to (p, switches[p, q, k], k). NCHW: planes = N*C,
// inner = 1; NHWC: planes = N, inner = C (the same sums in the same order either way).
// Switches outside [0, in_pixels) are skipped, never written through; the return value is the
// flat position in switches of the first such one, or -1 when all are in range.
// relu_y (null, or grad_x's shape): the pool input was a ReLU output, and grad_x is zeroed where
// relu_y <= 0 (relu.h's relu_undo_select) in the same pass -- max_pool_undo then relu_undo. A
// selected pixel holds the pool's output, so only windows whose maximum is <= 0 are affected.
template <class I>
int64_t max_pool_undo(const float* grad_y, const I* switches, float* grad_x, int64_t planes,
                      int64_t in_pixels, int64_t out_pixels, int64_t inner = 1,
                      const float* relu_y = nullptr);

}  // namespace alexnet_ext::cpu

#ifdef ALEXNET_EXT_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/report.h"

// The same on device pointers, queued on `stream` (cuda/max_pool.cu). y and switches equal the
// CPU's exactly. The undo is a deterministic, atomic-free scatter (one warp per plane, outputs in
// order) whose grad_x equals the CPU's bit for bit; an out-of-range switch is skipped and
// recorded in `bad` (cuda/report.h) instead of being returned, since the result lives on the GPU.
// bf16 (T = uint16_t): y is the maximum element itself (exact; a NaN comes back as the quiet NaN
// of its sign), the same switches; the undo sums in float32 (the float order above) into a float32
// workspace and rounds each grad_x element once.
namespace alexnet_ext::cuda {
// T is float or uint16_t (bf16), I is int32_t or int64_t (instantiated there).
template <class T, class I>
void max_pool(const T* x, T* y, I* switches, const PoolGeometry& g, cudaStream_t stream);
template <class T, class I>
void max_pool_undo(const T* grad_y, const I* switches, T* grad_x, int64_t planes,
                   int64_t in_pixels, int64_t out_pixels, BadValues* bad, cudaStream_t stream,
                   int64_t inner = 1, const T* relu_y = nullptr);
}  // namespace alexnet_ext::cuda
#endif
