// CUDA convolution: the entry points of csrc/conv.h (filterActs, imgActs, weightActs, the bias
// gradient) and the dispatch between the two kernel versions, chosen process-wide by
// set_conv_kernel(): 1 = the reference kernels (conv_reference.cu), 2 = the implicit GEMM
// (conv_gemm.cu, the default), 3 = the tensor-core implicit GEMM in tf32 (conv_mma.cu); and the
// explicit tf32/bf16 entry points of version 3 with their fallbacks. Layout: NCHW images and outputs, (F, C/groups, kh, kw) filters,
// dense fp32; groups, stride/padding pairs, ceil_mode; the accumulate form
// out = st*out + so*result where st == 0 never reads out.
//
// Here: the limits of version 2's int32 tile indexing (past them version 1 runs), the tile
// choice (128x128 or 64x128 by a wave-cost model), the per-call packing of the filters and the
// gather tables into workspaces from the caching allocator, weightActs' split-K (partial tiles
// summed by reduce_splits in a fixed order: deterministic, no float atomics), and the bias
// gradient (block per filter and batch split, block_sum, then the same split reduction).
// docs/CUDA_CONV.md has the reasoning, the napkin math and what a GPU session must check.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "conv.h"
#include "cuda/conv_impl.cuh"

namespace alexnet_ext::cuda {
namespace conv {
namespace {

__device__ __forceinline__ int64_t lmin(int64_t a, int64_t b) { return a < b ? a : b; }

// ---------------------------------------------------------------- split reductions
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

// ---------------------------------------------------------------- version 2's host side
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

void filter_acts_fast(const float* images, const float* filters, const float* bias, float* out,
                      const Geo& g, float st, float so, cudaStream_t stream) {
  const int64_t k = g.cg * g.kh * g.kw, cols = g.n * g.ho * g.wo;
  const bool bm128 = use_bm128(g.fg, cols, g.groups);
  const int64_t bm = bm128 ? 128 : 64;
  const int64_t kp = round_up(k, kBK), mp = round_up(g.fg, bm);
  Workspace packed(static_cast<size_t>(g.groups * kp * mp) * sizeof(float), stream);
  Workspace table(static_cast<size_t>(kp) * sizeof(int2), stream);
  launch_pack_fprop(filters, packed.get<float>(), static_cast<int>(g.groups),
                    static_cast<int>(g.fg), static_cast<int>(k), static_cast<int>(kp),
                    static_cast<int>(mp), stream);
  launch_table_im2col(table.get<int2>(), static_cast<int>(k), static_cast<int>(kp),
                      static_cast<int>(g.kh), static_cast<int>(g.kw), g.h * g.w,
                      static_cast<int>(g.w), stream, "filter_acts (gather table)");

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
  launch_gather_gemm(false, bm128, grid, p, stream, "filter_acts");
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
  launch_pack_dgrad(filters, packed.get<float>(), static_cast<int>(g.groups),
                    static_cast<int>(pi), static_cast<int>(pj), static_cast<int>(g.fg),
                    static_cast<int>(g.cg), static_cast<int>(g.kh), static_cast<int>(g.kw),
                    static_cast<int>(g.sh), static_cast<int>(g.sw), static_cast<int>(kp),
                    static_cast<int>(mp), stream);
  launch_table_dgrad(table.get<int2>(), static_cast<int>(pi), static_cast<int>(pj),
                     static_cast<int>(g.fg), static_cast<int>(g.kh), static_cast<int>(g.kw),
                     static_cast<int>(g.sh), static_cast<int>(g.sw), static_cast<int>(kp),
                     g.ho * g.wo, static_cast<int>(g.wo), stream);

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
  launch_gather_gemm(true, bm128, grid, p, stream, "img_acts");
}

void weight_acts_fast(const float* images, const float* hid, float* out, const Geo& g, float st,
                      float so, cudaStream_t stream) {
  const int64_t k = g.cg * g.kh * g.kw, rows = g.n * g.ho * g.wo;
  // Split-K fixes the wave count, so only the padding of M decides the tile.
  const bool bm128 = static_cast<double>(round_up(g.fg, 128)) <= 1.12 * round_up(g.fg, 64);
  const int64_t bm = bm128 ? 128 : 64, per_sm = bm128 ? 2 : 4;
  const int64_t tiles = ceil_div(g.fg, bm) * ceil_div(k, 128) * g.groups;
  const int64_t ktiles = ceil_div(rows, kBK);
  // Splits: at most two full waves of blocks (a wave is sms * per_sm resident blocks), at least
  // 16 K-steps (128 rows) each, workspace <= 256 MiB. The time is about waves * K-steps per
  // split, so the count rounds down: rounding up overshoots two waves by up to tiles - 1 blocks,
  // a nearly empty third wave that costs as much as a full one (conv3: 54 tiles, 528 slots;
  // 10 splits = 540 blocks in 3 waves of 271 K-steps, 9 splits = 486 blocks in 2 waves of 301).
  int64_t splits = std::max<int64_t>(1, 2 * sm_count() * per_sm / tiles);
  splits = std::min(splits, std::max<int64_t>(1, ktiles / 16));
  splits = std::min(splits, std::max<int64_t>(1, (int64_t(256) << 20) / (4 * g.f * k)));
  splits = std::max<int64_t>(1, std::min(splits, 65535 / g.groups));
  const int64_t kps = ceil_div(ktiles, splits);
  splits = ceil_div(ktiles, kps);  // no empty split

  const int64_t kp = round_up(k, kBK);
  Workspace table(static_cast<size_t>(kp) * sizeof(int2), stream);
  launch_table_im2col(table.get<int2>(), static_cast<int>(k), static_cast<int>(kp),
                      static_cast<int>(g.kh), static_cast<int>(g.kw), g.h * g.w,
                      static_cast<int>(g.w), stream, "weight_acts (gather table)");
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
  launch_wgrad_gemm(bm128, grid, p, stream);
  if (splits > 1) {
    launch(reduce_splits, dim3(blocks_for(g.f * k, 256)), dim3(256), stream,
           static_cast<const float*>(parts.get<float>()), out, g.f * k, static_cast<int>(splits),
           st, so);
    check_launch("weight_acts (split-K reduction)");
  }
}

// ---------------------------------------------------------------- version 3's host side
// Tensor cores from sm_80 (the emulator counts as sm_80).
bool tensor_cores() {
#if defined(ALEXNET_EXT_CUDA_EMULATION)
  return true;
#else
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  static std::atomic<int> cache[64];  // major compute capability per device, 0 until asked
  int major = dev >= 0 && dev < 64 ? cache[dev].load(std::memory_order_relaxed) : 0;
  if (major == 0) {
    check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev),
          "cudaDeviceGetAttribute");
    if (dev >= 0 && dev < 64) cache[dev].store(major, std::memory_order_relaxed);
  }
  return major >= 8;
#endif
}

// Version 3's offsets are int32: every tensor (and each packed filter slot) below 2^30 elements,
// on top of version 2's limits for the pass. Past them the pass runs version 2 (or 1) in fp32.
bool mma_ok(const Geo& g, bool pass_ok) {
  return pass_ok && tensor_cores() && g.n * g.c * g.h * g.w < kLim && g.n * g.f * g.ho * g.wo < kLim &&
         g.f * g.cg * g.kh * g.kw < kLim &&
         g.groups * std::min(g.sh, g.kh) * std::min(g.sw, g.kw) * round_up(std::max(g.cg, g.fg), 128) *
                 round_up(std::max(g.cg, g.fg) * g.kh * g.kw, 64) < kLim;
}

// 128x128 (2 blocks/SM at 96 KB of shared memory) or 64x128 (3 blocks/SM at 72 KB), by the
// same wave-cost model as version 2.
bool mma_bm128(int64_t m, int64_t cols, int64_t slots) {
  const int64_t sms = sm_count();
  auto cost = [&](int64_t bm, int64_t per_sm, double eff) {
    const int64_t blocks = ceil_div(m, bm) * ceil_div(cols, 128) * slots;
    return static_cast<double>(ceil_div(blocks, sms * per_sm)) * per_sm * bm * eff;
  };
  return cost(128, 2, 1.0) <= cost(64, 3, 1.1);
}

void filter_acts_mma(const void* images, const void* filters, const float* bias, float* out,
                     const Geo& g, float st, float so, bool bf16, cudaStream_t stream) {
  const int64_t k = g.cg * g.kh * g.kw, cols = g.n * g.ho * g.wo;
  const bool bm128 = mma_bm128(g.fg, cols, g.groups);
  const int64_t kp = round_up(k, mma_k_elems(bf16)), mp = round_up(g.fg, bm128 ? 128 : 64);
  Workspace packed(static_cast<size_t>(g.groups * mp * kp) * (bf16 ? 2 : 4), stream);
  Workspace table(static_cast<size_t>(kp) * sizeof(int2), stream);
  launch_pack_mma(bf16, false, filters, packed.get<void>(), static_cast<int>(g.groups), 1, 1,
                  static_cast<int>(g.fg), static_cast<int>(g.cg), static_cast<int>(g.kh),
                  static_cast<int>(g.kw), 1, 1, static_cast<int>(kp), static_cast<int>(mp), stream);
  launch_table_im2col(table.get<int2>(), static_cast<int>(k), static_cast<int>(kp),
                      static_cast<int>(g.kh), static_cast<int>(g.kw), g.h * g.w,
                      static_cast<int>(g.w), stream, "filter_acts (gather table)");
  GatherParams p = gather_common(g, out, st, so);
  p.a = packed.get<float>();  // tf32 or bf16 bits (conv_impl.cuh)
  p.table = table.get<int2>();
  p.src = static_cast<const float*>(images);
  p.bias = bias;
  p.kp = static_cast<int>(kp);
  p.mp = static_cast<int>(mp);
  p.m = static_cast<int>(g.fg);
  p.k = static_cast<int>(k);
  p.pi = p.pj = p.phases = 1;
  p.src_nstride = g.c * g.h * g.w;
  p.src_gstride = g.cg * g.h * g.w;
  p.out_nstride = g.f * g.ho * g.wo;
  p.out_plane = g.ho * g.wo;
  p.out_gplanes = static_cast<int>(g.fg);
  const dim3 grid(static_cast<unsigned>(ceil_div(cols, 128)),
                  static_cast<unsigned>(ceil_div(g.fg, bm128 ? 128 : 64)),
                  static_cast<unsigned>(g.groups));
  launch_mma_gather(bf16, false, bm128, grid, p, stream, "filter_acts");
}

void img_acts_mma(const void* hid, const void* filters, float* out, const Geo& g, float st,
                  float so, bool bf16, cudaStream_t stream) {
  const int64_t pi = std::min(g.sh, g.kh), pj = std::min(g.sw, g.kw);
  const int64_t kmax = g.fg * ceil_div(g.kh, g.sh) * ceil_div(g.kw, g.sw);
  const int64_t cols = g.n * ceil_div(g.h, g.sh) * ceil_div(g.w, g.sw);  // the largest phase
  const int64_t phases = g.sh * g.sw;
  const bool bm128 = mma_bm128(g.cg, cols, g.groups * pi * pj);
  const int64_t kp = round_up(kmax, mma_k_elems(bf16)), mp = round_up(g.cg, bm128 ? 128 : 64);
  Workspace packed(static_cast<size_t>(g.groups * pi * pj * mp * kp) * (bf16 ? 2 : 4), stream);
  Workspace table(static_cast<size_t>(pi * pj * kp) * sizeof(int2), stream);
  launch_pack_mma(bf16, true, filters, packed.get<void>(), static_cast<int>(g.groups),
                  static_cast<int>(pi), static_cast<int>(pj), static_cast<int>(g.fg),
                  static_cast<int>(g.cg), static_cast<int>(g.kh), static_cast<int>(g.kw),
                  static_cast<int>(g.sh), static_cast<int>(g.sw), static_cast<int>(kp),
                  static_cast<int>(mp), stream);
  launch_table_dgrad(table.get<int2>(), static_cast<int>(pi), static_cast<int>(pj),
                     static_cast<int>(g.fg), static_cast<int>(g.kh), static_cast<int>(g.kw),
                     static_cast<int>(g.sh), static_cast<int>(g.sw), static_cast<int>(kp),
                     g.ho * g.wo, static_cast<int>(g.wo), stream);
  GatherParams p = gather_common(g, out, st, so);
  p.a = packed.get<float>();
  p.table = table.get<int2>();
  p.src = static_cast<const float*>(hid);
  p.bias = nullptr;
  p.kp = static_cast<int>(kp);
  p.mp = static_cast<int>(mp);
  p.m = static_cast<int>(g.cg);
  p.k = 0;
  p.pi = static_cast<int>(pi);
  p.pj = static_cast<int>(pj);
  p.phases = static_cast<int>(phases);
  p.src_nstride = g.f * g.ho * g.wo;
  p.src_gstride = g.fg * g.ho * g.wo;
  p.out_nstride = g.c * g.h * g.w;
  p.out_plane = g.h * g.w;
  p.out_gplanes = static_cast<int>(g.cg);
  const dim3 grid(static_cast<unsigned>(ceil_div(cols, 128)),
                  static_cast<unsigned>(ceil_div(g.cg, bm128 ? 128 : 64)),
                  static_cast<unsigned>(g.groups * phases));
  launch_mma_gather(bf16, true, bm128, grid, p, stream, "img_acts");
}

void weight_acts_mma(const void* images, const void* hid, float* out, const Geo& g, float st,
                     float so, bool bf16, cudaStream_t stream) {
  const int64_t k = g.cg * g.kh * g.kw, rows = g.n * g.ho * g.wo;
  const bool bm128 = static_cast<double>(round_up(g.fg, 128)) <= 1.1 * round_up(g.fg, 64);
  const int64_t bm = bm128 ? 128 : 64, per_sm = bm128 ? 2 : 3;
  const int64_t tiles = ceil_div(g.fg, bm) * ceil_div(k, 128) * g.groups;
  const int64_t ktiles = ceil_div(rows, mma_k_elems(bf16));
  // Splits: whole waves (floor: a part-filled extra wave costs as much as a full one), at
  // least 8 K-steps each, workspace <= 256 MiB.
  int64_t splits = std::max<int64_t>(1, 2 * sm_count() * per_sm / tiles);
  splits = std::min(splits, std::max<int64_t>(1, ktiles / 8));
  splits = std::min(splits, std::max<int64_t>(1, (int64_t(256) << 20) / (4 * g.f * k)));
  splits = std::max<int64_t>(1, std::min(splits, 65535 / g.groups));
  const int64_t kps = ceil_div(ktiles, splits);
  splits = ceil_div(ktiles, kps);
  Workspace table(static_cast<size_t>(k) * sizeof(int2), stream);
  launch_table_im2col(table.get<int2>(), static_cast<int>(k), static_cast<int>(k),
                      static_cast<int>(g.kh), static_cast<int>(g.kw), g.h * g.w,
                      static_cast<int>(g.w), stream, "weight_acts (gather table)");
  Workspace parts(splits > 1 ? static_cast<size_t>(splits * g.f * k) * sizeof(float) : 0, stream);
  MmaWgradParams p{};
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
  p.img_nstride = static_cast<int>(g.c * g.h * g.w);
  p.img_gstride = static_cast<int>(g.cg * g.h * g.w);
  p.hid_nstride = static_cast<int>(g.f * g.ho * g.wo);
  const dim3 grid(static_cast<unsigned>(ceil_div(k, 128)), static_cast<unsigned>(ceil_div(g.fg, bm)),
                  static_cast<unsigned>(g.groups * splits));
  launch_mma_wgrad(bf16, bm128, grid, p, stream);
  if (splits > 1) {
    launch(reduce_splits, dim3(blocks_for(g.f * k, 256)), dim3(256), stream,
           static_cast<const float*>(parts.get<float>()), out, g.f * k, static_cast<int>(splits),
           st, so);
    check_launch("weight_acts (split-K reduction)");
  }
}

// The bf16 entry points' fallback: the operands widened to fp32 (exactly), then version 2 or 1.
struct Widened {
  Workspace ws;
  Widened(const uint16_t* in, int64_t count, cudaStream_t stream)
      : ws(static_cast<size_t>(count) * sizeof(float), stream) {
    launch_bf16_to_f32(in, ws.get<float>(), count, stream);
  }
  const float* get() const { return ws.get<float>(); }
};

// ---------------------------------------------------------------- version choice
std::atomic<int> g_conv_kernel{2};

// Version 3 runs the float entry points in tf32; where it cannot, they run version 2.
bool fast() { return g_conv_kernel.load(std::memory_order_relaxed) >= 2; }
bool tf32() { return g_conv_kernel.load(std::memory_order_relaxed) == 3; }

}  // namespace
}  // namespace conv

using namespace conv;  // this file's own helpers (and the shared ones of conv_impl.cuh)

void set_conv_kernel(int version) {
  if (version < 1 || version > 3)
    throw std::invalid_argument(
        "set_conv_kernel: version must be 1 (reference), 2 (fast) or 3 (tensor cores, tf32), got " +
        std::to_string(version));
  g_conv_kernel.store(version, std::memory_order_relaxed);
}

int get_conv_kernel() { return g_conv_kernel.load(std::memory_order_relaxed); }

void filter_acts(const float* images, const float* filters, const float* bias, float* out,
                 const ConvGeometry& cg, float st, float so, cudaStream_t stream) {
  const Geo g = geo_of(cg);
  if (tf32() && mma_ok(g, fprop_fast_ok(g)))
    return filter_acts_mma(images, filters, bias, out, g, st, so, false, stream);
  if (fast() && fprop_fast_ok(g))
    return filter_acts_fast(images, filters, bias, out, g, st, so, stream);
  filter_acts_v1(images, filters, bias, out, g, st, so, stream);
}

void img_acts(const float* hid, const float* filters, float* out, const ConvGeometry& cg, float st,
              float so, cudaStream_t stream) {
  const Geo g = geo_of(cg);
  if (tf32() && mma_ok(g, dgrad_fast_ok(g)))
    return img_acts_mma(hid, filters, out, g, st, so, false, stream);
  if (fast() && dgrad_fast_ok(g)) return img_acts_fast(hid, filters, out, g, st, so, stream);
  img_acts_v1(hid, filters, out, g, st, so, stream);
}

void weight_acts(const float* images, const float* hid, float* out, const ConvGeometry& cg,
                 float st, float so, cudaStream_t stream) {
  const Geo g = geo_of(cg);
  if (tf32() && mma_ok(g, wgrad_fast_ok(g)))
    return weight_acts_mma(images, hid, out, g, st, so, false, stream);
  if (fast() && wgrad_fast_ok(g)) return weight_acts_fast(images, hid, out, g, st, so, stream);
  weight_acts_v1(images, hid, out, g, st, so, stream);
}

// ---- version 3 called directly (the precision choice of the binding layer)
void filter_acts_tf32(const float* images, const float* filters, const float* bias, float* out,
                      const ConvGeometry& cg, float st, float so, cudaStream_t stream) {
  const Geo g = geo_of(cg);
  if (mma_ok(g, fprop_fast_ok(g)))
    return filter_acts_mma(images, filters, bias, out, g, st, so, false, stream);
  if (fprop_fast_ok(g)) return filter_acts_fast(images, filters, bias, out, g, st, so, stream);
  filter_acts_v1(images, filters, bias, out, g, st, so, stream);
}

void img_acts_tf32(const float* hid, const float* filters, float* out, const ConvGeometry& cg,
                   float st, float so, cudaStream_t stream) {
  const Geo g = geo_of(cg);
  if (mma_ok(g, dgrad_fast_ok(g))) return img_acts_mma(hid, filters, out, g, st, so, false, stream);
  if (dgrad_fast_ok(g)) return img_acts_fast(hid, filters, out, g, st, so, stream);
  img_acts_v1(hid, filters, out, g, st, so, stream);
}

void weight_acts_tf32(const float* images, const float* hid, float* out, const ConvGeometry& cg,
                      float st, float so, cudaStream_t stream) {
  const Geo g = geo_of(cg);
  if (mma_ok(g, wgrad_fast_ok(g)))
    return weight_acts_mma(images, hid, out, g, st, so, false, stream);
  if (wgrad_fast_ok(g)) return weight_acts_fast(images, hid, out, g, st, so, stream);
  weight_acts_v1(images, hid, out, g, st, so, stream);
}

void filter_acts_bf16(const uint16_t* images, const uint16_t* filters, const float* bias,
                      float* out, const ConvGeometry& cg, float st, float so, cudaStream_t stream) {
  const Geo g = geo_of(cg);
  if (mma_ok(g, fprop_fast_ok(g)))
    return filter_acts_mma(images, filters, bias, out, g, st, so, true, stream);
  const Widened x(images, g.n * g.c * g.h * g.w, stream), w(filters, g.f * g.cg * g.kh * g.kw, stream);
  if (fprop_fast_ok(g)) return filter_acts_fast(x.get(), w.get(), bias, out, g, st, so, stream);
  filter_acts_v1(x.get(), w.get(), bias, out, g, st, so, stream);
}

void img_acts_bf16(const uint16_t* hid, const uint16_t* filters, float* out,
                   const ConvGeometry& cg, float st, float so, cudaStream_t stream) {
  const Geo g = geo_of(cg);
  if (mma_ok(g, dgrad_fast_ok(g))) return img_acts_mma(hid, filters, out, g, st, so, true, stream);
  const Widened y(hid, g.n * g.f * g.ho * g.wo, stream), w(filters, g.f * g.cg * g.kh * g.kw, stream);
  if (dgrad_fast_ok(g)) return img_acts_fast(y.get(), w.get(), out, g, st, so, stream);
  img_acts_v1(y.get(), w.get(), out, g, st, so, stream);
}

void weight_acts_bf16(const uint16_t* images, const uint16_t* hid, float* out,
                      const ConvGeometry& cg, float st, float so, cudaStream_t stream) {
  const Geo g = geo_of(cg);
  if (mma_ok(g, wgrad_fast_ok(g)))
    return weight_acts_mma(images, hid, out, g, st, so, true, stream);
  const Widened x(images, g.n * g.c * g.h * g.w, stream), y(hid, g.n * g.f * g.ho * g.wo, stream);
  if (wgrad_fast_ok(g)) return weight_acts_fast(x.get(), y.get(), out, g, st, so, stream);
  weight_acts_v1(x.get(), y.get(), out, g, st, so, stream);
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
  launch(reduce_splits, dim3(blocks_for(f, 256)), dim3(256), stream,
         static_cast<const float*>(parts.get<float>()), out, f, static_cast<int>(splits), st, so);
  check_launch("conv_bias_grad (split reduction)");
}

}  // namespace alexnet_ext::cuda
