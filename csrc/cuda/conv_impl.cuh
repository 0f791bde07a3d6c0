// What the files of the CUDA convolution share (internal; the public entry points are in
// csrc/conv.h):
//   conv_reference.cu  version 1: direct loops, int64 indexing (validation and fallback)
//   conv_gemm.cu       version 2: the implicit-GEMM mainloop, filter packers, gather tables,
//                      the space-to-depth kernels of imgActs
//   conv_mma.cu        version 3: the tensor-core implicit GEMM (tf32, bf16)
//   conv.cu            dispatch: version choice, fast-path limits, workspaces, split-K and
//                      space-to-depth (chosen by conv_plan.cuh's wave model), the bias gradient
//                      and the split reductions
// Layout everywhere: NCHW images and outputs, (F, C/groups, kh, kw) filters, dense fp32.
// docs/CUDA_CONV.md has the design, the reasoning and the numbers.
#pragma once
#include <cstdint>

#include "cast.h"
#include "conv.h"
#include "cuda/common.cuh"
#include "relu.h"

namespace alexnet_ext::cuda::conv {

// Geometry as the kernels see it: plain int64 fields (ConvGeometry's helpers are host-only).
struct Geo {
  int64_t n, c, h, w, f, kh, kw, sh, sw, ph, pw, groups, ho, wo, cg, fg;
};

inline Geo geo_of(const ConvGeometry& g) {
  return {g.n, g.c, g.h, g.w, g.f, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.groups, g.ho, g.wo,
          g.cg(), g.fg()};
}

#if defined(__CUDACC__) || defined(ALEXNET_EXT_CUDA_EMULATION)
// The accumulate form for one element; never reads *t when st == 0 (it may hold NaNs).
__device__ __forceinline__ void store_scaled(float* t, float v, float st) {
  *t = st == 0.f ? v : fmaf(st, *t, v);
}

// The store of every filterActs/imgActs output element (all versions, split-K's reduction,
// space-to-depth's depth_to_space): v = so * (result + bias) in, then conv.h's ConvEpilogue:
// the accumulate form (never reads out[i] when st == 0), relu, the ReLU-undo mask, the store as
// fp32 or bf16 (RNE). i is the element's offset in out and in the mask (same shape and layout).
// The same inline functions as ops.relu / relu_undo / cast, so fused == unfused bit for bit.
__device__ __forceinline__ void epilogue_store(float* out, int64_t i, float v, float st,
                                               const ConvEpilogue& ep) {
  uint16_t* const o16 = reinterpret_cast<uint16_t*>(out);
  if (st != 0.f) v = fmaf(st, ep.out_bf16 ? float_from_bf16(o16[i]) : out[i], v);
  if (ep.relu) v = relu_select(v);
  if (ep.relu_mask) {
    const void* m = ep.relu_mask;
    v = relu_undo_select(v, ep.mask_bf16 ? float_from_bf16(static_cast<const uint16_t*>(m)[i])
                                         : static_cast<const float*>(m)[i]);
  }
  if (ep.out_bf16)
    o16[i] = bf16_from_float(v);
  else
    out[i] = v;
}

// A flat NCHW-style index -> (a, b, c, d) over dimensions (., nb, nc, nd), d fastest.
struct Idx4 {
  int64_t a, b, c, d;
};
__device__ __forceinline__ Idx4 unflatten(int64_t idx, int64_t nb, int64_t nc, int64_t nd) {
  Idx4 r;
  r.d = idx % nd;
  idx /= nd;
  r.c = idx % nc;
  idx /= nc;
  r.b = idx % nb;
  r.a = idx / nb;
  return r;
}

// fn(idx, coordinates) for each element of an (na, nb, nc, nd) tensor this thread owns in a
// grid-stride loop: the element-wise kernels' (version 1, space-to-depth) iteration.
template <class Fn>
__device__ __forceinline__ void for_each_element(int64_t na, int64_t nb, int64_t nc, int64_t nd,
                                                 Fn fn) {
  const int64_t total = na * nb * nc * nd;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x)
    fn(idx, unflatten(idx, nb, nc, nd));
}

// Row kk of imgActs' tap phase (i0, j0), i0 < kh and j0 < kw: kk = (f, ii, jj) over the
// phase's taps (i0 + sh*ii, j0 + sw*jj); false past the last one.
__device__ __forceinline__ bool dgrad_tap(int kk, int i0, int j0, int fg, int kh, int kw, int sh,
                                          int sw, int& f, int& ii, int& jj) {
  const int nti = (kh - 1 - i0) / sh + 1, ntj = (kw - 1 - j0) / sw + 1, taps = nti * ntj;
  if (kk >= fg * taps) return false;
  f = kk / taps;
  const int rem = kk - f * taps;
  ii = rem / ntj;
  jj = rem - ii * ntj;
  return true;
}

// The filter element of packed A at (group g, tap phase (i0, j0), row kk, column m), or -1 where
// A is zero padding. filterActs (i0 = j0 = 0): kk = (c, i, j), m = f; imgActs: kk = (f, ii, jj)
// (dgrad_tap), m = c. Both versions' packers (layouts [kk][m] and [m][kk]) use it.
__device__ __forceinline__ int64_t packed_source(bool dgrad, int64_t g, int i0, int j0, int kk,
                                                 int m, int fg, int cg, int kh, int kw, int sh,
                                                 int sw) {
  if (!dgrad) {
    const int k = cg * kh * kw;
    return kk < k && m < fg ? (g * fg + m) * k + kk : -1;
  }
  int f, ii, jj;
  if (m >= cg || !dgrad_tap(kk, i0, j0, fg, kh, kw, sh, sw, f, ii, jj)) return -1;
  return (((g * fg + f) * cg + m) * kh + i0 + sh * ii) * kw + j0 + sw * jj;
}

// NHWC imgActs (version 3): row kk of tap phase (i0, j0) is kk = (ii, jj, f), f innermost, so
// that EPC consecutive rows of one tap are EPC consecutive channels of a hid_grads pixel (one
// 16-byte chunk when F/groups allows); false past the last tap.
__device__ __forceinline__ bool dgrad_tap_nhwc(int kk, int i0, int j0, int fg, int kh, int kw,
                                               int sh, int sw, int& f, int& ii, int& jj) {
  const int ntj = (kw - 1 - j0) / sw + 1, taps = ((kh - 1 - i0) / sh + 1) * ntj;
  if (kk >= fg * taps) return false;
  const int t = kk / fg;
  f = kk - t * fg;
  ii = t / ntj;
  jj = t - ii * ntj;
  return true;
}

// The filter element of NHWC imgActs' packed A (filters (F, kh, kw, C/groups)) at (group g,
// phase (i0, j0), row kk = (ii, jj, f), column m = c), or -1 where A is zero padding.
__device__ __forceinline__ int64_t packed_source_nhwc_dgrad(int64_t g, int i0, int j0, int kk,
                                                            int m, int fg, int cg, int kh, int kw,
                                                            int sh, int sw) {
  int f, ii, jj;
  if (m >= cg || !dgrad_tap_nhwc(kk, i0, j0, fg, kh, kw, sh, sw, f, ii, jj)) return -1;
  return (((g * fg + f) * kh + i0 + sh * ii) * kw + j0 + sw * jj) * cg + m;
}
#endif

// ---------------------------------------------------------------- version 1 (conv_reference.cu)
constexpr int kRedThreads = 256;  // block size of the reduction kernels (a power of two)

void filter_acts_v1(const float* images, const float* filters, const float* bias, float* out,
                    const Geo& g, float st, float so, const ConvEpilogue& ep, cudaStream_t stream);
void img_acts_v1(const float* hid, const float* filters, float* out, const Geo& g, float st,
                 float so, const ConvEpilogue& ep, cudaStream_t stream);
void weight_acts_v1(const float* images, const float* hid, float* out, const Geo& g, float st,
                    float so, cudaStream_t stream);
// NHWC filterActs in version 1, any element type (conv.h's *_nhwc; the others are public there).
void filter_acts_nhwc_v1(const void* images, const void* filters, const float* bias, float* out,
                         const Geo& g, float st, float so, const ConvEpilogue& ep,
                         cudaStream_t stream, ConvElem e);
// NHWC imgActs / weightActs in version 1 (conv.h's *_nhwc outside version 3's reach).
void img_acts_nhwc_v1(const void* hid, const void* filters, float* out, const Geo& g, float st,
                      float so, const ConvEpilogue& ep, cudaStream_t stream, ConvElem e);
void weight_acts_nhwc_v1(const void* images, const void* hid, float* out, const Geo& g, float st,
                         float so, cudaStream_t stream, ConvElem e);

// ---------------------------------------------------------------- version 2 (conv_gemm.cu)
constexpr int kBK = 8;  // K-step; packed operands and tables are padded to a multiple of it

// n / d and n % d for n < 2^31 by multiply-high (Granlund-Montgomery, round-up variant):
// shift = ceil(log2 d), mul = floor(2^32 * (2^shift - d) / d) + 1, q = (umulhi(n, mul) + n) >> shift.
struct FastDivmod {
  uint32_t d, mul, shift;
};

inline FastDivmod make_fast_divmod(uint32_t d) {
  uint32_t l = 0;
  while ((uint64_t(1) << l) < d) ++l;
  const uint64_t m = ((uint64_t(1) << 32) * ((uint64_t(1) << l) - d)) / d + 1;
  return {d, static_cast<uint32_t>(m), l};
}

// filterActs and imgActs: one kernel (template flag DGRAD), grid (column tiles, row tiles,
// (split * groups + group) * phases + phase). With splits > 1 (split-K) block `split` sums
// K-steps [split*kps, (split+1)*kps) and writes its raw partial to ws[split][output layout];
// reduce_splits (conv.cu) then applies bias, scale and the accumulate form in split order.
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
  int splits, kps;                   // split-K: splits, K-steps per split (1, all: no split)
  float* ws;                         // splits > 1: [splits][out_total] partial sums
  int64_t out_total;                 // elements of the output tensor
  // NHWC (version 3 only): the gathered tensor's and the output's pixel strides (filterActs C
  // and F, imgActs F and C), and whether the B loader may fetch 16-byte chunks (channels per
  // group and pixel stride multiples of the chunk, aligned). NHWC imgActs: out_nstride is in
  // pixels (H*W), the output offset slot_out_offset * out_pix.
  int src_pix, out_pix, vec;
  ConvEpilogue ep;  // the store (epilogue_store); split-K: reduce_splits applies it
};

// weightActs: grid (column tiles, row tiles, split * groups + group).
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

// Launchers (each checks its launch; `op` names the op in the error message).
// Version 2's A, k-major: a[g][i0][j0][kk][m] (packed_source; filterActs: pi = pj = 1).
void launch_pack(bool dgrad, const float* filters, float* a, int groups, int pi, int pj, int fg,
                 int cg, int kh, int kw, int sh, int sw, int kp, int mp, cudaStream_t stream);
// The im2col table (kp entries) of filterActs' rows and weightActs' columns.
// cpix > 0: NHWC images with pixel stride cpix, k = (i, j, c) (version 3's NHWC filterActs).
void launch_table_im2col(int2* table, int k, int kp, int kh, int kw, int64_t plane, int w,
                         cudaStream_t stream, const char* op, int cpix = 0);
// imgActs' gather tables, one per tap phase: [pi][pj][kp].
// fpix > 0: NHWC hid_grads with pixel stride fpix = F, k = (ii, jj, f) (dgrad_tap_nhwc).
void launch_table_dgrad(int2* table, int pi, int pj, int fg, int kh, int kw, int sh, int sw,
                        int kp, int64_t pix, int wo, cudaStream_t stream, int fpix = 0);
// imgActs by space-to-depth (conv.cu, img_acts_gemm): W'[(grp, ry, rx, c)][f][t][u] =
// filters[grp*fg + f][c][ry + ph - sh*(dy + t)][rx + pw - sw*(dx + u)], zero outside the filter,
// for 4-byte (fp32) or 2-byte (bf16) elements copied unchanged; then out = st*out + so*tmp with
// tmp[n][(grp, ry, rx, c)][y / sh][x / sw] the value of pixel (y, x) of channel grp*cg + c.
void launch_s2d_filters(size_t elem_bytes, const void* filters, void* wt, const Geo& g,
                        int64_t kdh, int64_t kdw, int64_t dy, int64_t dx, cudaStream_t stream);
void launch_depth_to_space(const float* tmp, float* out, const Geo& g, int64_t hs, int64_t ws,
                           float st, float so, const ConvEpilogue& ep, cudaStream_t stream);
// The GEMM kernels: tile 128x128 (256 threads) when bm128, else 64x128 (128 threads).
void launch_gather_gemm(bool dgrad, bool bm128, dim3 grid, const GatherParams& p,
                        cudaStream_t stream, const char* op);
void launch_wgrad_gemm(bool bm128, dim3 grid, const WgradParams& p, cudaStream_t stream);

#if defined(__CUDACC__) || defined(ALEXNET_EXT_CUDA_EMULATION)
// What one (group, phase) slot of a filterActs/imgActs grid computes (versions 2 and 3).
struct Slot {
  const float* a;
  int64_t a_off;                  // a - p.a in elements (version 3: bf16 A is 2-byte)
  const int2* table;
  int k;                          // reduction length (0: a phase no tap reaches)
  int yn, xn, ncols;              // columns are (image, y, x) over n x yn x xn = ncols
  int ay, by, ax, bx;             // gathered window corner of column (y, x): (y*ay+by, x*ax+bx)
  int hb, wb, rowlen;             // gathered plane: bounds and row length
  int oys, oyb, orow, oxs, oxb;   // output pixel: (y*oys + oyb) * orow + x*oxs + oxb
};

// blockIdx.z of a filterActs/imgActs grid -> (group, phase, split).
__device__ __forceinline__ void gather_slot(const GatherParams& p, int& grp, int& phase,
                                            int& split) {
  const int slots = static_cast<int>(gridDim.z) / p.splits;
  split = static_cast<int>(blockIdx.z) / slots;
  const int slot = static_cast<int>(blockIdx.z) - split * slots;
  grp = slot / p.phases;
  phase = slot - grp * p.phases;
}

template <bool DGRAD>
__device__ __forceinline__ Slot make_slot(const GatherParams& p, int grp, int phase) {
  Slot s;
  if (!DGRAD) {
    s.a_off = static_cast<int64_t>(grp) * p.kp * p.mp;
    s.a = p.a + s.a_off;
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
    s.a_off = (static_cast<int64_t>(grp) * p.pi * p.pj + pslot) * p.kp * p.mp;
    s.a = p.a + s.a_off;
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
  s.ncols = p.n * s.yn * s.xn;
  return s;
}


// This block's (group, phase, split) (gather_slot) and its slot.
template <bool DGRAD>
__device__ __forceinline__ Slot block_slot(const GatherParams& p, int& grp, int& phase,
                                           int& split) {
  gather_slot(p, grp, phase, split);
  return make_slot<DGRAD>(p, grp, phase);
}

// Column col of a slot: the image and pixel (y, x) over n x yn x xn.
struct ColPixel {
  int img, y, x;
};
__device__ __forceinline__ ColPixel slot_pixel(const Slot& s, int col) {
  const int yx = s.yn * s.xn;
  const int img = col / yx, rem = col - img * yx;
  const int y = rem / s.xn;
  return {img, y, rem - y * s.xn};
}

// The output offset of a column's pixel in channel plane 0 of the output.
__device__ __forceinline__ int64_t slot_out_offset(const GatherParams& p, const Slot& s,
                                                   const ColPixel& c) {
  return c.img * p.out_nstride + static_cast<int64_t>(c.y * s.oys + s.oyb) * s.orow +
         (c.x * s.oxs + s.oxb);
}
#endif


// ---------------------------------------------------------------- dispatch (conv.cu)
// How often the dispatcher chose split-K for a filterActs/imgActs grid, and the space-to-depth
// form of imgActs, since the process started: the emulator harnesses check that their cases
// reach both paths. nhwc_mma: NHWC passes (any of the three) that ran version 3.
// fused: filterActs/imgActs calls whose ConvEpilogue is not the plain store (note_epilogue).
struct PathCounts {
  int64_t split_k, s2d, fused;
  int64_t nhwc_mma;
};
PathCounts path_counts();
void note_epilogue(const ConvEpilogue& ep);
// out = st*out + so * (sum of `splits` partial arrays of `total`), in split order (conv.cu).
void reduce_parts(const float* parts, float* out, int64_t total, int64_t splits, float st,
                  float so, cudaStream_t stream, const char* op);
bool fast_kernels();  // set_conv_kernel chose version 2 or 3

// ---------------------------------------------------------------- version 3 (conv_mma.cu)
// Tensor-core implicit GEMM (mma.sync, sm_80+): tf32 (fp32 in memory) or bf16 (uint16_t bits in
// memory) operands, fp32 accumulate, fp32 output. The gather passes take GatherParams with
// kp a multiple of mma_k_elems() and A packed [groups][pi][pj][mp][kp] (k innermost, converted:
// tf32 bits or bf16 bits); for bf16 the float pointers a/src carry uint16_t data.
constexpr int kMmaRowBytes = 128;  // bytes of one operand row per K-step (8 chunks of 16)
inline int mma_k_elems(bool bf16) { return bf16 ? 64 : 32; }  // the K-step in elements

// weightActs, version 3: grid (column tiles, row tiles, split * groups + group).
struct MmaWgradParams {
  const void* images;  // float or uint16_t (bf16)
  const void* hid;
  const int2* table;   // table_im2col, >= k entries
  float* out;          // (F, Cg, kh, kw), written when splits == 1
  float* ws;           // [splits][F][Cg*kh*kw] partial sums when splits > 1
  float st, so;
  int f, fg, h, w, sh, sw, ph, pw, k, r, pix, groups, splits, kps;
  FastDivmod div_pix, div_wo;
  int img_nstride, img_gstride, hid_nstride;  // the dispatcher keeps tensors below 2^31 elements
  int cpix;  // NHWC (mma_wgrad<.., NHWC>): the images' pixel stride C (img_gstride = C/groups)
};

// Packs the filters into version 3's A, converted (tf32 bits or bf16 bits), k innermost:
// a[g][i0][j0][m][kk] (packed_source); filterActs with pi = pj = 1.
// nhwc (imgActs only): NHWC filters, rows kk = (ii, jj, f) (packed_source_nhwc_dgrad).
void launch_pack_mma(bool bf16, bool dgrad, const void* filters, void* a, int groups, int pi,
                     int pj, int fg, int cg, int kh, int kw, int sh, int sw, int kp, int mp,
                     cudaStream_t stream, bool nhwc = false);
// The GEMMs: tile BM x 128 (BM = 128: 256 threads, else 64: 128 threads), 3-stage pipeline in
// dynamic shared memory (mma_smem_bytes).
size_t mma_smem_bytes(bool bm128);
// nhwc: filterActs on NHWC images into NHWC outputs, imgActs on NHWC hid_grads into NHWC
// outputs, weightActs on NHWC images and hid_grads into (F, kh, kw, C/groups).
void launch_mma_gather(bool bf16, bool dgrad, bool bm128, dim3 grid, const GatherParams& p,
                       cudaStream_t stream, const char* op, bool nhwc = false);
void launch_mma_wgrad(bool bf16, bool bm128, dim3 grid, const MmaWgradParams& p,
                      cudaStream_t stream, bool nhwc = false);
// out[i] = float(bf16 in[i]), for the fallback of the bf16 entry points to version 2.
void launch_bf16_to_f32(const uint16_t* in, float* out, int64_t count, cudaStream_t stream);

}  // namespace alexnet_ext::cuda::conv
