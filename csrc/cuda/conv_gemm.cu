// CUDA convolution, version 2: every pass as an implicit GEMM on SIMT fp32 (FFMA), one mainloop
// for all (csrc/conv.h has the semantics; NCHW images and outputs, (F, C/groups, kh, kw) filters).
//   Block tile BM x BN (128x128 with 256 threads, or 64x128 with 128), K-step BK = 8, each thread
//   an 8x8 register tile (two 4-wide halves per dimension, BM/2 and BN/2 apart: float4 fragment
//   reads, conflict-free). Both operand tiles k-major in shared memory ([k][m], [k][n]), rows
//   padded by 4 floats, double-buffered: tile k+1 is copied global->shared with cp.async (sm_80+)
//   while tile k is multiplied, one __syncthreads per K-step. Edges are predicated (zero-filled);
//   out-of-range columns are clamped to a valid one and never stored.
//   filterActs, per group:  C[f, (n,oy,ox)] = sum_k A[f, k] B[k, (n,oy,ox)],  k = (c, i, j):
//     A = the filters packed k-major (pack_kmajor); B = the im2col matrix, never materialised:
//     each thread owns one column (window corner computed once) and walks its rows through a
//     per-k table {c*H*W + i*W + j, i, j} (table_im2col): no divisions in the inner loop.
//   imgActs, gather form (no atomics, no col2im buffer), per (group, stride phase):
//     C[c, (n,y,x)] = sum_k A[c, k] B[k, (n,y,x)],  k = (f, ii, jj) over the phase's taps only:
//     A = the phase's filter taps, transposed and packed (pack_kmajor); B gathers hid_grads
//     through a per-phase table {f*P - ii*Wo - jj, -ii, -jj} (table_dgrad). The same kernel as
//     filterActs (template flag DGRAD); the phase is blockIdx.z. Optionally split-K (the
//     dispatcher's wave model): each split writes raw partials, conv.cu's reduce_splits sums them.
//   weightActs: C[f, (c,i,j)] = sum_r A[f, r] B[r, (c,i,j)], r = (n, oy, ox): split-K across
//     blocks (the dispatcher, conv.cu, picks the splits and sums the partials in a fixed order).
//   Epilogue (fused): bias (filterActs) and the accumulate form, once per output element.
//   Also here: the two element-wise kernels of imgActs by space-to-depth (s2d_filters,
//   depth_to_space), which both versions use around their filterActs kernel.
// 64-bit safety: tensor offsets are int64; table offsets int32 relative to a column base; GEMM
// coordinates int32 (the dispatcher keeps them below 2^30). docs/CUDA_CONV.md has the reasoning
// (why NCHW and an implicit GEMM, the stride phases, the tile shapes) and the per-layer numbers.
#include <cstdint>

#include "cuda/conv_impl.cuh"

namespace alexnet_ext::cuda::conv {
namespace {

constexpr int kPad = 4;  // floats of padding per shared-memory row (keeps float4 alignment)

__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }

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

// The double-buffered mainloop of both kernels: acc = the product of the tiles that
// issue(kt, buffer) queues for K-steps kt in [kb, ke). Buffer b^1 was last read in the step
// before, which every thread finished before the barrier that ended it; its copies land while
// buffer b is multiplied. One __syncthreads per K-step.
template <int BM, int BN, class Issue>
__device__ __forceinline__ void gemm_mainloop(float (&as)[2][kBK][BM + kPad],
                                              float (&bs)[2][kBK][BN + kPad], float (&acc)[8][8],
                                              int kb, int ke, int ty, int tx, Issue& issue) {
#pragma unroll
  for (int i = 0; i < 8; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[i][j] = 0.f;
  if (kb >= ke) return;  // block-uniform
  issue(kb, 0);
  tile_copy_wait();
  __syncthreads();
#pragma unroll 1
  for (int kt = kb; kt < ke; ++kt) {
    const int cur = (kt - kb) & 1;
    if (kt + 1 < ke) issue(kt + 1, cur ^ 1);
    tile_mma<BM, BN>(as[cur], bs[cur], acc, ty, tx);
    tile_copy_wait();
    __syncthreads();
  }
}

// ---------------------------------------------------------------- filterActs / imgActs kernel
// (Slot and make_slot, shared with version 3, are in conv_impl.cuh.)
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
  int grp, phase, split;
  const Slot s = block_slot<DGRAD>(p, grp, phase, split);
  const int n0 = blockIdx.x * BN;
  if (n0 >= s.ncols) return;  // block-uniform: this phase has fewer columns than the grid
  const int m0 = blockIdx.y * BM;
  const float* __restrict__ src = p.src + grp * p.src_gstride;

  int64_t colbase;  // gathered tensor offset of this thread's column's window corner
  int cy, cx;       // the window corner (may lie in the padding)
  const int b_col = tid % BN, b_row = tid / BN;
  {
    // Past the end: a valid column, never stored.
    const ColPixel c = slot_pixel(s, imin(n0 + b_col, s.ncols - 1));
    cy = c.y * s.ay + s.by;
    cx = c.x * s.ax + s.bx;
    colbase = c.img * p.src_nstride + static_cast<int64_t>(cy) * s.rowlen + cx;
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
  const int tx = tid % (BN / 8), ty = tid / (BN / 8);
  const int ktiles = (s.k + kBK - 1) / kBK;  // split-K: this block's share of them (maybe none)
  gemm_mainloop<BM, BN>(as, bs, acc, imin(ktiles, split * p.kps),
                        imin(ktiles, (split + 1) * p.kps), ty, tx, issue);

  // Epilogue: each output element has exactly one owner (columns partition the phase's pixels,
  // rows the group's channels), so the read-modify-write of the accumulate form is race-free.
  // The slot is derived again from the kernel parameters rather than kept live in registers
  // across the mainloop.
  const Slot es = make_slot<DGRAD>(p, grp, phase);
  int64_t coff[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int col = n0 + frag_index<BN / 2>(tx, j);
    coff[j] = col < es.ncols ? slot_out_offset(p, es, slot_pixel(es, col)) : -1;
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
      if (p.splits > 1) {  // raw partial; the reduction applies bias, scale and accumulate form
        p.ws[split * p.out_total + roff + coff[j]] = acc[i][j];
        continue;
      }
      epilogue_store(p.out, roff + coff[j], p.so * (acc[i][j] + b), p.st, p.ep);
    }
  }
}

// Version 2's A for every group and tap phase, k-major: a[g][i0][j0][kk][m] (packed_source).
__global__ void __launch_bounds__(256) pack_kmajor(const float* __restrict__ filters,
                                                   float* __restrict__ a, int groups, int pi,
                                                   int pj, int fg, int cg, int kh, int kw, int sh,
                                                   int sw, int kp, int mp, int dgrad) {
  for_each_element(groups, pi * pj, kp, mp, [&](int64_t idx, const Idx4& o) {
    const int phase = static_cast<int>(o.b);
    const int64_t from = packed_source(dgrad, o.a, phase / pj, phase % pj, static_cast<int>(o.c),
                                       static_cast<int>(o.d), fg, cg, kh, kw, sh, sw);
    a[idx] = from < 0 ? 0.f : filters[from];
  });
}

// The im2col table of filterActs (rows k) and weightActs (columns k): for k = (c, i, j) the
// image offset c*H*W + i*W + j and the window offsets (i, j). Entries k >= K are zero. With
// cpix > 0 (NHWC images, pixel stride cpix = C; version 3's filterActs) k = (i, j, c) and the
// offset is (i*W + j)*C + c.
__global__ void __launch_bounds__(256) table_im2col(int2* __restrict__ table, int k, int kp,
                                                    int kh, int kw, int64_t plane, int w,
                                                    int cpix) {
  for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < kp; idx += gridDim.x * blockDim.x) {
    int2 e = make_int2(0, 0);
    if (idx < k && cpix > 0) {
      const int cg = k / (kh * kw), t = idx / cg, c = idx - t * cg;
      const int i = t / kw, j = t - i * kw;
      e = table_entry((static_cast<int64_t>(i) * w + j) * cpix + c, i, j);
    } else if (idx < k) {
      const int c = idx / (kh * kw), rem = idx - c * (kh * kw);
      const int i = rem / kw, j = rem - i * kw;
      e = table_entry(c * plane + static_cast<int64_t>(i) * w + j, i, j);
    }
    table[idx] = e;
  }
}

// imgActs' gather tables, one per tap phase (i0, j0): k = (f, ii, jj) reads hid_grads at
// f*P - ii*Wo - jj from the column's corner, i.e. output pixel (oy - ii, ox - jj). With fpix > 0
// (NHWC hid_grads, pixel stride fpix = F; version 3) k = (ii, jj, f) at (-ii*Wo - jj)*F + f.
__global__ void __launch_bounds__(256) table_dgrad(int2* __restrict__ table, int pi, int pj,
                                                   int fg, int kh, int kw, int sh, int sw, int kp,
                                                   int64_t pix, int wo, int fpix) {
  const int64_t total = static_cast<int64_t>(pi) * pj * kp;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int kk = static_cast<int>(idx % kp), t = static_cast<int>(idx / kp);
    int f, ii, jj;
    if (fpix > 0)
      table[idx] = dgrad_tap_nhwc(kk, t / pj, t % pj, fg, kh, kw, sh, sw, f, ii, jj)
                       ? table_entry((-static_cast<int64_t>(ii) * wo - jj) * fpix + f, -ii, -jj)
                       : make_int2(0, 0);
    else
      table[idx] = dgrad_tap(kk, t / pj, t % pj, fg, kh, kw, sh, sw, f, ii, jj)
                       ? table_entry(f * pix - static_cast<int64_t>(ii) * wo - jj, -ii, -jj)
                       : make_int2(0, 0);
  }
}

// ---------------------------------------------------------------- weightActs kernel
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
  const int tx = tid % (BN / 8), ty = tid / (BN / 8);
  gemm_mainloop<BM, BN>(as, bs, acc, kt_begin, kt_end, ty, tx, issue);

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

// ---------------------------------------------------------------- imgActs by space-to-depth
template <class T>
__global__ void __launch_bounds__(256) s2d_filters(const T* __restrict__ filters,
                                                   T* __restrict__ wt, Geo g, int64_t kdh,
                                                   int64_t kdw, int64_t dy, int64_t dx) {
  // W' is (groups*sh*sw*cg, fg, kdh, kdw): o = (channel, f, t, u), channel = (grp, ry, rx, c).
  for_each_element(g.c * g.sh * g.sw, g.fg, kdh, kdw, [&](int64_t idx, const Idx4& o) {
    const Idx4 q = unflatten(o.a, g.sh, g.sw, g.cg);
    const int64_t i = q.b + g.ph - g.sh * (dy + o.c), j = q.c + g.pw - g.sw * (dx + o.d);
    const bool tap = i >= 0 && i < g.kh && j >= 0 && j < g.kw;
    wt[idx] = tap ? filters[(((q.a * g.fg + o.b) * g.cg + q.d) * g.kh + i) * g.kw + j] : T(0);
  });
}

__global__ void __launch_bounds__(256) depth_to_space(const float* __restrict__ tmp,
                                                      float* __restrict__ out, Geo g, int64_t hs,
                                                      int64_t ws, float st, float so,
                                                      ConvEpilogue ep) {
  for_each_element(g.n, g.c, g.h, g.w, [&](int64_t idx, const Idx4& o) {  // (n, channel, y, x)
    const int64_t grp = o.b / g.cg, c = o.b - grp * g.cg;
    const int64_t ch = ((grp * g.sh + o.c % g.sh) * g.sw + o.d % g.sw) * g.cg + c;
    const int64_t from = ((o.a * g.c * g.sh * g.sw + ch) * hs + o.c / g.sh) * ws + o.d / g.sw;
    epilogue_store(out, idx, so * tmp[from], st, ep);
  });
}

}  // namespace

void launch_s2d_filters(size_t elem_bytes, const void* filters, void* wt, const Geo& g,
                        int64_t kdh, int64_t kdw, int64_t dy, int64_t dx, cudaStream_t stream) {
  const dim3 grid(blocks_for(g.c * g.sh * g.sw * g.fg * kdh * kdw, 256));
  if (elem_bytes == 2)
    launch(s2d_filters<uint16_t>, grid, dim3(256), stream, static_cast<const uint16_t*>(filters),
           static_cast<uint16_t*>(wt), g, kdh, kdw, dy, dx);
  else
    launch(s2d_filters<float>, grid, dim3(256), stream, static_cast<const float*>(filters),
           static_cast<float*>(wt), g, kdh, kdw, dy, dx);
  check_launch("img_acts (space-to-depth filters)");
}

void launch_depth_to_space(const float* tmp, float* out, const Geo& g, int64_t hs, int64_t ws,
                           float st, float so, const ConvEpilogue& ep, cudaStream_t stream) {
  launch(depth_to_space, dim3(blocks_for(g.n * g.c * g.h * g.w, 256)), dim3(256), stream, tmp, out,
         g, hs, ws, st, so, ep);
  check_launch("img_acts (depth to space)");
}

void launch_pack(bool dgrad, const float* filters, float* a, int groups, int pi, int pj, int fg,
                 int cg, int kh, int kw, int sh, int sw, int kp, int mp, cudaStream_t stream) {
  launch(pack_kmajor, dim3(blocks_for(static_cast<int64_t>(groups) * pi * pj * kp * mp, 256)),
         dim3(256), stream, filters, a, groups, pi, pj, fg, cg, kh, kw, sh, sw, kp, mp,
         static_cast<int>(dgrad));
  check_launch(dgrad ? "img_acts (pack filters)" : "filter_acts (pack filters)");
}

void launch_table_im2col(int2* table, int k, int kp, int kh, int kw, int64_t plane, int w,
                         cudaStream_t stream, const char* op, int cpix) {
  launch(table_im2col, dim3(blocks_for(kp, 256)), dim3(256), stream, table, k, kp, kh, kw, plane,
         w, cpix);
  check_launch(op);
}

void launch_table_dgrad(int2* table, int pi, int pj, int fg, int kh, int kw, int sh, int sw,
                        int kp, int64_t pix, int wo, cudaStream_t stream, int fpix) {
  launch(table_dgrad, dim3(blocks_for(static_cast<int64_t>(pi) * pj * kp, 256)), dim3(256), stream,
         table, pi, pj, fg, kh, kw, sh, sw, kp, pix, wo, fpix);
  check_launch("img_acts (gather tables)");
}

void launch_gather_gemm(bool dgrad, bool bm128, dim3 grid, const GatherParams& p,
                        cudaStream_t stream, const char* op) {
  if (dgrad && bm128)
    launch(conv_gather_gemm<128, 128, true>, grid, dim3(256), stream, p);
  else if (dgrad)
    launch(conv_gather_gemm<64, 128, true>, grid, dim3(128), stream, p);
  else if (bm128)
    launch(conv_gather_gemm<128, 128, false>, grid, dim3(256), stream, p);
  else
    launch(conv_gather_gemm<64, 128, false>, grid, dim3(128), stream, p);
  check_launch(op);
}

void launch_wgrad_gemm(bool bm128, dim3 grid, const WgradParams& p, cudaStream_t stream) {
  if (bm128)
    launch(conv_wgrad_gemm<128, 128>, grid, dim3(256), stream, p);
  else
    launch(conv_wgrad_gemm<64, 128>, grid, dim3(128), stream, p);
  check_launch("weight_acts");
}

}  // namespace alexnet_ext::cuda::conv
