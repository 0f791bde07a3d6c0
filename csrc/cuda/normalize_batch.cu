// CUDA normalize_batch (normalize_batch.h): one grid-stride elementwise pass over the output, one
// thread per output element (consecutive threads take consecutive columns: coalesced uint8 reads
// and float32 writes; the mean row is read forwards or, for a flipped crop, backwards, both
// contiguous per warp). Same per-element function as the CPU (normalize_value), hence the same
// bits. A bad offsets row is clamped (nothing is read out of bounds) and reported by the thread
// of the row's first element. A bf16 output rounds at the store (real.h's from_f32), once.
#include <cstdint>

#include "cuda/common.cuh"
#include "cuda/report.h"
#include "normalize_batch.h"
#include "real.h"

namespace alexnet_ext::cuda {
namespace {

constexpr int kThreads = 256;

template <class Out>
__global__ void __launch_bounds__(kThreads)
normalize_kernel(const uint8_t* __restrict__ x, const float* __restrict__ mean,
                 const int32_t* __restrict__ offsets, const float* __restrict__ shift, float scale,
                 Out* __restrict__ out, NormalizeShape g, BadValues* bad) {
  const int64_t total = g.b * g.c * g.s * g.t;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += stride) {
    const int64_t q = i % g.t, r = (i / g.t) % g.s, p = i / (g.t * g.s);  // p = b*C + c
    const int64_t b = p / g.c, c = p % g.c;
    int64_t top, left;
    bool flipped;
    const int64_t wrong = normalize_corner(offsets, b, g, &top, &left, &flipped);
    if (wrong >= 0 && i == p * g.s * g.t && c == 0) report_bad(bad, wrong);  // once per image
    const float m = mean[(c * g.h + top + r) * g.w + left + (flipped ? g.t - 1 - q : q)];
    out[i] = from_f32<Out>(normalize_value(x[i], m, shift ? shift[p] : 0.f, scale));
  }
}

}  // namespace

template <class Out>
void normalize_batch(const uint8_t* x, const float* mean, const int32_t* offsets,
                     const float* shift, float scale, Out* out, const NormalizeShape& g,
                     BadValues* bad, cudaStream_t stream) {
  const int64_t total = g.b * g.c * g.s * g.t;
  if (total == 0) return;
  launch(normalize_kernel<Out>, blocks_for(total, kThreads), kThreads, stream, x, mean, offsets,
         shift, scale, out, g, bad);
  check_launch("normalize_batch");
}

template void normalize_batch(const uint8_t*, const float*, const int32_t*, const float*, float,
                              float*, const NormalizeShape&, BadValues*, cudaStream_t);
template void normalize_batch(const uint8_t*, const float*, const int32_t*, const float*, float,
                              uint16_t*, const NormalizeShape&, BadValues*, cudaStream_t);

}  // namespace alexnet_ext::cuda
