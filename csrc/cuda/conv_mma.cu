// CUDA convolution, version 3: every pass as an implicit GEMM on tensor cores (mma.sync, sm_80+),
// tf32 (fp32 in memory, rounded to tf32 by cvt.rna) or bf16 (uint16_t bits in memory), fp32
// accumulate, fp32 output. Same GEMM views and gather tables as version 2 (conv_gemm.cu):
//   filterActs C[f, (n,oy,ox)] = A[f, k] B[k, (n,oy,ox)], k = (c,i,j), A = packed filters;
//   imgActs    per stride phase, C[c, (n,y,x)] = A[c, k] B[k, (n,y,x)], k = (f,ii,jj);
//   weightActs C[f, (c,i,j)] = hid[f, r] im2col[r, (c,i,j)], r = (n,oy,ox), split-K;
//   filterActs/imgActs split-K when the dispatcher's wave model asks (raw partials, as version 2).
// Layout: NCHW images/outputs, (F, C/groups, kh, kw) filters (csrc/conv.h); every pass also NHWC
// (template flag NHWC): filterActs k = (i, j, c), the B loader fetches 16-byte channel chunks, the
// epilogue writes (N, Ho, Wo, F), the NHWC filters (F, kh, kw, C/groups) are the same A rows;
// imgActs k = (ii, jj, f) per phase, the same chunked loader on hid_grads, output (N, H, W, C);
// weightActs columns (i, j, c), element-wise loads along the channels (docs/CUDA_CONV.md).
// Tile BM x 128 (BM = 128: 8 warps as 2 x 4; BM = 64: 4 warps as 1 x 4), warp tile 64 x 32
// (4 x 4 mma tiles, 64 fp32 accumulators per thread). K-step: one 128-byte row per operand row
// (32 tf32 or 64 bf16 elements, 4 mma k-steps; version 2 takes 8). Both operands are stored
// k-innermost in shared memory ([m][k], [n][k]) so that plain (non-transposed) ldmatrix.x4
// yields the mma fragments directly for both precisions (for tf32 a 16-byte ldmatrix row is 4
// floats: lane (g, t) receives element (g, t), which is the m16n8k8 A/B fragment order).
// Rows are 128 bytes, unpadded: the 16-byte chunk c of row r lives at chunk c ^ (r % 8) (XOR
// swizzle), so the 8 rows an ldmatrix phase reads hit 8 different bank groups.
// Pipeline: 3 stages in dynamic shared memory ((BM+128)*128 bytes each: 96 KB at BM = 128),
// cp.async (16 bytes for the packed filters, 4 bytes zero-filling for tf32 gathers), one
// __syncthreads per K-step. bf16 gathers from NCHW are 2-byte loads (cp.async has no 2-byte
// form and bf16 neighbours along k are not 4-byte aligned): pairs are loaded to registers and
// stored as one 32-bit word (docs/CUDA_CONV.md: the cost and the NHWC decision).
// Index work: a gather thread owns one column (window corner and 32-bit base offset computed
// once); per element only a broadcast table entry, two adds and two unsigned compares remain.
// weightActs' thread owns one (tf32) or two (bf16) reduction indices r per K-step: their
// (image, oy, ox) decomposition is done once per K-step and reused for its 16-32 rows.
// The dispatcher (conv.cu) keeps every tensor below 2^31 elements (32-bit offsets), else it
// falls back to version 2. Epilogue: bias, the accumulate form (never reading the target when
// st == 0) and conv.h's ConvEpilogue (epilogue_store), as version 2.
#include <cstdint>
#include <type_traits>

#include "cuda/conv_impl.cuh"
#include "cuda/mma.cuh"

namespace alexnet_ext::cuda::conv {
namespace {

constexpr int kStages = 3, kBN = 128;
constexpr int kBatch = 4;  // tf32 gathers: table entries in flight per thread

__device__ __forceinline__ int imin3(int a, int b) { return a < b ? a : b; }

// Byte offset of (row, byte) in an operand tile of 128-byte rows, 16-byte chunks XOR-swizzled.
__device__ __forceinline__ int swz(int row, int byte) {
  return row * kMmaRowBytes + ((((byte >> 4) ^ row) & 7) << 4 | (byte & 15));
}

__device__ __forceinline__ char* dyn_smem() {
#if defined(ALEXNET_EXT_CUDA_EMULATION)
  __shared__ __align__(128) char buf[kStages * (128 + kBN) * kMmaRowBytes];
  return buf;
#else
  extern __shared__ __align__(128) char buf[];
  return buf;
#endif
}

__device__ __forceinline__ int tab_di(const int2& e) { return static_cast<short>(e.y & 0xffff); }
__device__ __forceinline__ int tab_dj(const int2& e) { return e.y >> 16; }

__device__ __forceinline__ void divmod(const FastDivmod& fd, uint32_t n, uint32_t& q,
                                       uint32_t& r) {
  q = (__umulhi(n, fd.mul) + n) >> fd.shift;
  r = n - q * fd.d;
}

__device__ __forceinline__ void cvt_tf32(uint32_t* r, int count) {
#pragma unroll
  for (int i = 0; i < count; ++i) r[i] = to_tf32(__uint_as_float(r[i]));
}

// acc += A(64 x 128 bytes of k) * B(32 x ...) for this warp over one K-step (4 mma k-steps).
// at/bt: the stage's operand tiles; ACVT/BCVT: the operand holds raw fp32 (round to tf32 here).
template <bool BF16, bool ACVT, bool BCVT>
__device__ __forceinline__ void warp_mma(const char* at, const char* bt, float (&acc)[4][4][4],
                                         int wm, int wn, int lane) {
  const int arow = wm * 64 + (lane & 7) + ((lane >> 3) & 1) * 8, ahi = lane >> 4;
  const int brow = wn * 32 + (lane & 7) + (lane >> 4) * 8, bhi = (lane >> 3) & 1;
  // Unrolled by 2, not 4: fully unrolled, the compiler loads the next steps' fragments early
  // and (on sm_90) spills at the 128-register budget of two 256-thread blocks per SM.
#pragma unroll 2
  for (int ks = 0; ks < 4; ++ks) {
    uint32_t af[4][4], bf[4][2];
#pragma unroll
    for (int mi = 0; mi < 4; ++mi) ldmatrix_x4(af[mi], at + swz(arow + mi * 16, (2 * ks + ahi) * 16));
#pragma unroll
    for (int nj = 0; nj < 2; ++nj) {
      uint32_t r[4];
      ldmatrix_x4(r, bt + swz(brow + nj * 16, (2 * ks + bhi) * 16));
      bf[2 * nj][0] = r[0];
      bf[2 * nj][1] = r[1];
      bf[2 * nj + 1][0] = r[2];
      bf[2 * nj + 1][1] = r[3];
    }
    if (ACVT) cvt_tf32(&af[0][0], 16);
    if (BCVT) cvt_tf32(&bf[0][0], 8);
#pragma unroll
    for (int mi = 0; mi < 4; ++mi)
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
        if (BF16)
          mma_m16n8k16_bf16(acc[mi][ni], af[mi], bf[ni], acc[mi][ni]);
        else
          mma_m16n8k8_tf32(acc[mi][ni], af[mi], bf[ni], acc[mi][ni]);
      }
  }
}

// The 3-stage mainloop of both kernels: acc = the product of the tiles that issue(kt, stage)
// queues for K-steps kt in [kb, ke). One __syncthreads per K-step: after it, every thread's
// copies of step kt have landed and step kt-1's stage (wr) is free to refill.
// ACVT/BCVT: that operand holds raw fp32 (rounded to tf32 after ldmatrix).
template <int BM, bool BF16, bool ACVT, bool BCVT, class Issue>
__device__ __forceinline__ void mma_mainloop(const char* as, const char* bs, float (&acc)[4][4][4],
                                             int kb, int ke, int wm, int wn, int lane,
                                             Issue& issue) {
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) acc[i][j][r] = 0.f;
  if (kb >= ke) return;  // block-uniform
  issue(kb, 0);
  cp_commit();
  if (kb + 1 < ke) issue(kb + 1, 1);
  cp_commit();
  int rd = 0, wr = 2;
#pragma unroll 1
  for (int kt = kb; kt < ke; ++kt) {
    cp_wait<1>();
    __syncthreads();
    if (kt + 2 < ke) issue(kt + 2, wr);
    cp_commit();  // possibly empty: keeps the group count per step uniform
    warp_mma<BF16, ACVT, BCVT>(as + rd * BM * kMmaRowBytes, bs + rd * kBN * kMmaRowBytes, acc, wm,
                               wn, lane);
    rd = rd == 2 ? 0 : rd + 1;
    wr = wr == 2 ? 0 : wr + 1;
  }
}

// Accumulator i (of 8 rows) / j (of 8 columns) of lane (g, t) in warp (wm, wn): the tile's row
// and column, and its register (the m16n8 C fragment: c[r] = C[g + 8*(r>>1)][2t + (r&1)]).
__device__ __forceinline__ int acc_row(int wm, int i, int g) { return wm * 64 + (i >> 1) * 16 + g + (i & 1) * 8; }
__device__ __forceinline__ int acc_col(int wn, int j, int t) { return wn * 32 + (j >> 1) * 8 + 2 * t + (j & 1); }
__device__ __forceinline__ float acc_at(const float (&acc)[4][4][4], int i, int j) {
  return acc[i >> 1][j >> 1][(i & 1) * 2 + (j & 1)];
}

// ---------------------------------------------------------------- filterActs / imgActs
// NHWC filterActs: images (N, H, W, C) gathered through the k = (i, j, c) table, output
// (N, Ho, Wo, F) at column * F + f. NHWC imgActs: hid_grads (N, Ho, Wo, F) gathered per stride
// phase through the k = (ii, jj, f) table, output (N, H, W, C) at pixel * C + c (the epilogue's
// 8 rows of a column are consecutive channels). Both: with p.vec one 16-byte cp.async per EPC
// consecutive channels of one tap (channels per group a multiple of EPC: a chunk never
// straddles two taps), else the element-wise gathers below with NHWC offsets.
template <int BM, bool BF16, bool DGRAD, bool NHWC = false>
__global__ void __launch_bounds__(BM * 2, BM == 128 ? 2 : 3) mma_gather(const GatherParams p) {
  using E = std::conditional_t<BF16, uint16_t, float>;
  constexpr int THREADS = BM * 2, KE = BF16 ? 64 : 32, EPC = 16 / sizeof(E);
  constexpr int TPR = THREADS / kBN;  // threads per gathered column
  char* const as = dyn_smem();
  char* const bs = as + kStages * BM * kMmaRowBytes;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  int grp, phase, split;
  const Slot s = block_slot<DGRAD>(p, grp, phase, split);
  const int n0 = blockIdx.x * kBN;
  if (n0 >= s.ncols) return;  // block-uniform: this phase has fewer columns than the grid
  const int m0 = blockIdx.y * BM;
  const E* __restrict__ src = reinterpret_cast<const E*>(p.src) + grp * p.src_gstride;
  const E* __restrict__ a =
      reinterpret_cast<const E*>(p.a) + s.a_off + static_cast<int64_t>(m0) * p.kp;

  const int b_col = tid % kBN, b_k0 = tid / kBN;
  int colbase, cy, cx;  // this thread's column: 32-bit offset of its window corner, the corner
  {
    // Past the end: a valid column, never stored.
    const ColPixel c = slot_pixel(s, imin3(n0 + b_col, s.ncols - 1));
    cy = c.y * s.ay + s.by;
    cx = c.x * s.ax + s.bx;
    colbase = NHWC ? c.img * static_cast<int>(p.src_nstride) + (cy * s.rowlen + cx) * p.src_pix
                   : c.img * static_cast<int>(p.src_nstride) + cy * s.rowlen + cx;
  }

  auto issue = [&](int kt, int stg) {
    char* at = as + stg * BM * kMmaRowBytes;
    const E* ak = a + kt * KE;
#pragma unroll
    for (int q = 0; q < BM * 8 / THREADS; ++q) {
      const int c = tid + q * THREADS, row = c >> 3, ch = c & 7;
      cp16(at + swz(row, ch * 16), ak + row * p.kp + ch * EPC);
    }
    char* bt = bs + stg * kBN * kMmaRowBytes;
    const int2* tab = s.table + kt * KE;  // the table has kp >= (kt+1)*KE entries
    const int kleft = s.k - kt * KE;
    if (NHWC && p.vec) {  // chunk ch = EPC consecutive k: one tap, EPC channels (kleft too)
#pragma unroll
      for (int q = 0; q < KE / EPC / TPR; ++q) {
        const int kk = (b_k0 + q * TPR) * EPC;
        const int2 e = __ldg(tab + kk);
        const int yy = cy + tab_di(e), xx = cx + tab_dj(e);
        const bool ok = kk < kleft && static_cast<unsigned>(yy) < static_cast<unsigned>(s.hb) &&
                        static_cast<unsigned>(xx) < static_cast<unsigned>(s.wb);
        cpz<16>(bt + swz(b_col, kk * static_cast<int>(sizeof(E))), src + (ok ? colbase + e.x : 0),
              ok);
      }
      return;
    }
    // Batches of kBatch table entries (tf32) or 4 pairs (bf16), not unrolled across batches: the
    // compiler would otherwise hoist every entry or every 2-byte load and run out of registers.
    if constexpr (!BF16) {
#pragma unroll 1
      for (int q0 = 0; q0 < KE / TPR; q0 += kBatch) {
        int2 e[kBatch];
#pragma unroll
        for (int q = 0; q < kBatch; ++q) e[q] = __ldg(tab + b_k0 + (q0 + q) * TPR);
#pragma unroll
        for (int q = 0; q < kBatch; ++q) {
          const int kk = b_k0 + (q0 + q) * TPR;
          const int yy = cy + tab_di(e[q]), xx = cx + tab_dj(e[q]);
          const bool ok = kk < kleft && static_cast<unsigned>(yy) < static_cast<unsigned>(s.hb) &&
                          static_cast<unsigned>(xx) < static_cast<unsigned>(s.wb);
          cpz<4>(bt + swz(b_col, kk * 4), src + (ok ? colbase + e[q].x : 0), ok);
        }
      }
    } else {
#pragma unroll 1
      for (int q0 = 0; q0 < KE / 2 / TPR; q0 += 4) {
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const int kk = 2 * (b_k0 + (q0 + q) * TPR);
          uint32_t v = 0;
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int2 e = __ldg(tab + kk + h);
            const int yy = cy + tab_di(e), xx = cx + tab_dj(e);
            const bool ok = kk + h < kleft &&
                            static_cast<unsigned>(yy) < static_cast<unsigned>(s.hb) &&
                            static_cast<unsigned>(xx) < static_cast<unsigned>(s.wb);
            if (ok) v |= static_cast<uint32_t>(src[colbase + e.x]) << (16 * h);
          }
          *reinterpret_cast<uint32_t*>(bt + swz(b_col, kk * 2)) = v;
        }
      }
    }
  };

  float acc[4][4][4];
  const int wm = warp / 4, wn = warp % 4;
  const int ktiles = (s.k + KE - 1) / KE;  // split-K: this block's share of them (maybe none)
  mma_mainloop<BM, BF16, false, !BF16>(as, bs, acc, imin3(ktiles, split * p.kps),
                                       imin3(ktiles, (split + 1) * p.kps), wm, wn, lane, issue);

  // Epilogue: one owner per output element (as version 2), so the read-modify-write is race-free.
  const Slot es = make_slot<DGRAD>(p, grp, phase);
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int col = n0 + acc_col(wn, j, t);
    if (col >= es.ncols) continue;
    // Offsets, not pointers: with a bf16 out (ep.out_bf16) p.out's elements are 2 bytes.
    const int64_t ocol =
        NHWC ? (DGRAD ? slot_out_offset(p, es, slot_pixel(es, col)) : static_cast<int64_t>(col)) *
                   p.out_pix
             : slot_out_offset(p, es, slot_pixel(es, col));
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int m = m0 + acc_row(wm, i, g);
      if (m >= p.m) continue;
      const int64_t o = ocol + static_cast<int64_t>(grp * p.out_gplanes + m) * p.out_plane;
      if (p.splits > 1) {  // raw partial; the reduction applies bias, scale and the epilogue
        p.ws[split * p.out_total + o] = acc_at(acc, i, j);
        continue;
      }
      const float b = (!DGRAD && p.bias) ? __ldg(p.bias + grp * p.m + m) : 0.f;
      epilogue_store(p.out, o, p.so * (acc_at(acc, i, j) + b), p.st, p.ep);
    }
  }
}

// ---------------------------------------------------------------- weightActs
// NHWC: hid_grads (N*Ho*Wo, F) and images (N, H, W, C) are contiguous along the tiles' m
// (filters) and n (the channels of one tap: columns k = (i, j, c), the (F, kh, kw, C/groups)
// output), not along the reduction r, and the tiles are stored k-innermost for plain ldmatrix
// (ldmatrix.trans of an [r][m] tile has no tf32 form: it moves 16-bit elements). Element-wise
// loads (4-byte cp.async for tf32, 2-byte pairs for bf16) with lanes as 8 rows x 4 words: per
// word, 8 consecutive m (or channels) = one 32-byte sector (bf16: half of one), 4 sectors per
// warp request as a 128-byte row would be; in shared memory the 4 words share a 16-byte chunk
// and the XOR swizzle puts the 8 rows' chunks in 8 bank groups: conflict-free. (32 lanes along
// m, one word each, would be a 4-way bank conflict: the swizzle spreads only 8 rows.) Each
// lane's r is decomposed once per K-step and reused for 16 columns (B).
template <int BM, bool BF16, bool NHWC = false>
__global__ void __launch_bounds__(BM * 2, BM == 128 ? 2 : 3) mma_wgrad(const MmaWgradParams p) {
  using E = std::conditional_t<BF16, uint16_t, float>;
  constexpr int THREADS = BM * 2, KE = BF16 ? 64 : 32, NW = THREADS / 32;
  constexpr int RPE = BF16 ? 2 : 1;  // reduction indices per lane and K-step
  char* const as = dyn_smem();
  char* const bs = as + kStages * BM * kMmaRowBytes;
  __shared__ int2 cols[kBN];  // table entries of the block's columns
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int grp = blockIdx.z % p.groups, split = blockIdx.z / p.groups;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * kBN;
  const int ktiles = (p.r + KE - 1) / KE;
  const int kt_begin = split * p.kps, kt_end = imin3(ktiles, kt_begin + p.kps);
  for (int c = tid; c < kBN; c += THREADS)
    cols[c] = __ldg(p.table + imin3(n0 + c, p.k - 1));  // past the end: valid, never stored
  __syncthreads();
  const E* __restrict__ hid = static_cast<const E*>(p.hid) + grp * p.fg * (NHWC ? 1 : p.pix);
  const E* __restrict__ img = static_cast<const E*>(p.images) + grp * p.img_gstride;

  auto issue = [&](int kt, int stg) {
    char* at = as + stg * BM * kMmaRowBytes;
    char* bt = bs + stg * kBN * kMmaRowBytes;
    if constexpr (NHWC) {
      const int sub = lane & 7, wsub = lane >> 3;  // lanes: 8 rows x 4 words of one 16-byte chunk
      // A: 8 x 8 word blocks of BM/8 row blocks, 16 per warp; hid_grads row r at r*F.
#pragma unroll 4
      for (int q = 0; q < 16; ++q) {
        const int blk = warp + q * NW, row = (blk % (BM / 8)) * 8 + sub, mg = m0 + row;
        const int wpos = (blk / (BM / 8)) * 4 + wsub, r = kt * KE + wpos * RPE;
        if constexpr (!BF16) {
          const bool ok = r < p.r && mg < p.fg;
          cpz<4>(at + swz(row, wpos * 4), hid + (ok ? r * p.f + mg : 0), ok);
        } else {
          uint32_t v = 0;
#pragma unroll
          for (int u = 0; u < 2; ++u)
            if (r + u < p.r && mg < p.fg)
              v |= static_cast<uint32_t>(hid[(r + u) * p.f + mg]) << (16 * u);
          *reinterpret_cast<uint32_t*>(at + swz(row, wpos * 4)) = v;
        }
      }
      // B: this warp's word blocks (one r or r pair per lane, decomposed once) x 16 row blocks.
#pragma unroll 1
      for (int wb = warp; wb < 8; wb += NW) {
        const int wpos = wb * 4 + wsub;
        int ib[RPE], yb[RPE], xb[RPE];
        bool rok[RPE];
#pragma unroll
        for (int u = 0; u < RPE; ++u) {
          const int r = kt * KE + wpos * RPE + u;
          uint32_t nimg, pix, oy, ox;
          divmod(p.div_pix, static_cast<uint32_t>(r), nimg, pix);
          divmod(p.div_wo, pix, oy, ox);
          rok[u] = r < p.r;
          yb[u] = static_cast<int>(oy) * p.sh - p.ph;
          xb[u] = static_cast<int>(ox) * p.sw - p.pw;
          ib[u] = static_cast<int>(nimg) * p.img_nstride + (yb[u] * p.w + xb[u]) * p.cpix;
        }
#pragma unroll 4
        for (int nb = 0; nb < kBN / 8; ++nb) {
          const int row = nb * 8 + sub;
          const int2 e = cols[row];
          char* const dst = bt + swz(row, wpos * 4);
          bool ok[RPE];
#pragma unroll
          for (int u = 0; u < RPE; ++u) {
            const int yy = yb[u] + tab_di(e), xx = xb[u] + tab_dj(e);
            ok[u] = rok[u] && static_cast<unsigned>(yy) < static_cast<unsigned>(p.h) &&
                    static_cast<unsigned>(xx) < static_cast<unsigned>(p.w);
          }
          if constexpr (!BF16) {
            cpz<4>(dst, img + (ok[0] ? ib[0] + e.x : 0), ok[0]);
          } else {
            uint32_t v = 0;
#pragma unroll
            for (int u = 0; u < RPE; ++u)
              if (ok[u]) v |= static_cast<uint32_t>(img[ib[u] + e.x]) << (16 * u);
            *reinterpret_cast<uint32_t*>(dst) = v;
          }
        }
      }
      return;
    }
    int hbase[RPE], ibase[RPE], cy[RPE], cx[RPE];
    bool rok[RPE];
#pragma unroll
    for (int u = 0; u < RPE; ++u) {  // this lane's reduction indices: once per K-step
      const int r = kt * KE + lane * RPE + u;  // < 2^31 - 64: fast divmod's range
      uint32_t nimg, pix, oy, ox;
      divmod(p.div_pix, static_cast<uint32_t>(r), nimg, pix);
      divmod(p.div_wo, pix, oy, ox);
      rok[u] = r < p.r;
      hbase[u] = static_cast<int>(nimg) * p.hid_nstride + static_cast<int>(pix);
      cy[u] = static_cast<int>(oy) * p.sh - p.ph;
      cx[u] = static_cast<int>(ox) * p.sw - p.pw;
      ibase[u] = static_cast<int>(nimg) * p.img_nstride + cy[u] * p.w + cx[u];
    }
#pragma unroll 4
    for (int q = 0; q < BM / NW; ++q) {
      const int row = warp + q * NW, m = m0 + row;
      if constexpr (!BF16) {
        const bool ok = rok[0] && m < p.fg;
        cpz<4>(at + swz(row, lane * 4), hid + (ok ? hbase[0] + m * p.pix : 0), ok);
      } else {
        uint32_t v = 0;
#pragma unroll
        for (int u = 0; u < 2; ++u)
          if (rok[u] && m < p.fg) v |= static_cast<uint32_t>(hid[hbase[u] + m * p.pix]) << (16 * u);
        *reinterpret_cast<uint32_t*>(at + swz(row, lane * 4)) = v;
      }
    }
#pragma unroll 4
    for (int q = 0; q < kBN / NW; ++q) {
      const int row = warp + q * NW;
      const int2 e = cols[row];
      if constexpr (!BF16) {
        const int yy = cy[0] + tab_di(e), xx = cx[0] + tab_dj(e);
        const bool ok = rok[0] && static_cast<unsigned>(yy) < static_cast<unsigned>(p.h) &&
                        static_cast<unsigned>(xx) < static_cast<unsigned>(p.w);
        cpz<4>(bt + swz(row, lane * 4), img + (ok ? ibase[0] + e.x : 0), ok);
      } else {
        uint32_t v = 0;
#pragma unroll
        for (int u = 0; u < 2; ++u) {
          const int yy = cy[u] + tab_di(e), xx = cx[u] + tab_dj(e);
          if (rok[u] && static_cast<unsigned>(yy) < static_cast<unsigned>(p.h) &&
              static_cast<unsigned>(xx) < static_cast<unsigned>(p.w))
            v |= static_cast<uint32_t>(img[ibase[u] + e.x]) << (16 * u);
        }
        *reinterpret_cast<uint32_t*>(bt + swz(row, lane * 4)) = v;
      }
    }
  };

  float acc[4][4][4];
  const int wm = warp / 4, wn = warp % 4;
  mma_mainloop<BM, BF16, !BF16, !BF16>(as, bs, acc, kt_begin, kt_end, wm, wn, lane, issue);

  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int m = m0 + acc_row(wm, i, g);
    if (m >= p.fg) continue;
    const int64_t orow = static_cast<int64_t>(grp * p.fg + m) * p.k;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int n = n0 + acc_col(wn, j, t);
      if (n >= p.k) continue;
      const float v = acc_at(acc, i, j);
      if (p.splits == 1)
        store_scaled(p.out + orow + n, p.so * v, p.st);
      else
        p.ws[static_cast<int64_t>(split) * p.f * p.k + orow + n] = v;
    }
  }
}

// ---------------------------------------------------------------- packing, conversion
// a[g][i0][j0][m][kk] (k innermost), converted: T = float -> tf32 bits, T = uint16_t -> copied.
template <class T, class O>
__global__ void __launch_bounds__(256) pack_mma(const T* __restrict__ filters, O* __restrict__ a,
                                                int groups, int pi, int pj, int fg, int cg, int kh,
                                                int kw, int sh, int sw, int kp, int mp, int dgrad,
                                                int nhwc) {
  for_each_element(groups, pi * pj, mp, kp, [&](int64_t idx, const Idx4& o) {
    const int phase = static_cast<int>(o.b), kk = static_cast<int>(o.d), m = static_cast<int>(o.c);
    const int64_t from =
        nhwc ? packed_source_nhwc_dgrad(o.a, phase / pj, phase % pj, kk, m, fg, cg, kh, kw, sh, sw)
             : packed_source(dgrad, o.a, phase / pj, phase % pj, kk, m, fg, cg, kh, kw, sh, sw);
    if constexpr (std::is_same_v<T, float>)
      a[idx] = from < 0 ? 0u : to_tf32(filters[from]);
    else
      a[idx] = from < 0 ? static_cast<O>(0) : filters[from];
  });
}

__global__ void __launch_bounds__(256) bf16_to_f32(const uint16_t* __restrict__ in,
                                                   float* __restrict__ out, int64_t count) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = bf16_bits_to_float(in[i]);
}

// A launch with `smem` bytes of dynamic shared memory (the opt-in above 48 KB set first).
template <class... P, class... A>
void launch_dyn(void (*kernel)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                const char* op, A... args) {
#if defined(ALEXNET_EXT_CUDA_EMULATION)
  (void)smem;
  (void)op;
  launch(kernel, grid, block, stream, args...);
#else
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(smem)),
        op);
  kernel<<<grid, block, smem, stream>>>(args...);
#endif
}

}  // namespace

size_t mma_smem_bytes(bool bm128) {
  return static_cast<size_t>(kStages) * ((bm128 ? 128 : 64) + kBN) * kMmaRowBytes;
}

void launch_pack_mma(bool bf16, bool dgrad, const void* filters, void* a, int groups, int pi,
                     int pj, int fg, int cg, int kh, int kw, int sh, int sw, int kp, int mp,
                     cudaStream_t stream, bool nhwc) {
  const dim3 grid(blocks_for(static_cast<int64_t>(groups) * pi * pj * mp * kp, 256));
  if (bf16)
    launch(pack_mma<uint16_t, uint16_t>, grid, dim3(256), stream,
           static_cast<const uint16_t*>(filters), static_cast<uint16_t*>(a), groups, pi, pj, fg,
           cg, kh, kw, sh, sw, kp, mp, static_cast<int>(dgrad), static_cast<int>(dgrad && nhwc));
  else
    launch(pack_mma<float, uint32_t>, grid, dim3(256), stream, static_cast<const float*>(filters),
           static_cast<uint32_t*>(a), groups, pi, pj, fg, cg, kh, kw, sh, sw, kp, mp,
           static_cast<int>(dgrad), static_cast<int>(dgrad && nhwc));
  check_launch(dgrad ? "img_acts (pack filters)" : "filter_acts (pack filters)");
}

void launch_mma_gather(bool bf16, bool dgrad, bool bm128, dim3 grid, const GatherParams& p,
                       cudaStream_t stream, const char* op, bool nhwc) {
  const size_t smem = mma_smem_bytes(bm128);
  const dim3 block(bm128 ? 256 : 128);
  void (*k)(GatherParams) =
      bf16 ? (dgrad ? (bm128 ? mma_gather<128, true, true> : mma_gather<64, true, true>)
                    : (bm128 ? mma_gather<128, true, false> : mma_gather<64, true, false>))
           : (dgrad ? (bm128 ? mma_gather<128, false, true> : mma_gather<64, false, true>)
                    : (bm128 ? mma_gather<128, false, false> : mma_gather<64, false, false>));
  if (nhwc && !dgrad)
    k = bf16 ? (bm128 ? mma_gather<128, true, false, true> : mma_gather<64, true, false, true>)
             : (bm128 ? mma_gather<128, false, false, true> : mma_gather<64, false, false, true>);
  if (nhwc && dgrad)
    k = bf16 ? (bm128 ? mma_gather<128, true, true, true> : mma_gather<64, true, true, true>)
             : (bm128 ? mma_gather<128, false, true, true> : mma_gather<64, false, true, true>);
  launch_dyn(k, grid, block, smem, stream, op, p);
  check_launch(op);
}

void launch_mma_wgrad(bool bf16, bool bm128, dim3 grid, const MmaWgradParams& p,
                      cudaStream_t stream, bool nhwc) {
  const size_t smem = mma_smem_bytes(bm128);
  const dim3 block(bm128 ? 256 : 128);
  void (*k)(MmaWgradParams) = bf16 ? (bm128 ? mma_wgrad<128, true> : mma_wgrad<64, true>)
                                   : (bm128 ? mma_wgrad<128, false> : mma_wgrad<64, false>);
  if (nhwc)
    k = bf16 ? (bm128 ? mma_wgrad<128, true, true> : mma_wgrad<64, true, true>)
             : (bm128 ? mma_wgrad<128, false, true> : mma_wgrad<64, false, true>);
  launch_dyn(k, grid, block, smem, stream, "weight_acts", p);
  check_launch("weight_acts");
}

void launch_bf16_to_f32(const uint16_t* in, float* out, int64_t count, cudaStream_t stream) {
  launch(bf16_to_f32, dim3(blocks_for(count, 256)), dim3(256), stream, in, out, count);
  check_launch("bf16 -> fp32 (fallback)");
}

}  // namespace alexnet_ext::cuda::conv
