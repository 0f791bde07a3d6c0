// CUDA response normalization, forward and undo, each one fused pass over memory.
//
// One thread owns a pixel column (image n, pixel q) and walks the channels with the CPU's running
// window sum in a double register (one channel enters and one leaves per step, recomputed over the
// window where it is not finite). Consecutive threads take consecutive pixels, so every channel
// step is a coalesced load of one contiguous run per warp. The channel that leaves the window and
// the current channel were loaded a few steps earlier by the same thread; those re-reads hit L1/L2,
// so DRAM sees each tensor once: forward reads x and writes y and denoms, undo reads grad_y, x, y,
// denoms and writes grad_x.
//
// When there are few pixel columns (small images or batches), the channels are split into
// segments of at least kMinSegment channels, each walked by its own thread after summing the
// window that precedes it, so that the grid still fills the GPU. The split depends only on the
// shape, so results never depend on the device. With one segment (n*H*W >= 2^18 or C < 64) the
// arithmetic is the CPU's operation for operation, with every rounding explicit (no FMA
// contraction), so results equal the CPU's bit for bit where the CPU's arithmetic is IEEE too:
// always for beta = 0.75 (sqrt and division are correctly rounded on both), up to powf's last bit
// for other exponents. bf16 (T = uint16_t; denoms stay float32): the same arithmetic on the
// widened elements, each y or grad_x rounded once (real.h) from the float the float32 op stores.
//
// NHWC (channels innermost): the same threads, split and arithmetic through strides (channel step
// 1, pixel step C), so the results equal the NCHW op's bit for bit. A thread's window is then
// contiguous, but a warp's 32 loads per channel step are C floats apart (32 sectors per request).
// A faster version would give a warp a run of pixels, load each pixel's C channels coalesced
// (lanes over channels) into shared memory, and walk the window sums from there.
// relu (undo): grad_x through relu_undo_select(., x) before it is stored (relu.h).
#include <algorithm>
#include <cstdint>

#include "cuda/common.cuh"
#include "real.h"
#include "relu.h"
#include "response_norm.h"

namespace alexnet_ext::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kTargetThreads = int64_t{1} << 18;  // ~ one full H100 wave (132 SMs x 2048)
constexpr int64_t kMinSegment = 32;

// Walks channels i = c0 .. c1-1 keeping sum = sum of term(j) for j in [i - lo, i + hi] clipped
// to [0, c-1], and calls emit(i, sum) at each. Before step c0 the sum holds the window of
// c0 - 1 (for c0 = 0 that is channels [0, hi-1], the CPU's warm-up).
template <class Term, class Emit>
__device__ __forceinline__ void walk_channels(int64_t c, int64_t c0, int64_t c1, int64_t lo,
                                              int64_t hi, Term term, Emit emit) {
  double sum = 0.0;
  const int64_t warm_end = min(c0 - 1 + hi, c - 1);
  for (int64_t j = max(c0 - 1 - lo, int64_t{0}); j <= warm_end; ++j) sum = __dadd_rn(sum, term(j));
  // The entering channel's term is loaded one step ahead: two steps' DRAM loads are in flight per
  // thread instead of one (each step otherwise waits a full round trip). Same values, same order.
  double ahead = (c0 < c1 && c0 + hi < c) ? term(c0 + hi) : 0.0;
  for (int64_t i = c0; i < c1; ++i) {
    const double enter = ahead;
    if (i + 1 < c1 && i + 1 + hi < c) ahead = term(i + 1 + hi);
    if (i + hi < c) sum = __dadd_rn(sum, enter);
    if (i - lo - 1 >= 0) sum = __dsub_rn(sum, term(i - lo - 1));
    if (!isfinite(sum)) {  // a NaN or inf must not outlive its channel's stay in the window
      sum = 0.0;
      const int64_t e = min(i + hi, c - 1);
      for (int64_t j = max(i - lo, int64_t{0}); j <= e; ++j) sum = __dadd_rn(sum, term(j));
    }
    emit(i, sum);
  }
}

struct Split {
  int64_t seg_len, columns;  // channels per segment; threads of work = segments * n * pixels
};

Split split_channels(int64_t n, int64_t c, int64_t pixels) {
  const int64_t cols = n * pixels;
  int64_t segs = 1;
  if (cols < kTargetThreads) {
    segs = (kTargetThreads + cols - 1) / cols;
    segs = std::min(segs, std::max<int64_t>(1, c / kMinSegment));
  }
  const int64_t seg_len = (c + segs - 1) / segs;
  segs = (c + seg_len - 1) / seg_len;
  return {seg_len, segs * cols};
}

// Work item t -> (segment, image, pixel) with the pixel fastest (coalescing).
struct Column {
  int64_t base;    // offset of (image, channel 0, pixel); channel j at base + j * cs
  int64_t c0, c1;  // this thread's channels
};

// ps: the pixel step (1 in NCHW, C in NHWC).
__device__ __forceinline__ Column column(int64_t t, int64_t n, int64_t c, int64_t pixels,
                                         int64_t seg_len, int64_t ps) {
  const int64_t q = t % pixels;
  const int64_t r = t / pixels;
  const int64_t ni = r % n;
  const int64_t c0 = (r / n) * seg_len;
  return {ni * c * pixels + q * ps, c0, min(c0 + seg_len, c)};
}

template <bool kTQ, bool kNHWC, class T>
__global__ void __launch_bounds__(kThreads)
lrn_forward(const T* __restrict__ x, T* __restrict__ y, float* __restrict__ denoms,
            int64_t n, int64_t c, int64_t pixels, int64_t seg_len, int64_t columns,
            int64_t before, int64_t after, double k, double a, float beta) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t cs = kNHWC ? 1 : pixels, ps = kNHWC ? c : 1;  // channel and pixel steps
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < columns;
       t += stride) {
    const Column col = column(t, n, c, pixels, seg_len, ps);
    const T* xc = x + col.base;
    // A float's square is exact in double (24-bit mantissa squared fits in 53 bits).
    auto sq = [&](int64_t j) {
      const double v = to_f32(xc[j * cs]);
      return __dmul_rn(v, v);
    };
    walk_channels(c, col.c0, col.c1, before, after, sq, [&](int64_t i, double sum) {
      const int64_t o = col.base + i * cs;
      const float d = static_cast<float>(__dadd_rn(k, __dmul_rn(a, sum)));
      denoms[o] = d;
      y[o] = from_f32<T>(__fmul_rn(to_f32(x[o]), lrn_inv_pow<kTQ>(d, beta)));
    });
  }
}

template <bool kTQ, bool kNHWC, class T>
__global__ void __launch_bounds__(kThreads)
lrn_undo(const T* __restrict__ grad_y, const T* __restrict__ x, const T* __restrict__ y,
         const float* __restrict__ denoms, T* __restrict__ grad_x, int64_t n, int64_t c, int64_t pixels, int64_t seg_len,
         int64_t columns, int64_t before, int64_t after, double coef, float beta, bool relu) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t cs = kNHWC ? 1 : pixels, ps = kNHWC ? c : 1;  // channel and pixel steps
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < columns;
       t += stride) {
    const Column col = column(t, n, c, pixels, seg_len, ps);
    // r[i] = grad_y[i] * y[i] / denoms[i]; recomputed identically when channel i leaves.
    // Without y (response_norm_max_pool's undo), y[j] = x[j] * denoms[j]^(-beta), the forward's
    // float, rounded to T as the forward stored it.
    auto r = [&](int64_t j) {
      const int64_t o = col.base + j * cs;
      const float yo = y ? to_f32(y[o])
                         : to_f32(from_f32<T>(__fmul_rn(to_f32(x[o]), lrn_inv_pow<kTQ>(denoms[o], beta))));
      return __ddiv_rn(__dmul_rn(static_cast<double>(to_f32(grad_y[o])), static_cast<double>(yo)),
                       static_cast<double>(denoms[o]));
    };
    // Channel j receives from every i whose window holds j: i in [j - after, j + before].
    walk_channels(c, col.c0, col.c1, after, before, r, [&](int64_t j, double sum) {
      const int64_t o = col.base + j * cs;
      const float g = __fmul_rn(to_f32(grad_y[o]), lrn_inv_pow<kTQ>(denoms[o], beta));
      const float xf = to_f32(x[o]);
      const double xo = xf;
      const float gx = static_cast<float>(
          __dsub_rn(static_cast<double>(g), __dmul_rn(__dmul_rn(coef, xo), sum)));
      grad_x[o] = from_f32<T>(relu ? relu_undo_select(gx, xf) : gx);
    });
  }
}

}  // namespace

template <class T>
void response_norm(const T* x, T* y, float* denoms, int64_t n, int64_t c, int64_t pixels,
                   const ResponseNormParams& p, bool nhwc, cudaStream_t stream) {
  if (n * c * pixels == 0) return;
  const Split s = split_channels(n, c, pixels);
  const float beta = static_cast<float>(p.beta);
  const unsigned grid = blocks_for(s.columns, kThreads);
  // The exponent and the layout are template parameters: four kernels, each branch-free.
  auto go = [&](auto kernel) {
    launch(kernel, grid, kThreads, stream, x, y, denoms, n, c, pixels, s.seg_len, s.columns,
           p.size / 2, (p.size - 1) / 2, p.k, p.a, beta);
  };
  if (beta == 0.75f)
    nhwc ? go(lrn_forward<true, true, T>) : go(lrn_forward<true, false, T>);
  else
    nhwc ? go(lrn_forward<false, true, T>) : go(lrn_forward<false, false, T>);
  check_launch("response_norm");
}

template <class T>
void response_norm_undo(const T* grad_y, const T* x, const T* y, const float* denoms, T* grad_x,
                        int64_t n, int64_t c, int64_t pixels, const ResponseNormParams& p,
                        bool nhwc, bool relu, cudaStream_t stream) {
  if (n * c * pixels == 0) return;
  const Split s = split_channels(n, c, pixels);
  const float beta = static_cast<float>(p.beta);
  const double coef = 2.0 * p.a * p.beta;
  const unsigned grid = blocks_for(s.columns, kThreads);
  auto go = [&](auto kernel) {
    launch(kernel, grid, kThreads, stream, grad_y, x, y, denoms, grad_x, n, c, pixels, s.seg_len,
           s.columns, p.size / 2, (p.size - 1) / 2, coef, beta, relu);
  };
  if (beta == 0.75f)
    nhwc ? go(lrn_undo<true, true, T>) : go(lrn_undo<true, false, T>);
  else
    nhwc ? go(lrn_undo<false, true, T>) : go(lrn_undo<false, false, T>);
  check_launch("response_norm_undo");
}

#define ALEXNET_EXT_LRN(T)                                                                     \
  template void response_norm(const T*, T*, float*, int64_t, int64_t, int64_t,                \
                              const ResponseNormParams&, bool, cudaStream_t);                  \
  template void response_norm_undo(const T*, const T*, const T*, const float*, T*, int64_t,   \
                                   int64_t, int64_t, const ResponseNormParams&, bool, bool,   \
                                   cudaStream_t);
ALEXNET_EXT_LRN(float)
ALEXNET_EXT_LRN(uint16_t)
#undef ALEXNET_EXT_LRN

}  // namespace alexnet_ext::cuda
