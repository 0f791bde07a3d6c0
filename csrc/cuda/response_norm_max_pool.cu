// CUDA response norm + max pool forward in one pass (response_norm_max_pool.h).
//
// A block takes a tile of TOH x TOW pooled outputs of one image (grid-stride over (image, tile
// row, tile column)). The tile's input pixels are the rows and columns it owns (band_rows: the
// tiles partition the image) plus the halo its overlapping windows reach; at most kMaxTile of
// them, kPer per thread. Each thread keeps its pixels' running window sums in double registers
// and walks the channels as response_norm.cu does (warm-up, one channel in and one out per step,
// recomputed where not finite; every rounding explicit): the same operations as the CPU, so the
// same bits. Per channel it writes the denoms of owned pixels and the normalised value of every
// tile pixel to shared memory; after one barrier the tile's outputs are pooled from there in
// max_pool's order. Two shared buffers alternate by channel parity, so the barrier of channel i+1
// also guarantees that channel i's pooling is done before its buffer is written again.
// bf16 (T = uint16_t): x widened on load, each normalised value rounded to bf16 (and held as its
// float) before pooling, the pooled maximum stored as that bf16: the unfused bf16 ops' bits.
// NHWC (g.nhwc): the same tiles and arithmetic through strides (channel step 1, pixel step C), so
// the same bits; the per-channel loads are then C elements apart across a warp (uncoalesced). A
// faster NHWC version would stage each tile pixel's C channels in shared memory with coalesced
// loads (lanes over channels) and walk the sums from there.
#include <algorithm>
#include <cstdint>

#include "cuda/common.cuh"
#include "cuda/memory.h"
#include "cuda/pool.cuh"
#include "max_pool.h"
#include "real.h"
#include "response_norm_max_pool.h"

namespace alexnet_ext::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kPer = 4;                        // tile pixels per thread
constexpr int64_t kMaxTile = kThreads * kPer;  // 1024 pixels: 2 x 4 KiB of shared memory

struct Tiling {
  int64_t toh, tow;        // outputs per tile
  int64_t tiles_y, tiles_x;
};

template <bool kTQ, bool kNHWC, class T, class I>
__global__ void __launch_bounds__(kThreads)
lrn_pool_forward(const T* __restrict__ x, T* __restrict__ pooled, I* __restrict__ switches,
                 float* __restrict__ denoms, PoolGeometry g, Tiling tl, int64_t before,
                 int64_t after, double k, double a, float beta) {
  __shared__ float tile[2][kMaxTile];
  const int64_t c = g.c, h = g.h, w = g.w, pixels = h * w;
  const int64_t cstep = kNHWC ? 1 : pixels, pstep = kNHWC ? c : 1;  // channel, pixel steps
  const int64_t tiles = g.n * tl.tiles_y * tl.tiles_x;
  for (int64_t tix = blockIdx.x; tix < tiles; tix += gridDim.x) {  // uniform over the block
    const int64_t tx = tix % tl.tiles_x, ty = (tix / tl.tiles_x) % tl.tiles_y;
    const int64_t ni = tix / (tl.tiles_x * tl.tiles_y);
    const int64_t oy0 = ty * tl.toh, oy1 = min(oy0 + tl.toh, g.ho);
    const int64_t ox0 = tx * tl.tow, ox1 = min(ox0 + tl.tow, g.wo);
    const BandRows rs = band_rows(oy0, oy1, g.ho, g.kh, g.sh, g.ph, h);
    const BandRows cs = band_rows(ox0, ox1, g.wo, g.kw, g.sw, g.pw, w);
    const int64_t tw = cs.end - cs.own_lo;
    const int64_t tp = (rs.end - rs.own_lo) * tw;  // <= kMaxTile (tiling())
    const int64_t img = ni * c * pixels;
    // This thread's tile pixels: flat offset in a plane (-1: none) and whether it owns them.
    int64_t at[kPer];
    bool own[kPer];
    double sum[kPer];
#pragma unroll
    for (int u = 0; u < kPer; ++u) {
      const int64_t q = threadIdx.x + int64_t{u} * kThreads;
      at[u] = -1;
      own[u] = false;
      sum[u] = 0.0;
      if (q < tp) {
        const int64_t r = rs.own_lo + q / tw, col = cs.own_lo + q % tw;
        at[u] = r * w + col;
        own[u] = r < rs.own_hi && col < cs.own_hi;
      }
    }
    auto sq = [&](int u, int64_t j) {
      const double v = to_f32(x[img + j * cstep + at[u] * pstep]);
      return __dmul_rn(v, v);
    };
    for (int64_t j = 0; j < min(after, c); ++j) {
#pragma unroll
      for (int u = 0; u < kPer; ++u)
        if (at[u] >= 0) sum[u] = __dadd_rn(sum[u], sq(u, j));
    }
    for (int64_t i = 0; i < c; ++i) {
      float* buf = tile[i & 1];
#pragma unroll
      for (int u = 0; u < kPer; ++u) {
        if (at[u] < 0) continue;
        if (i + after < c) sum[u] = __dadd_rn(sum[u], sq(u, i + after));
        if (i - before - 1 >= 0) sum[u] = __dsub_rn(sum[u], sq(u, i - before - 1));
        if (!isfinite(sum[u])) {  // a NaN or inf must not outlive its channel's stay
          double s = 0.0;
          const int64_t e = min(i + after, c - 1);
          for (int64_t j = max(i - before, int64_t{0}); j <= e; ++j) s = __dadd_rn(s, sq(u, j));
          sum[u] = s;
        }
        const int64_t o = img + i * cstep + at[u] * pstep;
        const float d = static_cast<float>(__dadd_rn(k, __dmul_rn(a, sum[u])));
        if (own[u]) denoms[o] = d;
        const float t = __fmul_rn(to_f32(x[o]), lrn_inv_pow<kTQ>(d, beta));
        buf[threadIdx.x + u * kThreads] = to_f32(from_f32<T>(t));  // as response_norm stores it
      }
      __syncthreads();
      const int64_t plane = ni * c + i;
      const int64_t tow = ox1 - ox0, outs = (oy1 - oy0) * tow;
      for (int64_t t = threadIdx.x; t < outs; t += kThreads) {
        const int64_t oy = oy0 + t / tow, ox = ox0 + t % tow;
        int64_t y0, y1, x0, x1;
        window<int64_t>(oy, g.kh, g.sh, g.ph, h, y0, y1);
        window<int64_t>(ox, g.kw, g.sw, g.pw, w, x0, x1);
        int64_t r, cc;  // max_pool's rule, on the tile
        const float best = window_max(buf + (y0 - rs.own_lo) * tw + (x0 - cs.own_lo), tw, y1 - y0,
                                      x1 - x0, r, cc);
        const int64_t out = kNHWC ? ((ni * g.ho + oy) * g.wo + ox) * c + i
                                  : (plane * g.ho + oy) * g.wo + ox;
        pooled[out] = from_f32<T>(best);  // exact: best is a T value
        switches[out] = static_cast<I>((y0 + r) * w + x0 + cc);
      }
    }
    __syncthreads();  // the last channels' pooling is done before the next tile's writes
  }
}

// Tile sizes whose input pixels fit kMaxTile: a tile's rows are at most TOH*sh + kh (its own rows,
// at most TOH strides except the last tile, which owns the remainder below its last window, less
// than a stride past it; plus one window of halo), the columns likewise. Halves the wider side
// until it fits; false when even one output does not.
bool tiling(const PoolGeometry& g, Tiling& t) {
  t.toh = std::min<int64_t>(g.ho, 8);
  t.tow = std::min<int64_t>(g.wo, 32);
  auto pixels = [&] {  // each side <= 40 * 2^31 (GEOMETRY_MAX): the product is taken only if small
    const int64_t rows = std::min(g.h, t.toh * g.sh + g.kh), cols = std::min(g.w, t.tow * g.sw + g.kw);
    return rows > kMaxTile || cols > kMaxTile ? kMaxTile + 1 : rows * cols;
  };
  while (pixels() > kMaxTile) {
    if (t.tow > 1 && (t.tow >= t.toh || t.toh == 1)) t.tow = (t.tow + 1) / 2;
    else if (t.toh > 1) t.toh = (t.toh + 1) / 2;
    else return false;
  }
  t.tiles_y = (g.ho + t.toh - 1) / t.toh;
  t.tiles_x = (g.wo + t.tow - 1) / t.tow;
  return true;
}

}  // namespace

template <class T, class I>
void response_norm_max_pool(const T* x, T* pooled, I* switches, float* denoms,
                            const PoolGeometry& g, const ResponseNormParams& p, cudaStream_t stream) {
  if (g.planes() * g.h * g.w == 0) return;
  Tiling t;
  if (!tiling(g, t)) {
    // Windows or strides beyond any tile: the unfused ops through a stream-ordered scratch y.
    int device = 0;
    check(cudaGetDevice(&device), "response_norm_max_pool");
    T* y = static_cast<T*>(
        device_alloc(sizeof(T) * static_cast<size_t>(g.planes() * g.h * g.w), device, stream));
    response_norm(x, y, denoms, g.n, g.c, g.h * g.w, p, g.nhwc, stream);
    max_pool(y, pooled, switches, g, stream);
    device_free(y);  // reused only by later work on this stream
    return;
  }
  const float beta = static_cast<float>(p.beta);
  const unsigned grid = blocks_for(g.n * t.tiles_y * t.tiles_x, 1);
  auto go = [&](auto kernel) {  // exponent and layout as template parameters: branch-free
    launch(kernel, grid, kThreads, stream, x, pooled, switches, denoms, g, t, p.size / 2,
           (p.size - 1) / 2, p.k, p.a, beta);
  };
  if (beta == 0.75f)
    g.nhwc ? go(lrn_pool_forward<true, true, T, I>) : go(lrn_pool_forward<true, false, T, I>);
  else
    g.nhwc ? go(lrn_pool_forward<false, true, T, I>) : go(lrn_pool_forward<false, false, T, I>);
  check_launch("response_norm_max_pool");
}

#define ALEXNET_EXT_LRN_POOL(T, I)                                                           \
  template void response_norm_max_pool(const T*, T*, I*, float*, const PoolGeometry&,        \
                                       const ResponseNormParams&, cudaStream_t);
ALEXNET_EXT_LRN_POOL(float, int32_t)
ALEXNET_EXT_LRN_POOL(float, int64_t)
ALEXNET_EXT_LRN_POOL(uint16_t, int32_t)
ALEXNET_EXT_LRN_POOL(uint16_t, int64_t)
#undef ALEXNET_EXT_LRN_POOL

}  // namespace alexnet_ext::cuda
