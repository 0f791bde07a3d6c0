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
// NHWC: the forward's threads run over (n, oy, ox, c), c fastest (coalesced). The undo is the
// same warp-per-plane scatter, a plane being one (image, channel) with its pixels `inner` (= C)
// elements apart: the CPU's sequence of additions per pixel again, no atomics, and N*C*32 threads
// at work (one thread per plane walking its outputs serially left a GPU mostly idle: 12k threads
// for pool1 at batch 128). A lane's loads are C apart, but the 8 warps of a block own 8
// consecutive channels, so each 32-byte sector they touch is used whole (through L1).
// relu_y (both layouts): the ReLU-undo mask (relu.h relu_undo_select) applied by the warp that
// owns the plane, after its last chunk.
#include <algorithm>
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

template <bool kNHWC, class T, class I>
__global__ void __launch_bounds__(kThreads)
max_pool_undo_kernel(const T* __restrict__ grad_y, const I* __restrict__ switches,
                     float* __restrict__ grad_x, int64_t planes, int64_t in_pixels,
                     int64_t out_pixels, int64_t inner, const T* __restrict__ relu_y,
                     BadValues* bad) {
  __shared__ float vals[kThreads];  // each lane's gradient, read by its group's leader
  const unsigned lane = threadIdx.x & 31u;
  const unsigned warp_base = threadIdx.x & ~31u;
  const unsigned below = (1u << lane) - 1u;  // lanes lower than this one
  // A plane is (image img, channel k), its elements at img * pixels * ps + k + pixel * ps.
  // NCHW (ps 1, k 0): warps stride over the planes. NHWC: grid x over the channels (a block's 8
  // warps take 8 consecutive ones), grid y strides over the images (no 64-bit division, which is
  // a called subroutine that spilled registers). img, k, q0 and the loop bounds are the same for
  // all 32 lanes, so every lane reaches every __match_any_sync and __syncwarp below.
  const int64_t warp = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  const int64_t warps_x = static_cast<int64_t>(gridDim.x) * kWarps;
  const int64_t img0 = kNHWC ? static_cast<int64_t>(blockIdx.y) : warp;
  const int64_t img_step = kNHWC ? static_cast<int64_t>(gridDim.y) : warps_x;
  const int64_t ps = kNHWC ? inner : 1;  // the pixel step (a constant 1 in NCHW)
  for (int64_t k = kNHWC ? warp : 0; k < ps; k += kNHWC ? warps_x : 1) {
    for (int64_t img = img0; img < planes; img += img_step) {
      float* gx = grad_x + img * in_pixels * ps + k;
      const int64_t out0 = img * out_pixels * ps + k;
      const I* sw = switches + out0;
      const T* gy = grad_y + out0;
      for (int64_t i = lane; i < in_pixels; i += 32) gx[i * ps] = 0.f;
      __syncwarp();  // the zeros are visible to every lane before any lane adds to them
      for (int64_t q0 = 0; q0 < out_pixels; q0 += 32) {
        const int64_t q = q0 + lane;
        long long target = -1;  // -1: no pixel (past the end, or a bad switch)
        if (q < out_pixels) {
          const int64_t s = static_cast<int64_t>(sw[q * ps]);
          if (s >= 0 && s < in_pixels) {
            target = s;
            vals[threadIdx.x] = to_f32(gy[q * ps]);
          } else {
            report_bad(bad, out0 + q * ps);
          }
        }
        const unsigned group = __match_any_sync(0xFFFFFFFFu, static_cast<unsigned long long>(target));
        __syncwarp();  // vals written before the leaders read them
        if (target >= 0 && (group & below) == 0) {  // the lowest lane of its group leads it
          float acc = gx[target * ps];
          for (unsigned m = group; m != 0; m &= m - 1) acc += vals[warp_base + __ffs(m) - 1];
          gx[target * ps] = acc;
        }
        __syncwarp();  // this chunk's sums are visible to the next chunk, and vals is free again
      }
      if (relu_y) {  // after the last chunk's __syncwarp: every sum of the plane is final
        const T* ry = relu_y + img * in_pixels * ps + k;
        for (int64_t i = lane; i < in_pixels; i += 32)
          gx[i * ps] = relu_undo_select(gx[i * ps], to_f32(ry[i * ps]));
      }
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
  if (inner == 1) {
    launch(max_pool_undo_kernel<false, T, I>, blocks_for(planes, kWarps), kThreads, stream, grad_y,
           switches, gx, planes, in_pixels, out_pixels, inner, relu_y, bad);
  } else {
    const dim3 grid(blocks_for(inner, kWarps), static_cast<unsigned>(std::min<int64_t>(planes, 65535)));
    launch(max_pool_undo_kernel<true, T, I>, grid, kThreads, stream, grad_y, switches, gx, planes,
           in_pixels, out_pixels, inner, relu_y, bad);
  }
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
