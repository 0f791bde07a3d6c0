// CUDA softmax + log loss, its undo, and label ranks / top-k error counts.
//
// Forward: one block per row (K = 1000 in AlexNet, so 256 threads take about 4 entries each):
// block max, exps written to probs while their sum accumulates in double, block sum, rescale,
// then the row's loss log(s) + max - logits[label] in double, exactly the CPU's formula. The
// per-row losses go to a scratch array and one block adds them up; every reduction has a fixed
// shape and order (strided per-thread sums, then the fixed tree of block_reduce in
// cuda/common.cuh), so the loss is the same on every run, with no floating-point atomics. It is not
// the CPU's bit for bit: the sums run in another order, and expf/log are CUDA's (both within a
// couple of ulps).
//
// The max ignores NaNs (fmaxf) where the CPU's scan only sees a NaN in the first column; the
// results agree anyway, because a NaN anywhere in a row turns its sum, every probability and its
// loss into NaN on both.
//
// Labels are checked in the kernels (cuda/report.h): a row with a label outside [0, K) gets NaN
// for its loss (and for its gradient in the undo) and is reported; the binding raises.
//
// bf16 logits: every read widened exactly (real.h), so the forward is the float32 one on the
// widened logits, bit for bit. A bf16 gradient is the float32 one rounded once.
#include <cmath>
#include <cstdint>

#include <math_constants.h>

#include "cuda/common.cuh"
#include "cuda/report.h"
#include "real.h"
#include "softmax_log_loss.h"

namespace alexnet_ext::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

template <class X, class L>
__global__ void __launch_bounds__(kThreads)
softmax_rows(const X* __restrict__ logits, const L* __restrict__ labels,
             float* __restrict__ probs, int64_t n, int64_t k, double* __restrict__ row_loss,
             BadValues* bad) {
  __shared__ float red_f[kThreads];
  __shared__ double red_d[kThreads];
  for (int64_t row = blockIdx.x; row < n; row += gridDim.x) {  // uniform per block
    const X* x = logits + row * k;
    float* p = probs + row * k;
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < k; j += kThreads) m = fmaxf(m, to_f32(x[j]));
    m = block_max<kThreads>(m, red_f);
    double s = 0.0;
    for (int64_t j = threadIdx.x; j < k; j += kThreads) {
      const float e = expf(__fsub_rn(to_f32(x[j]), m));
      p[j] = e;
      s = __dadd_rn(s, static_cast<double>(e));
    }
    s = block_sum<kThreads>(s, red_d);
    const float inv = static_cast<float>(__ddiv_rn(1.0, s));
    for (int64_t j = threadIdx.x; j < k; j += kThreads) p[j] = __fmul_rn(p[j], inv);  // own writes
    if (threadIdx.x == 0) {
      const int64_t label = static_cast<int64_t>(labels[row]);
      double loss;
      if (label < 0 || label >= k) {
        report_bad(bad, row);
        loss = CUDART_NAN;
      } else {
        loss = __dsub_rn(__dadd_rn(log(s), static_cast<double>(m)), static_cast<double>(to_f32(x[label])));
      }
      row_loss[row] = loss;
    }
  }
}

// One block: total = sum of row_loss in a fixed order; written as double and/or float.
__global__ void __launch_bounds__(kThreads)
sum_rows(const double* __restrict__ row_loss, int64_t n, double* total, float* total_f) {
  __shared__ double red_d[kThreads];
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kThreads) s = __dadd_rn(s, row_loss[i]);
  s = block_sum<kThreads>(s, red_d);
  if (threadIdx.x == 0) {
    if (total) *total = s;
    if (total_f) *total_f = static_cast<float>(s);
  }
}

template <class L, class G>
__global__ void __launch_bounds__(kThreads)
undo_kernel(const float* probs, const L* __restrict__ labels, G* grad, int64_t n, int64_t k,
            float scale, BadValues* bad) {
  const int64_t total = n * k;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += stride) {
    const int64_t row = t / k, j = t % k;
    const int64_t label = static_cast<int64_t>(labels[row]);
    if (label < 0 || label >= k) {
      if (j == 0) report_bad(bad, row);  // once per row: the count is of bad labels
      grad[t] = from_f32<G>(CUDART_NAN_F);
      continue;
    }
    // probs may be grad (in place): element t is read, then written, by this thread only.
    grad[t] = from_f32<G>(__fmul_rn(__fsub_rn(probs[t], j == label ? 1.f : 0.f), scale));
  }
}

// One warp per row: rank = #{j : p[j] > p[label]} (K for a NaN label score). Writes ranks when
// given, and counts the rows with rank >= thresholds[i] into counts[i] (integer atomics: exact,
// so the counts do not depend on the order).
template <class L>
__global__ void __launch_bounds__(kThreads)
rank_kernel(const float* __restrict__ probs, const L* __restrict__ labels, int64_t n, int64_t k,
            int64_t* __restrict__ ranks, const int64_t* __restrict__ thresholds,
            unsigned long long* counts, int num_thresholds, BadValues* bad) {
  const unsigned lane = threadIdx.x & 31u;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarps;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5); row < n;
       row += warps) {  // uniform per warp
    const int64_t label = static_cast<int64_t>(labels[row]);
    if (label < 0 || label >= k) {
      if (lane == 0) {
        report_bad(bad, row);
        if (ranks) ranks[row] = k;
      }
      continue;
    }
    const float* p = probs + row * k;
    const float t = p[label];
    long long above = 0;
    for (int64_t j = lane; j < k; j += 32) above += p[j] > t;
    for (int o = 16; o > 0; o >>= 1) above += __shfl_xor_sync(0xFFFFFFFFu, above, o);
    if (lane == 0) {
      const int64_t rank = isnan(t) ? k : above;  // a NaN score is never a correct answer
      if (ranks) ranks[row] = rank;
      for (int i = 0; i < num_thresholds; ++i)
        if (rank >= thresholds[i]) atomicAdd(&counts[i], 1ull);
    }
  }
}

}  // namespace

template <class X, class L>
void softmax_log_loss(const X* logits, const L* labels, float* probs, int64_t n, int64_t k,
                      double* row_loss, double* total, float* total_f, BadValues* bad,
                      cudaStream_t stream) {
  if (n == 0) return;  // k == 0 runs: every label is then out of range and reported
  const unsigned grid = static_cast<unsigned>(n < 65535 * 16 ? n : 65535 * 16);
  launch(softmax_rows<X, L>, grid, kThreads, stream, logits, labels, probs, n, k, row_loss, bad);
  check_launch("softmax_log_loss");
  launch(sum_rows, 1, kThreads, stream, row_loss, n, total, total_f);
  check_launch("softmax_log_loss (sum)");
}

template <class L, class G>
void softmax_log_loss_undo(const float* probs, const L* labels, G* grad, int64_t n, int64_t k,
                           float scale, BadValues* bad, cudaStream_t stream) {
  if (n * k == 0) return;
  launch(undo_kernel<L, G>, blocks_for(n * k, kThreads), kThreads, stream, probs, labels, grad, n, k,
      scale, bad);
  check_launch("softmax_log_loss_undo");
}

template <class L>
void label_ranks(const float* probs, const L* labels, int64_t n, int64_t k, int64_t* ranks,
                 const int64_t* thresholds, unsigned long long* counts, int num_thresholds,
                 BadValues* bad, cudaStream_t stream) {
  if (n == 0) return;
  launch(rank_kernel<L>, blocks_for(n, kWarps), kThreads, stream, probs, labels, n, k, ranks,
      thresholds, counts, num_thresholds, bad);
  check_launch("label_ranks");
}

// The two label types, the two logits / gradient types.
#define SOFTMAX_TYPES(X, L)                                                                      \
  template void softmax_log_loss(const X*, const L*, float*, int64_t, int64_t, double*, double*, \
                                 float*, BadValues*, cudaStream_t);                             \
  template void softmax_log_loss_undo(const float*, const L*, X*, int64_t, int64_t, float,       \
                                      BadValues*, cudaStream_t);
SOFTMAX_TYPES(float, int32_t)
SOFTMAX_TYPES(float, int64_t)
SOFTMAX_TYPES(uint16_t, int32_t)
SOFTMAX_TYPES(uint16_t, int64_t)
#undef SOFTMAX_TYPES
template void label_ranks(const float*, const int32_t*, int64_t, int64_t, int64_t*, const int64_t*,
                          unsigned long long*, int, BadValues*, cudaStream_t);
template void label_ranks(const float*, const int64_t*, int64_t, int64_t, int64_t*, const int64_t*,
                          unsigned long long*, int, BadValues*, cudaStream_t);

}  // namespace alexnet_ext::cuda
