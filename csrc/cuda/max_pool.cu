// CUDA max pooling with switches, and its deterministic undo.
//
// Forward: one thread per output, consecutive threads along a row (coalesced stores; the loads
// of neighbouring windows overlap in L1). The scan order, the tie rule and the NaN rule are the
// CPU's (first maximum in row-major window order wins; the first NaN wins and stays), so y and the
// switches equal the CPU's exactly.
//
// Undo: an ordered, atomic-free scatter through the switches. (A gather over the outputs whose
// windows cover each pixel would need the window geometry, which max_pool_undo does not take: its
// API has the image size only. It would also silently drop a switch outside its own window, which
// the CPU honours.) One warp owns a plane: it zeroes the plane's grad_x, then takes the plane's
// outputs 32 at a time in order; lanes whose switches name the same pixel are grouped with
// __match_any_sync, and the lowest lane of each group adds the group's gradients to that pixel in
// lane order. Every pixel therefore receives its gradients in increasing output order starting
// from 0: the CPU's exact sequence of float additions, so the results are the CPU's bit for bit,
// the same on every run, with no atomics. Only the warp that owns a plane touches it, and
// __syncwarp orders its chunks. Out-of-range switches are reported (cuda/report.h) and skipped.
//
// bf16 (x, y, grad_y, grad_x as uint16_t bits): the same kernels on widened values; the forward
// stores the winning element itself, the undo scatters into float32 sums and rounds them once.
//
// NHWC: the forward's threads run over (n, oy, ox, c), c fastest (coalesced). The undo gives each
// thread one (image, channel) column and walks its outputs in order, adding each gradient to the
// pixel its switch names: again the CPU's sequence of additions per pixel, no atomics, and a
// warp's loads and stores touch consecutive channels. relu_y (both layouts): the ReLU-undo mask
// (relu.h relu_undo_select) applied by the same thread that owns the pixel, after its scatter.
#include <cstdint>
#include <type_traits>

#include "cast.h"
#include "cuda/common.cuh"
#include "cuda/pool.cuh"
#include "cuda/report.h"
#include "max_pool.h"
#include "relu.h"

namespace alexnet_ext::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

template <bool kNHWC, class T, class I, class Idx>
__global__ void __launch_bounds__(kThreads)
max_pool_forward(const T* __restrict__ x, T* __restrict__ y, I* __restrict__ switches,
                 PoolGeo<Idx> g, Idx total) {
  const Idx cs = g.template col_step<kNHWC>();
  for_each_window<kNHWC>(x, g, total, [&](Idx t, const T* plane, Idx y0, Idx y1, Idx x0, Idx x1) {
    Idx r, c;
    y[t] = from_f32<T>(
        window_max(plane + (y0 * g.w + x0) * cs, g.w * cs, cs, y1 - y0, x1 - x0, r, c));
    switches[t] = static_cast<I>((y0 + r) * g.w + x0 + c);
  });
}

template <class T, class I>
__global__ void __launch_bounds__(kThreads)
max_pool_undo_kernel(const T* __restrict__ grad_y, const I* __restrict__ switches,
                     float* __restrict__ grad_x, int64_t planes, int64_t in_pixels,
                     int64_t out_pixels, const T* __restrict__ relu_y, BadValues* bad) {
  __shared__ float vals[kThreads];  // each lane's gradient, read by its group's leader
  const unsigned lane = threadIdx.x & 31u;
  const unsigned warp_base = threadIdx.x & ~31u;
  const unsigned below = (1u << lane) - 1u;  // lanes lower than this one
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarps;
  // pl, q0 and the loop bounds are the same for all 32 lanes, so every lane reaches every
  // __match_any_sync and __syncwarp below.
  for (int64_t pl = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5); pl < planes;
       pl += warps) {
    float* gx = grad_x + pl * in_pixels;
    const I* sw = switches + pl * out_pixels;
    const T* gy = grad_y + pl * out_pixels;
    for (int64_t i = lane; i < in_pixels; i += 32) gx[i] = 0.f;
    __syncwarp();  // the zeros are visible to every lane before any lane adds to them
    for (int64_t q0 = 0; q0 < out_pixels; q0 += 32) {
      const int64_t q = q0 + lane;
      long long target = -1;  // -1: no pixel (past the end, or a bad switch)
      if (q < out_pixels) {
        const int64_t s = static_cast<int64_t>(sw[q]);
        if (s >= 0 && s < in_pixels) {
          target = s;
          vals[threadIdx.x] = to_f32(gy[q]);
        } else {
          report_bad(bad, pl * out_pixels + q);
        }
      }
      const unsigned group = __match_any_sync(0xFFFFFFFFu, static_cast<unsigned long long>(target));
      __syncwarp();  // vals written before the leaders read them
      if (target >= 0 && (group & below) == 0) {  // the lowest lane of its group leads it
        float acc = gx[target];
        for (unsigned m = group; m != 0; m &= m - 1) acc += vals[warp_base + __ffs(m) - 1];
        gx[target] = acc;
      }
      __syncwarp();  // this chunk's sums are visible to the next chunk, and vals is free again
    }
    if (relu_y) {  // after the last chunk's __syncwarp: every sum of the plane is final
      const T* ry = relu_y + pl * in_pixels;
      for (int64_t i = lane; i < in_pixels; i += 32) gx[i] = relu_undo_select(gx[i], to_f32(ry[i]));
    }
  }
}

// NHWC (inner = C channels interleaved in each of `planes` images): one thread per (image,
// channel), outputs in order, so each pixel's gradients add in the CPU's order.
template <class T, class I>
__global__ void __launch_bounds__(kThreads)
max_pool_undo_columns(const T* __restrict__ grad_y, const I* __restrict__ switches,
                      float* __restrict__ grad_x, int64_t planes, int64_t in_pixels,
                      int64_t out_pixels, int64_t inner, const T* __restrict__ relu_y,
                      BadValues* bad) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < planes * inner;
       t += stride) {
    const int64_t pl = t / inner, k = t % inner;
    float* gx = grad_x + pl * in_pixels * inner + k;
    const int64_t out0 = pl * out_pixels * inner + k;
    for (int64_t i = 0; i < in_pixels; ++i) gx[i * inner] = 0.f;
    for (int64_t q = 0; q < out_pixels; ++q) {
      const int64_t e = out0 + q * inner;
      const int64_t s = static_cast<int64_t>(switches[e]);
      if (s < 0 || s >= in_pixels) {
        report_bad(bad, e);
        continue;
      }
      gx[s * inner] += to_f32(grad_y[e]);
    }
    if (relu_y) {
      const T* ry = relu_y + pl * in_pixels * inner + k;
      for (int64_t i = 0; i < in_pixels; ++i)
        gx[i * inner] = relu_undo_select(gx[i * inner], to_f32(ry[i * inner]));
    }
  }
}

}  // namespace

template <class T, class I>
void max_pool(const T* x, T* y, I* switches, const PoolGeometry& g, cudaStream_t stream) {
  const int64_t total = g.planes() * g.ho * g.wo;
  if (g.nhwc)
    launch_pool("max_pool", max_pool_forward<true, T, I, int32_t>,
                max_pool_forward<true, T, I, int64_t>, total, g, kThreads, stream, x, y, switches);
  else
    launch_pool("max_pool", max_pool_forward<false, T, I, int32_t>,
                max_pool_forward<false, T, I, int64_t>, total, g, kThreads, stream, x, y, switches);
}

template <class T, class I>
void max_pool_undo(const T* grad_y, const I* switches, T* grad_x, int64_t planes,
                   int64_t in_pixels, int64_t out_pixels, BadValues* bad, cudaStream_t stream,
                   int64_t inner, const T* relu_y) {
  if (planes == 0) return;  // in_pixels == 0 still runs: every switch is then reported
  // A pixel's sum may span several chunks of 32 outputs: bf16 sums go to a float32 workspace
  // first, so each is rounded once, at the end.
  constexpr bool wide = std::is_same_v<T, float>;
  const int64_t len = planes * in_pixels * inner;
  Workspace sums(wide ? 0 : static_cast<size_t>(len) * sizeof(float), stream);
  float* gx = wide ? reinterpret_cast<float*>(grad_x) : sums.get<float>();
  if (inner == 1)
    launch(max_pool_undo_kernel<T, I>, blocks_for(planes, kWarps), kThreads, stream, grad_y,
           switches, gx, planes, in_pixels, out_pixels, relu_y, bad);
  else
    launch(max_pool_undo_columns<T, I>, blocks_for(planes * inner, kThreads), kThreads, stream,
           grad_y, switches, gx, planes, in_pixels, out_pixels, inner, relu_y, bad);
  check_launch("max_pool_undo");
  if constexpr (!wide) cast_to_bf16(gx, grad_x, len, stream);
}

#define ALEXNET_EXT_MAX_POOL(T, I)                                                          \
  template void max_pool(const T*, T*, I*, const PoolGeometry&, cudaStream_t);              \
  template void max_pool_undo(const T*, const I*, T*, int64_t, int64_t, int64_t, BadValues*, \
                              cudaStream_t, int64_t, const T*);
ALEXNET_EXT_MAX_POOL(float, int32_t)
ALEXNET_EXT_MAX_POOL(float, int64_t)
ALEXNET_EXT_MAX_POOL(uint16_t, int32_t)
ALEXNET_EXT_MAX_POOL(uint16_t, int64_t)
#undef ALEXNET_EXT_MAX_POOL

}  // namespace alexnet_ext::cuda
