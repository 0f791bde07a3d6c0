// CUDA convolution, fp32: filterActs (forward), imgActs (gradient w.r.t. images), weightActs
// (gradient w.r.t. filters) and the bias gradient, with the semantics of csrc/cpu/conv.cpp (see
// csrc/conv.h): NCHW images and outputs, (F, C/groups, kh, kw) filters, groups, stride/padding
// pairs, ceil_mode (overhanging windows read zeros), the accumulate form
// out = st*out + so*result where st == 0 never reads out.
//
// Two versions, chosen process-wide by set_conv_kernel() (dispatch: the last section of this file).
//
// Version 1, reference: one thread per output element looping over its window (filterActs) or
// over the filter taps that reach it (imgActs); one block per filter weight reducing over batch
// and pixels (weightActs). All index arithmetic in int64. Obviously correct, slow; for validation
// and the fallback for geometries outside version 2's 32-bit tile indexing.
//
// Version 2, fast: every pass is an implicit GEMM on SIMT fp32 (FFMA), one mainloop for all:
//   block tile BM x BN (128x128 with 256 threads, or 64x128 with 128 threads), K-step BK = 8,
//   each thread accumulating an 8x8 register tile (two 4-wide halves in each dimension, BM/2 and
//   BN/2 apart, so that the fragment reads from shared memory are float4 and conflict-free);
//   both operand tiles stored k-major in shared memory (A as [k][m], B as [k][n]) with rows padded
//   by 4 floats, double-buffered: tile k+1 is copied global->shared with cp.async (sm_80+) while
//   tile k is multiplied, one __syncthreads per K-step. Edges are predicated (no size needs to be
//   a multiple of anything; predicated-off elements are zero-filled); out-of-range columns are
//   clamped to a valid one and never stored.
//
//   filterActs, per group g:  C[f, (n,oy,ox)] = sum_k A[f, k] B[k, (n,oy,ox)],  k = (c, i, j)
//     M = F/groups, N = batch*Ho*Wo, K = Cg*kh*kw. A is the filter block, packed once per call
//     into a zero-padded k-major copy [K rounded to 8][M rounded to BM] (a few hundred KB for
//     AlexNet: 16-byte copies with no predicates). B is the im2col matrix, never materialised:
//     each thread owns one column (n, oy, ox) for the whole block (base offset and window corner
//     computed once) and walks its rows through a per-k table {c*H*W + i*W + j, i, j} (built
//     once per call, read through L1 as a warp broadcast), so the inner loop has no divisions:
//     one add and two unsigned compares per element decide padding/overhang.
//   imgActs, gather form (no atomics, no col2im buffer): each input pixel sums over the taps that
//     reach it. With stride s an input row y only meets taps i = y+ph (mod s), so the input plane
//     splits into s_h*s_w phases (y mod s_h, x mod s_w); within a phase the taps are
//     i = i0 + s_h*ii and the hid_grads row is oy = y/s_h + q - ii: a stride-1 correlation with
//     no wasted multiply-by-zero taps (conv1's 11x11/4 would waste 92% of the work otherwise).
//     Per (group, phase):  C[c, (n,y,x)] = sum_k A[c, k] B[k, (n,y,x)],  k = (f, ii, jj),
//     M = C/groups, N = batch * pixels of the phase, K = F/groups * taps of the phase. A (the
//     transposed, phase-selected filter taps) is packed per call like filterActs' A; B gathers
//     hid_grads through a per-phase table {f*P - ii*Wo - jj, -ii, -jj}. The same kernel as
//     filterActs (template flag), so both share one tested mainloop; the phase is blockIdx.z.
//   weightActs: C[f, (c,i,j)] = sum_r A[f, r] B[r, (c,i,j)] over r = (n, oy, ox), M = F/groups,
//     N = Cg*kh*kw, reduction batch*Ho*Wo: long reduction, small output, so split-K across
//     blocks. Deterministic: each split writes its partial tile to a workspace and a second
//     kernel sums the splits in a fixed order (no float atomics). Each thread owns one reduction
//     row per K-step (two fast divisions by multiply-high per K-step give (n, oy, ox)) and several
//     columns, whose table entries sit in shared memory for the block's lifetime.
//   Epilogue (fused): bias (filterActs) and the accumulate form, applied once per output
//   element by the one thread that owns it; the place for a fused ReLU is marked there.
//
// Why NCHW + implicit GEMM: the layouts are the package's (NCHW everywhere, what the CPU path,
// the tests and DLPack consumers use), so a kernel that needs NHWC or an explicit im2col would
// pay a transform pass over the activations (conv1 fprop: an im2col matrix 7.3x the size of the
// images). The implicit GEMM reads each activation from DRAM about once (the gather re-reads hit
// L1/L2), keeps the filters in a packed copy that stays L2-resident, and its cost is dominated by
// FFMA issue: 8x8 per thread is 64 FFMA per 4 LDS.128 (16 FFMA per shared load), and a 128x128x8
// K-step moves 8 KB into shared memory for 262K FLOP (32 FLOP/B; 21 for 64x128), above the
// H100's balance points (~17 FLOP/B against DRAM, ~9 against L2).
// docs/CUDA_CONV.md has the per-layer napkin math and what the GPU session must verify.
//
// 64-bit safety: tensor offsets (column bases, output offsets, split-K partials) are int64; table
// offsets are int32 relative to a column base. Inside a tile, GEMM coordinates are int32; the
// dispatcher checks that every GEMM dimension, window coordinate and per-image-group slice stays
// below 2^30 (filter sides below 2^15) and otherwise uses the reference kernels.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "conv.h"
#include "cuda/common.cuh"
#include "cuda/memory.h"

namespace alexnet_ext::cuda {
namespace {

__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int64_t lmin(int64_t a, int64_t b) { return a < b ? a : b; }

// The accumulate form for one element; never reads *t when st == 0 (it may hold NaNs).
__device__ __forceinline__ void store_scaled(float* t, float v, float st) {
  *t = st == 0.f ? v : fmaf(st, *t, v);
}

// Geometry as the kernels see it: plain int64 fields (ConvGeometry's helpers are host-only).
struct Geo {
  int64_t n, c, h, w, f, kh, kw, sh, sw, ph, pw, groups, ho, wo, cg, fg;
};

Geo geo_of(const ConvGeometry& g) {
  return {g.n, g.c, g.h, g.w, g.f, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.groups, g.ho, g.wo,
          g.cg(), g.fg()};
}

// ================================================================ shared pieces
constexpr int kRedThreads = 256;  // block size of the reduction kernels (a power of two)

// Sum of v over the block (blockDim.x == T), deterministic: a fixed tree in shared memory.
// Every thread of the block must call it; all get the total.
template <int T>
__device__ float block_sum(float v, float* red) {
  red[threadIdx.x] = v;
  __syncthreads();
#pragma unroll 1
  for (int s = T / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  const float total = red[0];
  __syncthreads();  // red may be written again by the caller's next call
  return total;
}

// out[i] = st*out[i] + so * sum_s parts[s*total + i], the splits summed in order s = 0, 1, ...
__global__ void __launch_bounds__(256) reduce_splits(const float* __restrict__ parts,
                                                     float* __restrict__ out, int64_t total,
                                                     int splits, float st, float so) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float sum = 0.f;
    for (int s = 0; s < splits; ++s) sum += parts[s * total + i];
    store_scaled(out + i, so * sum, st);
  }
}

// Bias gradient: block (f, s) sums hid_grads[n, f, :] over images n in [s*n_per, (s+1)*n_per);
// warp w takes images w, w+8, ..., its lanes walk the contiguous pixel row. With final != 0
// (one split) it writes out[f] in the accumulate form, else the raw partial part[s*F + f].
__global__ void __launch_bounds__(kRedThreads) bias_grad_kernel(
    const float* __restrict__ hid, float* __restrict__ dst, int64_t n, int64_t f, int64_t pixels,
    int64_t n_per, float st, float so, int final_write) {
  __shared__ float red[kRedThreads];
  const int64_t fi = blockIdx.x, s = blockIdx.y;
  const int64_t n_begin = s * n_per, n_end = lmin(n, n_begin + n_per);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float acc = 0.f;
  for (int64_t img = n_begin + warp; img < n_end; img += kRedThreads / 32) {
    const float* row = hid + (img * f + fi) * pixels;
    for (int64_t p = lane; p < pixels; p += 32) acc += row[p];
  }
  const float sum = block_sum<kRedThreads>(acc, red);
  if (threadIdx.x == 0) {
    if (final_write)
      store_scaled(dst + fi, so * sum, st);
    else
      dst[s * f + fi] = sum;
  }
}

// ================================================================ version 1: reference kernels
__global__ void __launch_bounds__(256) filter_acts_ref(const float* __restrict__ images,
                                                       const float* __restrict__ filters,
                                                       const float* __restrict__ bias,
                                                       float* __restrict__ out, Geo g, float st,
                                                       float so) {
  const int64_t total = g.n * g.f * g.ho * g.wo;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ox = idx % g.wo;
    int64_t t = idx / g.wo;
    const int64_t oy = t % g.ho;
    t /= g.ho;
    const int64_t f = t % g.f;
    const int64_t n = t / g.f;
    const int64_t grp = f / g.fg;
    const float* img = images + (n * g.c + grp * g.cg) * g.h * g.w;
    const float* wf = filters + f * g.cg * g.kh * g.kw;
    float acc = 0.f;
    for (int64_t c = 0; c < g.cg; ++c) {
      for (int64_t i = 0; i < g.kh; ++i) {
        const int64_t iy = oy * g.sh - g.ph + i;
        if (iy < 0 || iy >= g.h) continue;
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t ix = ox * g.sw - g.pw + j;
          if (ix < 0 || ix >= g.w) continue;
          acc = fmaf(img[(c * g.h + iy) * g.w + ix], wf[(c * g.kh + i) * g.kw + j], acc);
        }
      }
    }
    store_scaled(out + idx, so * (acc + (bias ? bias[f] : 0.f)), st);
  }
}

__global__ void __launch_bounds__(256) img_acts_ref(const float* __restrict__ hid,
                                                    const float* __restrict__ filters,
                                                    float* __restrict__ out, Geo g, float st,
                                                    float so) {
  const int64_t total = g.n * g.c * g.h * g.w;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t x = idx % g.w;
    int64_t t = idx / g.w;
    const int64_t y = t % g.h;
    t /= g.h;
    const int64_t c = t % g.c;
    const int64_t n = t / g.c;
    const int64_t grp = c / g.cg, cc = c - grp * g.cg;
    float acc = 0.f;
    for (int64_t fl = 0; fl < g.fg; ++fl) {
      const int64_t f = grp * g.fg + fl;
      const float* hf = hid + (n * g.f + f) * g.ho * g.wo;
      const float* wf = filters + (f * g.cg + cc) * g.kh * g.kw;
      for (int64_t i = 0; i < g.kh; ++i) {
        const int64_t ty = y + g.ph - i;  // = oy * sh for the output row that reads y via tap i
        if (ty < 0 || ty % g.sh != 0 || ty / g.sh >= g.ho) continue;
        const int64_t oy = ty / g.sh;
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t tx = x + g.pw - j;
          if (tx < 0 || tx % g.sw != 0 || tx / g.sw >= g.wo) continue;
          acc = fmaf(hf[oy * g.wo + tx / g.sw], wf[i * g.kw + j], acc);
        }
      }
    }
    store_scaled(out + idx, so * acc, st);
  }
}

// One block per filter weight (grid-stride over weights); the threads split the batch*pixels sum.
__global__ void __launch_bounds__(kRedThreads) weight_acts_ref(const float* __restrict__ images,
                                                               const float* __restrict__ hid,
                                                               float* __restrict__ out, Geo g,
                                                               float st, float so) {
  __shared__ float red[kRedThreads];
  const int64_t taps = g.kh * g.kw, k = g.cg * taps, total = g.f * k, pix = g.ho * g.wo;
  const int64_t rows = g.n * pix;
  for (int64_t idx = blockIdx.x; idx < total; idx += gridDim.x) {  // uniform across the block
    const int64_t f = idx / k;
    int64_t rem = idx - f * k;
    const int64_t c = rem / taps;
    rem -= c * taps;
    const int64_t i = rem / g.kw, j = rem - i * g.kw;
    const int64_t grp = f / g.fg;
    float acc = 0.f;
    for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
      const int64_t n = r / pix, p = r - n * pix;
      const int64_t oy = p / g.wo, ox = p - oy * g.wo;
      const int64_t iy = oy * g.sh - g.ph + i, ix = ox * g.sw - g.pw + j;
      if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
      acc = fmaf(hid[(n * g.f + f) * pix + p],
                 images[((n * g.c + grp * g.cg + c) * g.h + iy) * g.w + ix], acc);
    }
    const float sum = block_sum<kRedThreads>(acc, red);
    if (threadIdx.x == 0) store_scaled(out + idx, so * sum, st);
  }
}

// ================================================================ version 2: implicit GEMM
constexpr int kBK = 8;   // K-step
constexpr int kPad = 4;  // floats of padding per shared-memory row (keeps float4 alignment)

// n / d and n % d for n < 2^31 by multiply-high (Granlund-Montgomery, round-up variant):
// shift = ceil(log2 d), mul = floor(2^32 * (2^shift - d) / d) + 1, q = (umulhi(n, mul) + n) >> shift.
struct FastDivmod {
  uint32_t d, mul, shift;
};

FastDivmod make_fast_divmod(uint32_t d) {
  uint32_t l = 0;
  while ((uint64_t(1) << l) < d) ++l;
  const uint64_t m = ((uint64_t(1) << 32) * ((uint64_t(1) << l) - d)) / d + 1;
  return {d, static_cast<uint32_t>(m), l};
}

__device__ __forceinline__ void fast_divmod(const FastDivmod& fd, uint32_t n, uint32_t& q,
                                            uint32_t& r) {
  q = (__umulhi(n, fd.mul) + n) >> fd.shift;
  r = n - q * fd.d;
}

// Shared-memory tile loads. On sm_80+ they are cp.async copies: issued before the current tile
// is multiplied, they need no staging registers and the compiler cannot sink them below the
// FFMAs (it did so with register-staged loads, serialising load latency and compute). The
// 4-byte form zero-fills when `pred` is false (src_size 0, and a valid address is passed).
// Before sm_80, and in tools/cuda_emu, they are plain synchronous copies.
__device__ __forceinline__ void tile_copy_f32(float* smem, const float* gmem, bool pred) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(gmem),
               "r"(pred ? 4 : 0)
               : "memory");
#else
  *smem = pred ? __ldg(gmem) : 0.f;
#endif
}

// 16 bytes, both addresses 16-byte aligned; global side cached in L2 only.
__device__ __forceinline__ void tile_copy_f32x4(float* smem, const float* gmem) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(gmem) : "memory");
#else
  *reinterpret_cast<float4*>(smem) = __ldg(reinterpret_cast<const float4*>(gmem));
#endif
}

__device__ __forceinline__ void tile_copy_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

// Waits for this thread's copies; a __syncthreads() after it publishes them to the block.
__device__ __forceinline__ void tile_copy_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
#endif
}

// Gather-table entry (int2): x = element offset from the column's window corner, y = the two
// window-coordinate offsets (di, dj) as int16 halves. The dispatcher keeps offsets below 2^31
// and filter sizes below 2^15; the column base itself is int64.
__device__ __forceinline__ int table_di(const int2& e) { return static_cast<short>(e.y & 0xffff); }
__device__ __forceinline__ int table_dj(const int2& e) { return e.y >> 16; }  // arithmetic shift

__device__ __forceinline__ int2 table_entry(int64_t delta, int di, int dj) {
  const uint32_t packed = (static_cast<uint32_t>(dj) << 16) | (static_cast<uint32_t>(di) & 0xffffu);
  return make_int2(static_cast<int>(delta), static_cast<int>(packed));
}

// Row (or column) of the thread's i-th accumulator: two groups of four, `half` apart.
template <int HALF>
__device__ __forceinline__ int frag_index(int t, int i) {
  return (i < 4 ? 0 : HALF) + t * 4 + (i & 3);
}

// acc[i][j] += sum_k as[k][row i] * bs[k][col j] over one K-step.
template <int BM, int BN>
__device__ __forceinline__ void tile_mma(const float (*as)[BM + kPad], const float (*bs)[BN + kPad],
                                         float (&acc)[8][8], int ty, int tx) {
#pragma unroll
  for (int k = 0; k < kBK; ++k) {
    const float4 a0 = *reinterpret_cast<const float4*>(&as[k][ty * 4]);
    const float4 a1 = *reinterpret_cast<const float4*>(&as[k][BM / 2 + ty * 4]);
    const float4 b0 = *reinterpret_cast<const float4*>(&bs[k][tx * 4]);
    const float4 b1 = *reinterpret_cast<const float4*>(&bs[k][BN / 2 + tx * 4]);
    const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
    const float b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
  }
}

// filterActs' only epilogue transform today. A fused ReLU (cuda-convnet applies the neuron after
// the conv) goes here, behind a template flag of conv_gather_gemm, after the accumulate form.
__device__ __forceinline__ float fprop_activation(float v) { return v; }

// ---------------------------------------------------------------- filterActs / imgActs kernel
struct GatherParams {
  const float* a;      // packed A: [groups][pi][pj][kp][mp], zero outside the real (k, m)
  const int2* table;   // gather tables: [pi][pj][kp]
  const float* src;    // gathered tensor: images (filterActs) or hid_grads (imgActs)
  const float* bias;   // filterActs: (F,) or null
  float* out;
  float st, so;
  int kp, mp;          // packed A: rows per slot (a multiple of kBK), row length (of BM)
  int m;               // GEMM rows per group: F/groups (filterActs) or C/groups (imgActs)
  int fg;              // filters per group
  int k;               // filterActs: Cg*kh*kw
  int n, h, w, ho, wo, kh, kw, sh, sw, ph, pw;
  int pi, pj;          // imgActs: tap phases with taps, min(sh,kh) x min(sw,kw); filterActs 1 x 1
  int phases;          // blockIdx.z = group * phases + phase; imgActs sh*sw, filterActs 1
  int64_t src_nstride, src_gstride;  // gathered tensor: elements per image, per group
  int64_t out_nstride, out_plane;    // output: elements per image, per channel plane
  int out_gplanes;                   // output planes per group
};

// What one (group, phase) slot of the grid computes.
struct Slot {
  const float* a;
  const int2* table;
  int k;                          // reduction length (0: a phase no tap reaches)
  int yn, xn;                     // columns are (image, y, x) over n x yn x xn
  int ay, by, ax, bx;             // gathered window corner of column (y, x): (y*ay+by, x*ax+bx)
  int hb, wb, rowlen;             // gathered plane: bounds and row length
  int oys, oyb, orow, oxs, oxb;   // output pixel: (y*oys + oyb) * orow + x*oxs + oxb
};

template <bool DGRAD>
__device__ __forceinline__ Slot make_slot(const GatherParams& p, int grp, int phase) {
  Slot s;
  if (!DGRAD) {
    s.a = p.a + static_cast<int64_t>(grp) * p.kp * p.mp;
    s.table = p.table;
    s.k = p.k;
    s.yn = p.ho;
    s.xn = p.wo;
    s.ay = p.sh;
    s.by = -p.ph;
    s.ax = p.sw;
    s.bx = -p.pw;
    s.hb = p.h;
    s.wb = p.w;
    s.rowlen = p.w;
    s.oys = 1;
    s.oyb = 0;
    s.orow = p.wo;
    s.oxs = 1;
    s.oxb = 0;
  } else {
    // Input pixels y = ry + sh*yy meet the taps i = i0 + sh*ii, i0 = (ry+ph) mod sh, through the
    // output row oy = (y + ph - i)/sh = yy + (ry+ph)/sh - ii.
    const int ry = phase / p.sw, rx = phase - ry * p.sw;
    const int i0 = (ry + p.ph) % p.sh, j0 = (rx + p.pw) % p.sw;
    const bool taps = i0 < p.kh && j0 < p.kw;
    const int nti = taps ? (p.kh - 1 - i0) / p.sh + 1 : 0;
    const int ntj = taps ? (p.kw - 1 - j0) / p.sw + 1 : 0;
    const int pslot = taps ? i0 * p.pj + j0 : 0;  // i0 < min(sh, kh) = pi, j0 < pj
    s.k = p.fg * nti * ntj;
    s.a = p.a + (static_cast<int64_t>(grp) * p.pi * p.pj + pslot) * p.kp * p.mp;
    s.table = p.table + static_cast<int64_t>(pslot) * p.kp;
    s.yn = ry < p.h ? (p.h - 1 - ry) / p.sh + 1 : 0;
    s.xn = rx < p.w ? (p.w - 1 - rx) / p.sw + 1 : 0;
    s.ay = 1;
    s.by = (ry + p.ph) / p.sh;
    s.ax = 1;
    s.bx = (rx + p.pw) / p.sw;
    s.hb = p.ho;
    s.wb = p.wo;
    s.rowlen = p.wo;
    s.oys = p.sh;
    s.oyb = ry;
    s.orow = p.w;
    s.oxs = p.sw;
    s.oxb = rx;
  }
  return s;
}

template <int BM, int BN, bool DGRAD>
__global__ void __launch_bounds__(BM * BN / 64, 512 / (BM * BN / 64))
    conv_gather_gemm(const GatherParams p) {
  constexpr int THREADS = BM * BN / 64;
  constexpr int LDA = BM + kPad, LDB = BN + kPad;
  // A loader: float4s along m, A_TPR threads per k-row.
  constexpr int A_TPR = BM / 4, A_RPP = THREADS / A_TPR, A_PER = kBK / A_RPP;
  // B loader: one column per thread, B_PER of the kBK rows.
  constexpr int B_RPP = THREADS / BN, B_PER = kBK / B_RPP;
  static_assert(THREADS % 32 == 0 && BN % 32 == 0 && BM % 32 == 0, "tile shape");
  static_assert(A_RPP * A_PER == kBK && B_RPP * B_PER == kBK, "loader shape");
  __shared__ __align__(16) float as[2][kBK][LDA];
  __shared__ __align__(16) float bs[2][kBK][LDB];

  const int tid = threadIdx.x;
  const int grp = blockIdx.z / p.phases, phase = blockIdx.z - grp * p.phases;
  const Slot s = make_slot<DGRAD>(p, grp, phase);
  const int ncols = p.n * s.yn * s.xn;
  const int n0 = blockIdx.x * BN;
  if (n0 >= ncols) return;  // block-uniform: this phase has fewer columns than the grid
  const int m0 = blockIdx.y * BM;
  const float* __restrict__ src = p.src + grp * p.src_gstride;

  int64_t colbase;  // gathered tensor offset of this thread's column's window corner
  int cy, cx;       // the window corner (may lie in the padding)
  const int b_col = tid % BN, b_row = tid / BN;
  {
    const int col = imin(n0 + b_col, ncols - 1);  // past the end: a valid column, never stored
    const int yx = s.yn * s.xn;
    const int img = col / yx, rem = col - img * yx;
    const int y = rem / s.xn, x = rem - y * s.xn;
    cy = y * s.ay + s.by;
    cx = x * s.ax + s.bx;
    colbase = img * p.src_nstride + static_cast<int64_t>(cy) * s.rowlen + cx;
  }
  const int a_col = (tid % A_TPR) * 4, a_row = tid / A_TPR;
  const float* __restrict__ a_base = s.a + m0 + a_col;

  // Queues the copies of K-step kt into buffer buf.
  auto issue = [&](int kt, int buf) {
#pragma unroll
    for (int q = 0; q < A_PER; ++q)
      tile_copy_f32x4(&as[buf][a_row + q * A_RPP][a_col],
                      a_base + static_cast<int64_t>(kt * kBK + a_row + q * A_RPP) * p.mp);
    int2 e[B_PER];
#pragma unroll
    for (int q = 0; q < B_PER; ++q)  // all table reads first: one L1 round trip, not B_PER
      e[q] = __ldg(s.table + kt * kBK + b_row + q * B_RPP);  // < kp: the table has kp entries
#pragma unroll
    for (int q = 0; q < B_PER; ++q) {
      const int k = kt * kBK + b_row + q * B_RPP;
      const int yy = cy + table_di(e[q]), xx = cx + table_dj(e[q]);
      const bool ok = k < s.k && static_cast<unsigned>(yy) < static_cast<unsigned>(s.hb) &&
                      static_cast<unsigned>(xx) < static_cast<unsigned>(s.wb);
      tile_copy_f32(&bs[buf][b_row + q * B_RPP][b_col], src + (ok ? colbase + e[q].x : 0), ok);
    }
    tile_copy_commit();
  };

  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;
  const int tx = tid % (BN / 8), ty = tid / (BN / 8);
  const int ktiles = (s.k + kBK - 1) / kBK;
  if (ktiles > 0) {  // block-uniform
    issue(0, 0);
    tile_copy_wait();
    __syncthreads();
#pragma unroll 1
    for (int kt = 0; kt < ktiles; ++kt) {
      const int cur = kt & 1;
      // Buffer cur^1 was last read in step kt-1, which every thread finished before the barrier
      // that ended it; its copies land while tile cur is multiplied.
      if (kt + 1 < ktiles) issue(kt + 1, cur ^ 1);
      tile_mma<BM, BN>(as[cur], bs[cur], acc, ty, tx);
      tile_copy_wait();
      __syncthreads();
    }
  }

  // Epilogue: each output element has exactly one owner (columns partition the phase's pixels,
  // rows the group's channels), so the read-modify-write of the accumulate form is race-free.
  // The slot is derived again from the kernel parameters rather than kept live in registers
  // across the mainloop.
  const Slot es = make_slot<DGRAD>(p, grp, phase);
  int64_t coff[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int col = n0 + frag_index<BN / 2>(tx, j);
    coff[j] = -1;
    if (col < ncols) {
      const int yx = es.yn * es.xn;
      const int img = col / yx, rem = col - img * yx;
      const int y = rem / es.xn, x = rem - y * es.xn;
      coff[j] = img * p.out_nstride + static_cast<int64_t>(y * es.oys + es.oyb) * es.orow +
                (x * es.oxs + es.oxb);
    }
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int m = m0 + frag_index<BM / 2>(ty, i);
    if (m >= p.m) continue;
    const int64_t roff = static_cast<int64_t>(grp * p.out_gplanes + m) * p.out_plane;
    const float b = (!DGRAD && p.bias) ? p.bias[grp * p.m + m] : 0.f;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      if (coff[j] < 0) continue;
      float* o = p.out + roff + coff[j];
      const float v = p.so * (acc[i][j] + b);
      if (DGRAD)
        store_scaled(o, v, p.st);
      else
        *o = fprop_activation(p.st == 0.f ? v : fmaf(p.st, *o, v));
    }
  }
}

// filterActs' A: a[g][k][m] = filters[g*fg + m][k] (k = (c, i, j)), zero-padded to kp x mp.
__global__ void __launch_bounds__(256) pack_fprop(const float* __restrict__ filters,
                                                  float* __restrict__ a, int groups, int fg, int k,
                                                  int kp, int mp) {
  const int64_t total = static_cast<int64_t>(groups) * kp * mp;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int m = static_cast<int>(idx % mp);
    const int64_t t = idx / mp;
    const int kk = static_cast<int>(t % kp);
    const int64_t g = t / kp;
    a[idx] = (kk < k && m < fg) ? filters[(g * fg + m) * k + kk] : 0.f;
  }
}

// The im2col table of filterActs (rows k) and weightActs (columns k): for k = (c, i, j) the
// image offset c*H*W + i*W + j and the window offsets (i, j). Entries k >= K are zero.
__global__ void __launch_bounds__(256) table_im2col(int2* __restrict__ table, int k, int kp,
                                                    int kh, int kw, int64_t plane, int w) {
  for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < kp; idx += gridDim.x * blockDim.x) {
    int2 e = make_int2(0, 0);
    if (idx < k) {
      const int c = idx / (kh * kw), rem = idx - c * (kh * kw);
      const int i = rem / kw, j = rem - i * kw;
      e = table_entry(c * plane + static_cast<int64_t>(i) * w + j, i, j);
    }
    table[idx] = e;
  }
}

// imgActs' A for tap phase (i0, j0) of group g: a[g][i0][j0][k][m=c] with k = (f, ii, jj) holds
// filters[g*fg + f][c][i0 + sh*ii][j0 + sw*jj]; zero past the phase's taps and past Cg.
__global__ void __launch_bounds__(256) pack_dgrad(const float* __restrict__ filters,
                                                  float* __restrict__ a, int groups, int pi,
                                                  int pj, int fg, int cg, int kh, int kw, int sh,
                                                  int sw, int kp, int mp) {
  const int64_t total = static_cast<int64_t>(groups) * pi * pj * kp * mp;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int m = static_cast<int>(idx % mp);
    int64_t t = idx / mp;
    const int kk = static_cast<int>(t % kp);
    t /= kp;
    const int j0 = static_cast<int>(t % pj);
    t /= pj;
    const int i0 = static_cast<int>(t % pi);
    const int64_t g = t / pi;
    const int nti = (kh - 1 - i0) / sh + 1, ntj = (kw - 1 - j0) / sw + 1;  // i0 < kh, j0 < kw
    const int taps = nti * ntj;
    float v = 0.f;
    if (kk < fg * taps && m < cg) {
      const int f = kk / taps, rem = kk - f * taps;
      const int ii = rem / ntj, jj = rem - ii * ntj;
      v = filters[(((g * fg + f) * cg + m) * kh + i0 + sh * ii) * kw + j0 + sw * jj];
    }
    a[idx] = v;
  }
}

// imgActs' gather tables, one per tap phase (i0, j0): k = (f, ii, jj) reads hid_grads at
// f*P - ii*Wo - jj from the column's corner, i.e. output pixel (oy - ii, ox - jj).
__global__ void __launch_bounds__(256) table_dgrad(int2* __restrict__ table, int pi, int pj,
                                                   int fg, int kh, int kw, int sh, int sw, int kp,
                                                   int64_t pix, int wo) {
  const int64_t total = static_cast<int64_t>(pi) * pj * kp;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int kk = static_cast<int>(idx % kp), t = static_cast<int>(idx / kp);
    const int j0 = t % pj, i0 = t / pj;
    const int nti = (kh - 1 - i0) / sh + 1, ntj = (kw - 1 - j0) / sw + 1;
    const int taps = nti * ntj;
    int2 e = make_int2(0, 0);
    if (kk < fg * taps) {
      const int f = kk / taps, rem = kk - f * taps;
      const int ii = rem / ntj, jj = rem - ii * ntj;
      e = table_entry(f * pix - static_cast<int64_t>(ii) * wo - jj, -ii, -jj);
    }
    table[idx] = e;
  }
}

// ---------------------------------------------------------------- weightActs kernel
struct WgradParams {
  const float* images;
  const float* hid;
  const int2* table;  // table_im2col, kp >= k entries
  float* out;         // (F, Cg, kh, kw), written when splits == 1
  float* ws;          // [splits][F][Cg*kh*kw] partial sums when splits > 1
  float st, so;
  int f, fg, h, w, sh, sw, ph, pw;
  int k;      // GEMM columns: Cg*kh*kw
  int r;      // reduction length: N*Ho*Wo
  int pix;    // Ho*Wo
  int groups, splits, kps;  // kps: K-steps per split
  FastDivmod div_pix, div_wo;
  int64_t img_nstride, img_gstride, hid_nstride;
};

template <int BM, int BN>
__global__ void __launch_bounds__(BM * BN / 64, 512 / (BM * BN / 64))
    conv_wgrad_gemm(const WgradParams p) {
  constexpr int THREADS = BM * BN / 64;
  constexpr int LDA = BM + kPad, LDB = BN + kPad;
  constexpr int RSTEP = THREADS / kBK;  // threads per reduction row
  constexpr int A_PER = BM / RSTEP, B_PER = BN / RSTEP;
  static_assert(THREADS % 32 == 0 && BM % RSTEP == 0 && BN % RSTEP == 0, "tile shape");
  __shared__ __align__(16) float as[2][kBK][LDA];
  __shared__ __align__(16) float bs[2][kBK][LDB];
  __shared__ __align__(8) int2 cols[BN];  // table entries of the block's columns

  const int tid = threadIdx.x;
  const int grp = blockIdx.z % p.groups, split = blockIdx.z / p.groups;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;
  const int ktiles = (p.r + kBK - 1) / kBK;
  const int kt_begin = split * p.kps, kt_end = imin(ktiles, kt_begin + p.kps);

  for (int c = tid; c < BN; c += THREADS)
    cols[c] = __ldg(p.table + imin(n0 + c, p.k - 1));  // past the end: a valid column, not stored
  __syncthreads();

  const int row = tid % kBK, lane_mn = tid / kBK;  // this thread's reduction row and first m/n
  const float* __restrict__ hid = p.hid + static_cast<int64_t>(grp) * p.fg * p.pix;
  const float* __restrict__ img = p.images + grp * p.img_gstride;

  // Queues the copies of K-step kt into buffer buf.
  auto issue = [&](int kt, int buf) {
    const int r = kt * kBK + row;  // < 2^30 + kBK: fast_divmod's range
    const bool rok = r < p.r;
    uint32_t nimg, pix, oy, ox;
    fast_divmod(p.div_pix, static_cast<uint32_t>(r), nimg, pix);
    fast_divmod(p.div_wo, pix, oy, ox);
    const int64_t hbase = static_cast<int64_t>(nimg) * p.hid_nstride + pix;
#pragma unroll
    for (int q = 0; q < A_PER; ++q) {
      const int m = m0 + lane_mn + q * RSTEP;
      const bool ok = rok && m < p.fg;
      tile_copy_f32(&as[buf][row][lane_mn + q * RSTEP],
                    hid + (ok ? hbase + static_cast<int64_t>(m) * p.pix : 0), ok);
    }
    const int cy = static_cast<int>(oy) * p.sh - p.ph, cx = static_cast<int>(ox) * p.sw - p.pw;
    const int64_t ibase =
        static_cast<int64_t>(nimg) * p.img_nstride + static_cast<int64_t>(cy) * p.w + cx;
#pragma unroll
    for (int q = 0; q < B_PER; ++q) {
      const int2 e = cols[lane_mn + q * RSTEP];
      const int yy = cy + table_di(e), xx = cx + table_dj(e);
      const bool ok = rok && static_cast<unsigned>(yy) < static_cast<unsigned>(p.h) &&
                      static_cast<unsigned>(xx) < static_cast<unsigned>(p.w);
      tile_copy_f32(&bs[buf][row][lane_mn + q * RSTEP], img + (ok ? ibase + e.x : 0), ok);
    }
    tile_copy_commit();
  };

  float acc[8][8];
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;
  const int tx = tid % (BN / 8), ty = tid / (BN / 8);
  if (kt_begin < kt_end) {  // block-uniform
    issue(kt_begin, 0);
    tile_copy_wait();
    __syncthreads();
#pragma unroll 1
    for (int kt = kt_begin; kt < kt_end; ++kt) {
      const int cur = (kt - kt_begin) & 1;
      if (kt + 1 < kt_end) issue(kt + 1, cur ^ 1);  // as in conv_gather_gemm
      tile_mma<BM, BN>(as[cur], bs[cur], acc, ty, tx);
      tile_copy_wait();
      __syncthreads();
    }
  }

#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int m = m0 + frag_index<BM / 2>(ty, i);
    if (m >= p.fg) continue;
    const int64_t orow = static_cast<int64_t>(grp * p.fg + m) * p.k;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int n = n0 + frag_index<BN / 2>(tx, j);
      if (n >= p.k) continue;
      if (p.splits == 1)
        store_scaled(p.out + orow + n, p.so * acc[i][j], p.st);
      else
        p.ws[static_cast<int64_t>(split) * p.f * p.k + orow + n] = acc[i][j];
    }
  }
}

// ================================================================ host side
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// Workspace from the caching allocator on the op's stream: freeing it right after the launches
// is safe because a block is only handed out again for work queued later on the same stream.
class Workspace {
 public:
  Workspace(size_t bytes, cudaStream_t stream) {
    if (bytes == 0) return;
    int dev = 0;
    check(cudaGetDevice(&dev), "cudaGetDevice");
    ptr_ = device_alloc(bytes, dev, stream);
  }
  ~Workspace() { device_free(ptr_); }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  template <class T>
  T* get() const { return static_cast<T*>(ptr_); }

 private:
  void* ptr_ = nullptr;
};

int sm_count() {
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  static std::atomic<int> cache[64];  // zero (unknown) until first asked
  if (dev >= 0 && dev < 64) {
    const int v = cache[dev].load(std::memory_order_relaxed);
    if (v > 0) return v;
  }
  int sms = 0;
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev),
        "cudaDeviceGetAttribute");
  sms = std::max(sms, 1);
  if (dev >= 0 && dev < 64) cache[dev].store(sms, std::memory_order_relaxed);
  return sms;
}

unsigned grid_for(int64_t work, int threads) { return blocks_for(work, threads, 65535LL * 16); }

// ---- fast-path eligibility: tile coordinates are int32 with headroom
constexpr int64_t kLim = int64_t(1) << 30;

bool small_enough(const Geo& g) {
  for (int64_t v : {g.n, g.c, g.h, g.w, g.f, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.ho, g.wo})
    if (v >= kLim) return false;
  // Gather-table offsets are int32 and window offsets int16 (table_entry).
  if (g.kh >= 32768 || g.kw >= 32768 || g.cg * g.h * g.w >= kLim || g.fg * g.ho * g.wo >= kLim ||
      g.kh * (g.w + g.wo) >= kLim)
    return false;
  return g.h + 2 * g.ph + g.kh < kLim && g.w + 2 * g.pw + g.kw < kLim &&
         (g.ho + 1) * g.sh + g.ph + g.kh < kLim && (g.wo + 1) * g.sw + g.pw + g.kw < kLim &&
         g.groups <= 65535 && ceil_div(g.f, 64) <= 65535 && ceil_div(g.c, 64) <= 65535;
}

bool fprop_fast_ok(const Geo& g) {
  return small_enough(g) && g.n * g.ho * g.wo < kLim && g.cg * g.kh * g.kw < kLim;
}

bool dgrad_fast_ok(const Geo& g) {
  return small_enough(g) && g.n * ceil_div(g.h, g.sh) * ceil_div(g.w, g.sw) < kLim &&
         g.fg * ceil_div(g.kh, g.sh) * ceil_div(g.kw, g.sw) < kLim &&
         g.groups * g.sh * g.sw <= 65535;
}

bool wgrad_fast_ok(const Geo& g) {
  return small_enough(g) && g.n * g.ho * g.wo < kLim && g.cg * g.kh * g.kw < kLim;
}

// ---- tile choice: 128x128 (256 threads, 2 blocks/SM) or 64x128 (128 threads, 4 blocks/SM).
// Both keep 16 warps on an SM; a wave takes time proportional to blocks/SM * BM (BN and K are
// common), and 64-row tiles do ~12% more load/store work per FLOP. Cost = waves * that.
// A heuristic to tune on the GPU (docs/CUDA_CONV.md).
bool use_bm128(int64_t m, int64_t cols, int64_t slots) {
  const int64_t sms = sm_count();
  auto cost = [&](int64_t bm, int64_t per_sm, double eff) {
    const int64_t blocks = ceil_div(m, bm) * ceil_div(cols, 128) * slots;
    return static_cast<double>(ceil_div(blocks, sms * per_sm)) * per_sm * bm * eff;
  };
  return cost(128, 2, 1.0) <= cost(64, 4, 1.12);
}

GatherParams gather_common(const Geo& g, float* out, float st, float so) {
  GatherParams p{};
  p.out = out;
  p.st = st;
  p.so = so;
  p.fg = static_cast<int>(g.fg);
  p.n = static_cast<int>(g.n);
  p.h = static_cast<int>(g.h);
  p.w = static_cast<int>(g.w);
  p.ho = static_cast<int>(g.ho);
  p.wo = static_cast<int>(g.wo);
  p.kh = static_cast<int>(g.kh);
  p.kw = static_cast<int>(g.kw);
  p.sh = static_cast<int>(g.sh);
  p.sw = static_cast<int>(g.sw);
  p.ph = static_cast<int>(g.ph);
  p.pw = static_cast<int>(g.pw);
  return p;
}

template <bool DGRAD>
void launch_gather(bool bm128, dim3 grid, cudaStream_t stream, const GatherParams& p,
                   const char* op) {
  if (bm128)
    launch(conv_gather_gemm<128, 128, DGRAD>, grid, dim3(256), stream, p);
  else
    launch(conv_gather_gemm<64, 128, DGRAD>, grid, dim3(128), stream, p);
  check_launch(op);
}

void filter_acts_fast(const float* images, const float* filters, const float* bias, float* out,
                      const Geo& g, float st, float so, cudaStream_t stream) {
  const int64_t k = g.cg * g.kh * g.kw, cols = g.n * g.ho * g.wo;
  const bool bm128 = use_bm128(g.fg, cols, g.groups);
  const int64_t bm = bm128 ? 128 : 64;
  const int64_t kp = round_up(k, kBK), mp = round_up(g.fg, bm);
  Workspace packed(static_cast<size_t>(g.groups * kp * mp) * sizeof(float), stream);
  Workspace table(static_cast<size_t>(kp) * sizeof(int2), stream);
  launch(pack_fprop, dim3(grid_for(g.groups * kp * mp, 256)), dim3(256), stream, filters,
         packed.get<float>(), static_cast<int>(g.groups), static_cast<int>(g.fg),
         static_cast<int>(k), static_cast<int>(kp), static_cast<int>(mp));
  check_launch("filter_acts (pack filters)");
  launch(table_im2col, dim3(grid_for(kp, 256)), dim3(256), stream, table.get<int2>(),
         static_cast<int>(k), static_cast<int>(kp), static_cast<int>(g.kh),
         static_cast<int>(g.kw), g.h * g.w, static_cast<int>(g.w));
  check_launch("filter_acts (gather table)");

  GatherParams p = gather_common(g, out, st, so);
  p.a = packed.get<float>();
  p.table = table.get<int2>();
  p.src = images;
  p.bias = bias;
  p.kp = static_cast<int>(kp);
  p.mp = static_cast<int>(mp);
  p.m = static_cast<int>(g.fg);
  p.k = static_cast<int>(k);
  p.pi = p.pj = 1;
  p.phases = 1;
  p.src_nstride = g.c * g.h * g.w;
  p.src_gstride = g.cg * g.h * g.w;
  p.out_nstride = g.f * g.ho * g.wo;
  p.out_plane = g.ho * g.wo;
  p.out_gplanes = static_cast<int>(g.fg);
  const dim3 grid(static_cast<unsigned>(ceil_div(cols, 128)), static_cast<unsigned>(ceil_div(g.fg, bm)),
                  static_cast<unsigned>(g.groups));
  launch_gather<false>(bm128, grid, stream, p, "filter_acts");
}

void img_acts_fast(const float* hid, const float* filters, float* out, const Geo& g, float st,
                   float so, cudaStream_t stream) {
  const int64_t pi = std::min(g.sh, g.kh), pj = std::min(g.sw, g.kw);
  const int64_t kmax = g.fg * ceil_div(g.kh, g.sh) * ceil_div(g.kw, g.sw);
  const int64_t cols = g.n * ceil_div(g.h, g.sh) * ceil_div(g.w, g.sw);  // the largest phase
  const int64_t phases = g.sh * g.sw;
  const bool bm128 = use_bm128(g.cg, cols, g.groups * pi * pj);  // phases that have taps
  const int64_t bm = bm128 ? 128 : 64;
  const int64_t kp = round_up(kmax, kBK), mp = round_up(g.cg, bm);
  const int64_t packed_elems = g.groups * pi * pj * kp * mp;
  Workspace packed(static_cast<size_t>(packed_elems) * sizeof(float), stream);
  Workspace table(static_cast<size_t>(pi * pj * kp) * sizeof(int2), stream);
  launch(pack_dgrad, dim3(grid_for(packed_elems, 256)), dim3(256), stream, filters,
         packed.get<float>(), static_cast<int>(g.groups), static_cast<int>(pi),
         static_cast<int>(pj), static_cast<int>(g.fg), static_cast<int>(g.cg),
         static_cast<int>(g.kh), static_cast<int>(g.kw), static_cast<int>(g.sh),
         static_cast<int>(g.sw), static_cast<int>(kp), static_cast<int>(mp));
  check_launch("img_acts (pack filters)");
  launch(table_dgrad, dim3(grid_for(pi * pj * kp, 256)), dim3(256), stream, table.get<int2>(),
         static_cast<int>(pi), static_cast<int>(pj), static_cast<int>(g.fg),
         static_cast<int>(g.kh), static_cast<int>(g.kw), static_cast<int>(g.sh),
         static_cast<int>(g.sw), static_cast<int>(kp), g.ho * g.wo, static_cast<int>(g.wo));
  check_launch("img_acts (gather tables)");

  GatherParams p = gather_common(g, out, st, so);
  p.a = packed.get<float>();
  p.table = table.get<int2>();
  p.src = hid;
  p.bias = nullptr;
  p.kp = static_cast<int>(kp);
  p.mp = static_cast<int>(mp);
  p.m = static_cast<int>(g.cg);
  p.k = 0;  // per phase, derived in the kernel
  p.pi = static_cast<int>(pi);
  p.pj = static_cast<int>(pj);
  p.phases = static_cast<int>(phases);
  p.src_nstride = g.f * g.ho * g.wo;
  p.src_gstride = g.fg * g.ho * g.wo;
  p.out_nstride = g.c * g.h * g.w;
  p.out_plane = g.h * g.w;
  p.out_gplanes = static_cast<int>(g.cg);
  const dim3 grid(static_cast<unsigned>(ceil_div(cols, 128)), static_cast<unsigned>(ceil_div(g.cg, bm)),
                  static_cast<unsigned>(g.groups * phases));
  launch_gather<true>(bm128, grid, stream, p, "img_acts");
}

void weight_acts_fast(const float* images, const float* hid, float* out, const Geo& g, float st,
                      float so, cudaStream_t stream) {
  const int64_t k = g.cg * g.kh * g.kw, rows = g.n * g.ho * g.wo;
  // Split-K fixes the wave count, so only the padding of M decides the tile.
  const bool bm128 = static_cast<double>(round_up(g.fg, 128)) <= 1.12 * round_up(g.fg, 64);
  const int64_t bm = bm128 ? 128 : 64, per_sm = bm128 ? 2 : 4;
  const int64_t tiles = ceil_div(g.fg, bm) * ceil_div(k, 128) * g.groups;
  const int64_t ktiles = ceil_div(rows, kBK);
  // Splits: about two waves of blocks, at least 16 K-steps (128 rows) each, workspace <= 256 MiB.
  int64_t splits = ceil_div(2 * sm_count() * per_sm, tiles);
  splits = std::min(splits, std::max<int64_t>(1, ktiles / 16));
  splits = std::min(splits, std::max<int64_t>(1, (int64_t(256) << 20) / (4 * g.f * k)));
  splits = std::max<int64_t>(1, std::min(splits, 65535 / g.groups));
  const int64_t kps = ceil_div(ktiles, splits);
  splits = ceil_div(ktiles, kps);  // no empty split

  const int64_t kp = round_up(k, kBK);
  Workspace table(static_cast<size_t>(kp) * sizeof(int2), stream);
  launch(table_im2col, dim3(grid_for(kp, 256)), dim3(256), stream, table.get<int2>(),
         static_cast<int>(k), static_cast<int>(kp), static_cast<int>(g.kh),
         static_cast<int>(g.kw), g.h * g.w, static_cast<int>(g.w));
  check_launch("weight_acts (gather table)");
  Workspace parts(splits > 1 ? static_cast<size_t>(splits * g.f * k) * sizeof(float) : 0, stream);

  WgradParams p{};
  p.images = images;
  p.hid = hid;
  p.table = table.get<int2>();
  p.out = out;
  p.ws = parts.get<float>();
  p.st = st;
  p.so = so;
  p.f = static_cast<int>(g.f);
  p.fg = static_cast<int>(g.fg);
  p.h = static_cast<int>(g.h);
  p.w = static_cast<int>(g.w);
  p.sh = static_cast<int>(g.sh);
  p.sw = static_cast<int>(g.sw);
  p.ph = static_cast<int>(g.ph);
  p.pw = static_cast<int>(g.pw);
  p.k = static_cast<int>(k);
  p.r = static_cast<int>(rows);
  p.pix = static_cast<int>(g.ho * g.wo);
  p.groups = static_cast<int>(g.groups);
  p.splits = static_cast<int>(splits);
  p.kps = static_cast<int>(kps);
  p.div_pix = make_fast_divmod(static_cast<uint32_t>(g.ho * g.wo));
  p.div_wo = make_fast_divmod(static_cast<uint32_t>(g.wo));
  p.img_nstride = g.c * g.h * g.w;
  p.img_gstride = g.cg * g.h * g.w;
  p.hid_nstride = g.f * g.ho * g.wo;
  const dim3 grid(static_cast<unsigned>(ceil_div(k, 128)), static_cast<unsigned>(ceil_div(g.fg, bm)),
                  static_cast<unsigned>(g.groups * splits));
  if (bm128)
    launch(conv_wgrad_gemm<128, 128>, grid, dim3(256), stream, p);
  else
    launch(conv_wgrad_gemm<64, 128>, grid, dim3(128), stream, p);
  check_launch("weight_acts");
  if (splits > 1) {
    launch(reduce_splits, dim3(grid_for(g.f * k, 256)), dim3(256), stream,
           static_cast<const float*>(parts.get<float>()), out, g.f * k, static_cast<int>(splits),
           st, so);
    check_launch("weight_acts (split-K reduction)");
  }
}

// ================================================================ dispatch
std::atomic<int> g_conv_kernel{2};

bool fast() { return g_conv_kernel.load(std::memory_order_relaxed) == 2; }

}  // namespace

void set_conv_kernel(int version) {
  if (version != 1 && version != 2)
    throw std::invalid_argument("set_conv_kernel: version must be 1 (reference) or 2 (fast), got " +
                                std::to_string(version));
  g_conv_kernel.store(version, std::memory_order_relaxed);
}

int get_conv_kernel() { return g_conv_kernel.load(std::memory_order_relaxed); }

void filter_acts(const float* images, const float* filters, const float* bias, float* out,
                 const ConvGeometry& cg, float st, float so, cudaStream_t stream) {
  const Geo g = geo_of(cg);
  if (fast() && fprop_fast_ok(g))
    return filter_acts_fast(images, filters, bias, out, g, st, so, stream);
  launch(filter_acts_ref, dim3(grid_for(g.n * g.f * g.ho * g.wo, 256)), dim3(256), stream, images,
         filters, bias, out, g, st, so);
  check_launch("filter_acts");
}

void img_acts(const float* hid, const float* filters, float* out, const ConvGeometry& cg, float st,
              float so, cudaStream_t stream) {
  const Geo g = geo_of(cg);
  if (fast() && dgrad_fast_ok(g)) return img_acts_fast(hid, filters, out, g, st, so, stream);
  launch(img_acts_ref, dim3(grid_for(g.n * g.c * g.h * g.w, 256)), dim3(256), stream, hid, filters,
         out, g, st, so);
  check_launch("img_acts");
}

void weight_acts(const float* images, const float* hid, float* out, const ConvGeometry& cg,
                 float st, float so, cudaStream_t stream) {
  const Geo g = geo_of(cg);
  if (fast() && wgrad_fast_ok(g)) return weight_acts_fast(images, hid, out, g, st, so, stream);
  const int64_t weights = g.f * g.cg * g.kh * g.kw;
  launch(weight_acts_ref, dim3(static_cast<unsigned>(std::min<int64_t>(weights, 65535LL * 16))),
         dim3(kRedThreads), stream, images, hid, out, g, st, so);
  check_launch("weight_acts");
}

void conv_bias_grad(const float* hid, float* out, int64_t n, int64_t f, int64_t pixels, float st,
                    float so, cudaStream_t stream) {
  if (n < 1 || f < 1 || pixels < 1) throw std::invalid_argument("conv_bias_grad: empty hid_grads");
  if (f > 0x7fffffffLL) throw std::invalid_argument("conv_bias_grad: more than 2^31-1 filters");
  // Version 1: one block per filter. Version 2: the batch split so that ~4 blocks per SM run,
  // partial sums reduced in a second pass in a fixed order (deterministic).
  int64_t splits = 1;
  if (fast()) {
    splits = std::min(ceil_div(4 * sm_count(), f), ceil_div(n, 8));  // >= 8 images per split
    splits = std::max<int64_t>(1, std::min<int64_t>(splits, 65535));
  }
  const int64_t n_per = ceil_div(n, splits);
  splits = ceil_div(n, n_per);
  if (splits == 1) {
    launch(bias_grad_kernel, dim3(static_cast<unsigned>(f), 1), dim3(kRedThreads), stream, hid,
           out, n, f, pixels, n_per, st, so, 1);
    check_launch("conv_bias_grad");
    return;
  }
  Workspace parts(static_cast<size_t>(splits * f) * sizeof(float), stream);
  launch(bias_grad_kernel, dim3(static_cast<unsigned>(f), static_cast<unsigned>(splits)),
         dim3(kRedThreads), stream, hid, parts.get<float>(), n, f, pixels, n_per, st, so, 0);
  check_launch("conv_bias_grad");
  launch(reduce_splits, dim3(grid_for(f, 256)), dim3(256), stream,
         static_cast<const float*>(parts.get<float>()), out, f, static_cast<int>(splits), st, so);
  check_launch("conv_bias_grad (split reduction)");
}

}  // namespace alexnet_ext::cuda
