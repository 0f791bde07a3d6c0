// CUDA average pooling. Forward: one thread per output, summing its window in the CPU's order and
// dividing by the count of real pixels. Backward: a gather, one thread per input pixel over the
// outputs whose windows hold it (no atomics, each grad_x element written once), adding
// grad_y / count in the CPU's order. Both equal the CPU's results bit for bit: the same float
// operations in the same order, each rounded on its own (only additions and divisions; nothing
// for the compiler to contract into an FMA). bf16 (T = uint16_t): the same float32 operations on
// the widened elements, each output rounded once (real.h). NHWC (g.nhwc): the same per element,
// threads over (n, y, x, c) with c fastest, so a warp reads and writes contiguous channels.
#include <cstdint>

#include "avg_pool.h"
#include "cuda/common.cuh"
#include "cuda/pool.cuh"
#include "real.h"

namespace alexnet_ext::cuda {
namespace {

constexpr int kThreads = 256;

template <bool kNHWC, class T, class Idx>
__global__ void __launch_bounds__(kThreads)
avg_pool_forward(const T* __restrict__ x, T* __restrict__ y, PoolGeo<Idx> g, Idx total) {
  const Idx cs = g.template col_step<kNHWC>();
  for_each_window<kNHWC>(x, g, total, [&](Idx t, const T* plane, Idx y0, Idx y1, Idx x0, Idx x1) {
    float sum = 0.f;
    for (Idx iy = y0; iy < y1; ++iy)
      for (Idx ix = x0; ix < x1; ++ix) sum = __fadd_rn(sum, to_f32(plane[(iy * g.w + ix) * cs]));
    y[t] = from_f32<T>(__fdiv_rn(sum, static_cast<float>((y1 - y0) * (x1 - x0))));
  });
}

template <bool kNHWC, class T, class Idx>
__global__ void __launch_bounds__(kThreads)
avg_pool_undo_gather(const T* __restrict__ grad_y, T* __restrict__ grad_x, PoolGeo<Idx> g,
                     Idx total) {
  const Idx cs = g.template col_step<kNHWC>();
  for_each_element<kNHWC>(total, g.h, g.w, g.c, [&](Idx t, Idx pl, Idx iy, Idx ix) {
    const T* gy = grad_y + g.template plane_offset<kNHWC>(pl, g.ho * g.wo);
    Idx oy0, oy1, ox0, ox1;
    covering(iy, g.kh, g.sh, g.ph, g.ho, oy0, oy1);
    covering(ix, g.kw, g.sw, g.pw, g.wo, ox0, ox1);
    float sum = 0.f;
    for (Idx oy = oy0; oy < oy1; ++oy) {
      Idx r0, r1;
      window(oy, g.kh, g.sh, g.ph, g.h, r0, r1);
      const float rows = static_cast<float>(r1 - r0);
      for (Idx ox = ox0; ox < ox1; ++ox) {
        Idx c0, c1;
        window(ox, g.kw, g.sw, g.pw, g.w, c0, c1);
        const float cols = static_cast<float>(c1 - c0);
        sum = __fadd_rn(sum, __fdiv_rn(to_f32(gy[(oy * g.wo + ox) * cs]), __fmul_rn(rows, cols)));
      }
    }
    grad_x[t] = from_f32<T>(sum);
  });
}

}  // namespace

template <class T>
void avg_pool(const T* x, T* y, const PoolGeometry& g, cudaStream_t stream) {
  const int64_t total = g.planes() * g.ho * g.wo;
  if (g.nhwc)
    launch_pool("avg_pool", avg_pool_forward<true, T, int32_t>, avg_pool_forward<true, T, int64_t>,
                total, g, kThreads, stream, x, y);
  else
    launch_pool("avg_pool", avg_pool_forward<false, T, int32_t>,
                avg_pool_forward<false, T, int64_t>, total, g, kThreads, stream, x, y);
}

template <class T>
void avg_pool_undo(const T* grad_y, T* grad_x, const PoolGeometry& g, cudaStream_t stream) {
  const int64_t total = g.planes() * g.h * g.w;
  if (g.nhwc)
    launch_pool("avg_pool_undo", avg_pool_undo_gather<true, T, int32_t>,
                avg_pool_undo_gather<true, T, int64_t>, total, g, kThreads, stream, grad_y, grad_x);
  else
    launch_pool("avg_pool_undo", avg_pool_undo_gather<false, T, int32_t>,
                avg_pool_undo_gather<false, T, int64_t>, total, g, kThreads, stream, grad_y,
                grad_x);
}

template void avg_pool(const float*, float*, const PoolGeometry&, cudaStream_t);
template void avg_pool(const uint16_t*, uint16_t*, const PoolGeometry&, cudaStream_t);
template void avg_pool_undo(const float*, float*, const PoolGeometry&, cudaStream_t);
template void avg_pool_undo(const uint16_t*, uint16_t*, const PoolGeometry&, cudaStream_t);

}  // namespace alexnet_ext::cuda
