// CUDA convolution: the entry points of csrc/conv.h (filterActs, imgActs, weightActs; the bias
// gradient is conv_bias_grad.cu) and the dispatch between the kernel versions, chosen process-wide by
// set_conv_kernel(): 1 = the reference kernels (conv_reference.cu), 2 = the implicit GEMM
// (conv_gemm.cu, the default), 3 = the tensor-core implicit GEMM in tf32 (conv_mma.cu); and the
// explicit tf32/bf16 entry points of version 3 with their fallbacks. Layout: NCHW images and
// outputs, (F, C/groups, kh, kw) filters, dense fp32; groups, stride/padding pairs, ceil_mode;
// the accumulate form out = st*out + so*result where st == 0 never reads out. NHWC (*_nhwc):
// every pass in tf32/bf16 on version 3 within its limits, else (and fp32) version 1.
//
// Here, once for versions 2 and 3 (Impl says which): the limits of the int32 tile indexing (past
// them version 1 runs), the tile and split-K choice of filterActs/imgActs (the wave model of
// conv_plan.cuh), imgActs by space-to-depth for few channels per group, the per-call packing of
// the filters and the gather tables into workspaces from the caching allocator, weightActs'
// split-K, every split's partials summed by reduce_splits in a fixed order (deterministic, no
// float atomics) (also for the bias gradient, conv_bias_grad.cu). docs/CUDA_CONV.md has the reasoning, the napkin math and the GPU checklist.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "conv.h"
#include "cuda/conv_impl.cuh"
#include "cuda/conv_plan.cuh"
#include "real.h"

namespace alexnet_ext::cuda {
namespace conv {
namespace {

// ---------------------------------------------------------------- split reductions
// out[i] = st*out[i] + so * (sum_s parts[s*total + i] + bias[(i / plane) % channels]), the
// splits summed in order s = 0, 1, ... (bias may be null), stored by epilogue_store: for
// filterActs/imgActs this is the epilogue of the split GEMM (ep: their ConvEpilogue; weightActs
// and the bias gradient pass the plain store {}).
__global__ void __launch_bounds__(256) reduce_splits(const float* __restrict__ parts,
                                                     float* __restrict__ out, int64_t total,
                                                     int splits, float st, float so,
                                                     const float* __restrict__ bias,
                                                     int64_t plane, int64_t channels,
                                                     ConvEpilogue ep) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float sum = 0.f;
    for (int s = 0; s < splits; ++s) sum += parts[s * total + i];
    epilogue_store(out, i, so * (sum + (bias ? bias[(i / plane) % channels] : 0.f)), st, ep);
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

// ---------------------------------------------------------------- the GEMM passes
// (Impl, Plan and the wave model that picks tile and split-K: conv_plan.cuh.)
// out = st*out + so*(sum_s parts[s] + bias[channel]); bias may be null.
void reduce_into(const float* parts, float* out, int64_t total, int64_t splits, float st,
                 float so, const float* bias, int64_t plane, int64_t channels,
                 cudaStream_t stream, const char* op, const ConvEpilogue& ep = {}) {
  launch(reduce_splits, dim3(blocks_for(total, 256)), dim3(256), stream, parts, out, total,
         static_cast<int>(splits), st, so, bias, plane, channels, ep);
  check_launch(op);
}

// The parameters of a filterActs (dgrad = false) or imgActs grid. The gathered tensor is the
// images (C channels of H x W) or hid_grads (F of Ho x Wo), the output the other one.
GatherParams gather_params(const Geo& g, bool dgrad, const void* a, const int2* table,
                           const void* src, const float* bias, float* out, float st, float so,
                           const ConvEpilogue& ep, int64_t kp, int64_t mp, int64_t pi,
                           int64_t pj) {
  const auto i = [](int64_t v) { return static_cast<int>(v); };
  const int64_t src_c = dgrad ? g.f : g.c, src_plane = dgrad ? g.ho * g.wo : g.h * g.w;
  const int64_t out_c = dgrad ? g.c : g.f, out_plane = dgrad ? g.h * g.w : g.ho * g.wo;
  GatherParams p{};
  p.a = static_cast<const float*>(a);  // version 3: tf32 or bf16 bits (conv_impl.cuh)
  p.table = table;
  p.src = static_cast<const float*>(src);
  p.bias = bias;
  p.out = out;
  p.st = st;
  p.so = so;
  p.ep = ep;
  p.kp = i(kp);
  p.mp = i(mp);
  p.m = i(out_c / g.groups);
  p.fg = i(g.fg);
  p.k = dgrad ? 0 : i(g.cg * g.kh * g.kw);  // imgActs: per phase, derived in the kernel
  p.n = i(g.n);
  p.h = i(g.h);
  p.w = i(g.w);
  p.ho = i(g.ho);
  p.wo = i(g.wo);
  p.kh = i(g.kh);
  p.kw = i(g.kw);
  p.sh = i(g.sh);
  p.sw = i(g.sw);
  p.ph = i(g.ph);
  p.pw = i(g.pw);
  p.pi = i(pi);
  p.pj = i(pj);
  p.phases = dgrad ? i(g.sh * g.sw) : 1;
  p.src_nstride = src_c * src_plane;
  p.src_gstride = src_c / g.groups * src_plane;
  p.out_nstride = out_c * out_plane;
  p.out_plane = out_plane;
  p.out_gplanes = i(out_c / g.groups);
  p.out_total = g.n * out_c * out_plane;
  return p;
}

// Runs a planned filterActs/imgActs grid of either version; with split-K the raw partials go to
// a workspace and reduce_splits applies bias, scale and the accumulate form in split order.
std::atomic<int64_t> g_split_k{0}, g_s2d{0}, g_fused{0}, g_nhwc_mma{0};  // path_counts()

void run_gather(const Impl& im, bool dgrad, const Plan& plan, int64_t cols, int64_t slots,
                GatherParams& p, cudaStream_t stream, const char* op, bool nhwc = false) {
  if (plan.splits > 1) g_split_k.fetch_add(1, std::memory_order_relaxed);
  p.splits = static_cast<int>(plan.splits);
  p.kps = static_cast<int>(plan.kps);
  Workspace parts(plan.splits > 1 ? static_cast<size_t>(plan.splits * p.out_total) * 4 : 0,
                  stream);
  p.ws = parts.get<float>();
  const dim3 grid(static_cast<unsigned>(ceil_div(cols, 128)),
                  static_cast<unsigned>(ceil_div(p.m, plan.bm128 ? 128 : 64)),
                  static_cast<unsigned>(slots * plan.splits));
  if (im.mma)
    launch_mma_gather(im.bf16, dgrad, plan.bm128, grid, p, stream, op, nhwc);
  else
    launch_gather_gemm(dgrad, plan.bm128, grid, p, stream, op);
  if (plan.splits > 1)
    reduce_into(parts.get<float>(), p.out, p.out_total, plan.splits, p.st, p.so, p.bias,
                p.out_plane, static_cast<int64_t>(p.out_gplanes) * (slots / p.phases), stream,
                "split-K reduction", p.ep);
}

// Version 2 packs k-major ([k][m]), version 3 k-innermost and converted (tf32/bf16); nhwc:
// version 3's NHWC imgActs (NHWC filters, k = (ii, jj, f)).
void pack_filters(const Impl& im, bool dgrad, const void* filters, void* a, const Geo& g,
                  int64_t pi, int64_t pj, int64_t kp, int64_t mp, cudaStream_t stream,
                  bool nhwc = false) {
  const auto i = [](int64_t v) { return static_cast<int>(v); };
  if (im.mma)
    launch_pack_mma(im.bf16, dgrad, filters, a, i(g.groups), i(pi), i(pj), i(g.fg), i(g.cg),
                    i(g.kh), i(g.kw), i(g.sh), i(g.sw), i(kp), i(mp), stream, nhwc);
  else
    launch_pack(dgrad, static_cast<const float*>(filters), static_cast<float*>(a), i(g.groups),
                i(pi), i(pj), i(g.fg), i(g.cg), i(g.kh), i(g.kw), i(g.sh), i(g.sw), i(kp), i(mp),
                stream);
}

// NHWC filterActs (version 3 only): images' pixel stride C, outputs' F (one plane of pixels
// each: split-K's reduction takes bias[i % F]), 16-byte B chunks when the channels allow.
// dgrad (NHWC imgActs): hid_grads' pixel stride F, outputs' C at slot_out_offset (pixels) * C.
void nhwc_params(GatherParams& p, const Impl& im, const Geo& g, const void* src,
                 bool dgrad = false) {
  const int64_t chunk = im.bf16 ? 8 : 4;  // elements per 16 bytes
  const int64_t pix = dgrad ? g.f : g.c, per_group = dgrad ? g.fg : g.cg;
  p.src_nstride = (dgrad ? g.ho * g.wo : g.h * g.w) * pix;
  p.src_gstride = per_group;
  p.src_pix = static_cast<int>(pix);
  p.out_pix = static_cast<int>(dgrad ? g.c : g.f);
  if (dgrad) p.out_nstride = g.h * g.w;
  p.out_plane = 1;
  p.vec = per_group % chunk == 0 && pix % chunk == 0 && reinterpret_cast<uintptr_t>(src) % 16 == 0;
}

void filter_acts_gemm(const Impl& im, const void* images, const void* filters, const float* bias,
                      float* out, const Geo& g, float st, float so, const ConvEpilogue& ep,
                      const Plan& plan, cudaStream_t stream, bool nhwc = false) {
  const int64_t k = g.cg * g.kh * g.kw, cols = g.n * g.ho * g.wo;
  const int64_t kp = round_up(k, im.ke()), mp = round_up(g.fg, plan.bm128 ? 128 : 64);
  Workspace packed(static_cast<size_t>(g.groups * kp * mp) * im.elem_bytes(), stream);
  Workspace table(static_cast<size_t>(kp) * sizeof(int2), stream);
  pack_filters(im, false, filters, packed.get<void>(), g, 1, 1, kp, mp, stream);
  launch_table_im2col(table.get<int2>(), static_cast<int>(k), static_cast<int>(kp),
                      static_cast<int>(g.kh), static_cast<int>(g.kw), g.h * g.w,
                      static_cast<int>(g.w), stream, "filter_acts (gather table)",
                      nhwc ? static_cast<int>(g.c) : 0);
  GatherParams p = gather_params(g, false, packed.get<void>(), table.get<int2>(), images, bias,
                                 out, st, so, ep, kp, mp, 1, 1);
  if (nhwc) nhwc_params(p, im, g, images);
  run_gather(im, false, plan, cols, g.groups, p, stream, "filter_acts", nhwc);
}

// nhwc (version 3 only): NHWC hid_grads and output, k = (ii, jj, f) per phase (the packer's and
// table_dgrad's NHWC forms) so that the gather reads F-contiguous chunks (nhwc_params).
void img_acts_phases(const Impl& im, const void* hid, const void* filters, float* out,
                     const Geo& g, float st, float so, const ConvEpilogue& ep, const Plan& plan,
                     cudaStream_t stream, bool nhwc = false) {
  const int64_t pi = std::min(g.sh, g.kh), pj = std::min(g.sw, g.kw);
  const int64_t kmax = g.fg * ceil_div(g.kh, g.sh) * ceil_div(g.kw, g.sw);
  const int64_t cols = g.n * ceil_div(g.h, g.sh) * ceil_div(g.w, g.sw);  // the largest phase
  const int64_t kp = round_up(kmax, im.ke()), mp = round_up(g.cg, plan.bm128 ? 128 : 64);
  Workspace packed(static_cast<size_t>(g.groups * pi * pj * kp * mp) * im.elem_bytes(), stream);
  Workspace table(static_cast<size_t>(pi * pj * kp) * sizeof(int2), stream);
  pack_filters(im, true, filters, packed.get<void>(), g, pi, pj, kp, mp, stream, nhwc);
  launch_table_dgrad(table.get<int2>(), static_cast<int>(pi), static_cast<int>(pj),
                     static_cast<int>(g.fg), static_cast<int>(g.kh), static_cast<int>(g.kw),
                     static_cast<int>(g.sh), static_cast<int>(g.sw), static_cast<int>(kp),
                     g.ho * g.wo, static_cast<int>(g.wo), stream, nhwc ? static_cast<int>(g.f) : 0);
  GatherParams p = gather_params(g, true, packed.get<void>(), table.get<int2>(), hid, nullptr,
                                 out, st, so, ep, kp, mp, pi, pj);
  if (nhwc) nhwc_params(p, im, g, hid, true);
  run_gather(im, true, plan, cols, g.groups * g.sh * g.sw, p, stream, "img_acts", nhwc);
}

// ---- imgActs for few channels per group (conv1: 3): space-to-depth (conv_plan.cuh)
void img_acts_gemm(const Impl& im, const void* hid, const void* filters, float* out,
                   const Geo& g, float st, float so, const ConvEpilogue& ep, cudaStream_t stream) {
  const Plan plan = plan_dgrad(im, g);
  S2d s;
  if (s2d_geometry(g, s) && fprop_fast_ok(s.g) && (!im.mma || mma_ok(s.g, true))) {
    const Plan alt = plan_fprop(im, s.g);
    const int64_t tmp_elems = s.g.n * s.g.f * s.g.ho * s.g.wo;
    if (s2d_seconds(alt, s) < plan.seconds) {
      g_s2d.fetch_add(1, std::memory_order_relaxed);
      Workspace wt(static_cast<size_t>(s.g.f * s.g.cg * s.g.kh * s.g.kw) * im.elem_bytes(),
                   stream);
      Workspace tmp(static_cast<size_t>(tmp_elems) * sizeof(float), stream);
      launch_s2d_filters(im.elem_bytes(), filters, wt.get<void>(), g, s.g.kh, s.g.kw, s.dy, s.dx,
                         stream);
      filter_acts_gemm(im, hid, wt.get<void>(), nullptr, tmp.get<float>(), s.g, 0.f, 1.f, {},
                       alt, stream);
      launch_depth_to_space(tmp.get<float>(), out, g, s.g.ho, s.g.wo, st, so, ep, stream);
      return;
    }
  }
  img_acts_phases(im, hid, filters, out, g, st, so, ep, plan, stream);
}

// ---- weightActs: split-K over the reduction batch x pixels
struct WgradIo {
  const void *images, *hid;
  const int2* table;
  float *out, *ws;
  float st, so;
};

// Versions 2 and 3 take the same fields (version 3's strides are int: mma_ok bounds them).
template <class P>
void wgrad_common(P& p, const WgradIo& io, const Geo& g, int64_t k, int64_t splits, int64_t kps) {
  p.images = static_cast<decltype(p.images)>(io.images);
  p.hid = static_cast<decltype(p.hid)>(io.hid);
  p.table = io.table;
  p.out = io.out;
  p.ws = io.ws;
  p.st = io.st;
  p.so = io.so;
  p.f = static_cast<int>(g.f);
  p.fg = static_cast<int>(g.fg);
  p.h = static_cast<int>(g.h);
  p.w = static_cast<int>(g.w);
  p.sh = static_cast<int>(g.sh);
  p.sw = static_cast<int>(g.sw);
  p.ph = static_cast<int>(g.ph);
  p.pw = static_cast<int>(g.pw);
  p.k = static_cast<int>(k);
  p.r = static_cast<int>(g.n * g.ho * g.wo);
  p.pix = static_cast<int>(g.ho * g.wo);
  p.groups = static_cast<int>(g.groups);
  p.splits = static_cast<int>(splits);
  p.kps = static_cast<int>(kps);
  p.div_pix = make_fast_divmod(static_cast<uint32_t>(g.ho * g.wo));
  p.div_wo = make_fast_divmod(static_cast<uint32_t>(g.wo));
  p.img_nstride = static_cast<decltype(p.img_nstride)>(g.c * g.h * g.w);
  p.img_gstride = static_cast<decltype(p.img_gstride)>(g.cg * g.h * g.w);
  p.hid_nstride = static_cast<decltype(p.hid_nstride)>(g.f * g.ho * g.wo);
}

// nhwc (version 3 only): NHWC images and hid_grads, columns k = (i, j, c) (the NHWC table of
// filterActs), out (F, kh, kw, C/groups); the same tiles, splits and reduction as NCHW.
void weight_acts_gemm(const Impl& im, const void* images, const void* hid, float* out,
                      const Geo& g, float st, float so, cudaStream_t stream, bool nhwc = false) {
  const int64_t k = g.cg * g.kh * g.kw, rows = g.n * g.ho * g.wo;
  // Split-K fixes the wave count, so only the padding of M decides the tile.
  const bool bm128 = static_cast<double>(round_up(g.fg, 128)) <= im.eff64() * round_up(g.fg, 64);
  const int64_t bm = bm128 ? 128 : 64, per_sm = im.per_sm(bm128);
  const int64_t tiles = ceil_div(g.fg, bm) * ceil_div(k, 128) * g.groups;
  const int64_t ktiles = ceil_div(rows, im.ke());
  // Splits: at most two full waves of blocks (a wave is sms * per_sm resident blocks), at least
  // min_split_steps K-steps each, workspace <= 256 MiB. The time is about waves * K-steps per
  // split, so the count rounds down: rounding up overshoots two waves by up to tiles - 1 blocks,
  // a nearly empty third wave that costs as much as a full one (conv3: 54 tiles, 528 slots;
  // 10 splits = 540 blocks in 3 waves of 271 K-steps, 9 splits = 486 blocks in 2 waves of 301).
  int64_t splits = std::max<int64_t>(1, 2 * sm_count() * per_sm / tiles);
  splits = std::min(splits, std::max<int64_t>(1, ktiles / im.min_split_steps()));
  splits = std::min(splits, std::max<int64_t>(1, kWorkspaceCap / (4 * g.f * k)));
  splits = std::max<int64_t>(1, std::min(splits, 65535 / g.groups));
  const int64_t kps = ceil_div(ktiles, splits);
  splits = ceil_div(ktiles, kps);  // no empty split

  const int64_t kp = round_up(k, kBK);
  Workspace table(static_cast<size_t>(kp) * sizeof(int2), stream);
  launch_table_im2col(table.get<int2>(), static_cast<int>(k), static_cast<int>(kp),
                      static_cast<int>(g.kh), static_cast<int>(g.kw), g.h * g.w,
                      static_cast<int>(g.w), stream, "weight_acts (gather table)",
                      nhwc ? static_cast<int>(g.c) : 0);
  Workspace parts(splits > 1 ? static_cast<size_t>(splits * g.f * k) * sizeof(float) : 0, stream);
  const dim3 grid(static_cast<unsigned>(ceil_div(k, 128)), static_cast<unsigned>(ceil_div(g.fg, bm)),
                  static_cast<unsigned>(g.groups * splits));
  const WgradIo io{images, hid, table.get<int2>(), out, parts.get<float>(), st, so};
  if (im.mma) {
    MmaWgradParams p{};
    wgrad_common(p, io, g, k, splits, kps);
    if (nhwc) {
      p.img_nstride = static_cast<int>(g.h * g.w * g.c);
      p.img_gstride = static_cast<int>(g.cg);
      p.cpix = static_cast<int>(g.c);
    }
    launch_mma_wgrad(im.bf16, bm128, grid, p, stream, nhwc);
  } else {
    WgradParams p{};
    wgrad_common(p, io, g, k, splits, kps);
    launch_wgrad_gemm(bm128, grid, p, stream);
  }
  if (splits > 1)
    reduce_into(parts.get<float>(), out, g.f * k, splits, st, so, nullptr, 1, 1, stream,
                "weight_acts (split-K reduction)");
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

// The three passes behind one dispatcher: operands (a, b) are (images, filters) for filterActs,
// (hid_grads, filters) for imgActs, (images, hid_grads) for weightActs; bias is filterActs' only.
enum class Pass { fprop, dgrad, wgrad };

template <Pass P>
bool pass_ok(const Geo& g) {
  return P == Pass::fprop ? fprop_fast_ok(g) : P == Pass::dgrad ? dgrad_fast_ok(g) : wgrad_fast_ok(g);
}

template <Pass P>
void run_gemm(const Impl& im, const void* a, const void* b, const float* bias, float* out,
              const Geo& g, float st, float so, const ConvEpilogue& ep, cudaStream_t stream) {
  if constexpr (P == Pass::fprop)
    filter_acts_gemm(im, a, b, bias, out, g, st, so, ep, plan_fprop(im, g), stream);
  else if constexpr (P == Pass::dgrad)
    img_acts_gemm(im, a, b, out, g, st, so, ep, stream);
  else
    weight_acts_gemm(im, a, b, out, g, st, so, stream);
}

// fp32 operands: version 3 in tf32 when asked and within its limits, else version 2 when asked
// and within its limits, else version 1.
template <Pass P>
void run_fp32(const float* a, const float* b, const float* bias, float* out, const Geo& g,
              float st, float so, const ConvEpilogue& ep, bool want_tf32, bool want_fast,
              cudaStream_t stream) {
  const bool ok = pass_ok<P>(g);
  if (want_tf32 && mma_ok(g, ok))
    return run_gemm<P>(kTf32, a, b, bias, out, g, st, so, ep, stream);
  if (want_fast && ok) return run_gemm<P>(kSimt, a, b, bias, out, g, st, so, ep, stream);
  if constexpr (P == Pass::fprop)
    filter_acts_v1(a, b, bias, out, g, st, so, ep, stream);
  else if constexpr (P == Pass::dgrad)
    img_acts_v1(a, b, out, g, st, so, ep, stream);
  else
    weight_acts_v1(a, b, out, g, st, so, stream);
}

// bf16 operands: version 3, or (past its limits, or before sm_80) the operands widened to fp32
// exactly and version 2 or 1: more precise, never less.
template <Pass P>
void run_bf16(const uint16_t* a, const uint16_t* b, const float* bias, float* out, const Geo& g,
              float st, float so, const ConvEpilogue& ep, cudaStream_t stream) {
  if (mma_ok(g, pass_ok<P>(g))) return run_gemm<P>(kBf16, a, b, bias, out, g, st, so, ep, stream);
  const int64_t images = g.n * g.c * g.h * g.w, hid = g.n * g.f * g.ho * g.wo;
  const int64_t filters = g.f * g.cg * g.kh * g.kw;
  const Widened x(a, P == Pass::fprop ? images : P == Pass::dgrad ? hid : images, stream);
  const Widened y(b, P == Pass::wgrad ? hid : filters, stream);
  run_fp32<P>(x.get(), y.get(), bias, out, g, st, so, ep, false, true, stream);
}

}  // namespace

// For conv_bias_grad.cu: the split reduction (plain store) and whether version 2+ is chosen.
void reduce_parts(const float* parts, float* out, int64_t total, int64_t splits, float st,
                  float so, cudaStream_t stream, const char* op) {
  reduce_into(parts, out, total, splits, st, so, nullptr, 1, 1, stream, op);
}
bool fast_kernels() { return fast(); }

void note_epilogue(const ConvEpilogue& ep) {
  if (ep.relu || ep.out_bf16 || ep.relu_mask) g_fused.fetch_add(1, std::memory_order_relaxed);
}

PathCounts path_counts() {
  return {g_split_k.load(std::memory_order_relaxed), g_s2d.load(std::memory_order_relaxed),
          g_fused.load(std::memory_order_relaxed), g_nhwc_mma.load(std::memory_order_relaxed)};
}
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

ConvPathCounts conv_path_counts() {
  const PathCounts c = path_counts();
  return {c.split_k, c.s2d, c.fused};
}

void filter_acts(const float* images, const float* filters, const float* bias, float* out,
                 const ConvGeometry& cg, float st, float so, const ConvEpilogue& ep,
                 cudaStream_t stream) {
  note_epilogue(ep);
  run_fp32<Pass::fprop>(images, filters, bias, out, geo_of(cg), st, so, ep, tf32(), fast(),
                        stream);
}

void img_acts(const float* hid, const float* filters, float* out, const ConvGeometry& cg, float st,
              float so, const ConvEpilogue& ep, cudaStream_t stream) {
  note_epilogue(ep);
  run_fp32<Pass::dgrad>(hid, filters, nullptr, out, geo_of(cg), st, so, ep, tf32(), fast(),
                        stream);
}

void weight_acts(const float* images, const float* hid, float* out, const ConvGeometry& cg,
                 float st, float so, cudaStream_t stream) {
  run_fp32<Pass::wgrad>(images, hid, nullptr, out, geo_of(cg), st, so, {}, tf32(), fast(),
                        stream);
}

// ---- version 3 called directly (the precision choice of the binding layer)
void filter_acts_tf32(const float* images, const float* filters, const float* bias, float* out,
                      const ConvGeometry& cg, float st, float so, const ConvEpilogue& ep,
                      cudaStream_t stream) {
  note_epilogue(ep);
  run_fp32<Pass::fprop>(images, filters, bias, out, geo_of(cg), st, so, ep, true, true, stream);
}

void img_acts_tf32(const float* hid, const float* filters, float* out, const ConvGeometry& cg,
                   float st, float so, const ConvEpilogue& ep, cudaStream_t stream) {
  note_epilogue(ep);
  run_fp32<Pass::dgrad>(hid, filters, nullptr, out, geo_of(cg), st, so, ep, true, true, stream);
}

void weight_acts_tf32(const float* images, const float* hid, float* out, const ConvGeometry& cg,
                      float st, float so, cudaStream_t stream) {
  run_fp32<Pass::wgrad>(images, hid, nullptr, out, geo_of(cg), st, so, {}, true, true, stream);
}

void filter_acts_bf16(const uint16_t* images, const uint16_t* filters, const float* bias,
                      float* out, const ConvGeometry& cg, float st, float so,
                      const ConvEpilogue& ep, cudaStream_t stream) {
  note_epilogue(ep);
  run_bf16<Pass::fprop>(images, filters, bias, out, geo_of(cg), st, so, ep, stream);
}

void img_acts_bf16(const uint16_t* hid, const uint16_t* filters, float* out,
                   const ConvGeometry& cg, float st, float so, const ConvEpilogue& ep,
                   cudaStream_t stream) {
  note_epilogue(ep);
  run_bf16<Pass::dgrad>(hid, filters, nullptr, out, geo_of(cg), st, so, ep, stream);
}

void weight_acts_bf16(const uint16_t* images, const uint16_t* hid, float* out,
                      const ConvGeometry& cg, float st, float so, cudaStream_t stream) {
  run_bf16<Pass::wgrad>(images, hid, nullptr, out, geo_of(cg), st, so, {}, stream);
}

// NHWC filterActs: version 3 for tf32/bf16 within its limits, else version 1's NHWC loops.
void filter_acts_nhwc(const void* images, const void* filters, const float* bias, float* out,
                      const ConvGeometry& cg, float st, float so, const ConvEpilogue& ep,
                      cudaStream_t stream, ConvElem e) {
  note_epilogue(ep);
  const Geo g = geo_of(cg);
  if (e != ConvElem::fp32 && mma_ok(g, fprop_fast_ok(g))) {
    g_nhwc_mma.fetch_add(1, std::memory_order_relaxed);
    const Impl& im = e == ConvElem::bf16 ? kBf16 : kTf32;
    return filter_acts_gemm(im, images, filters, bias, out, g, st, so, ep, plan_fprop(im, g),
                            stream, true);
  }
  filter_acts_nhwc_v1(images, filters, bias, out, g, st, so, ep, stream, e);
}

// NHWC imgActs and weightActs: likewise (fp32 stays on version 1: version 2 has no NHWC
// loaders). On top of version 3's limits, the NHWC tables' 32-bit offsets: a hid_grads (imgActs)
// or images (weightActs) window spans kh pixel rows of Wo*F or W*C elements.
void img_acts_nhwc(const void* hid, const void* filters, float* out, const ConvGeometry& cg,
                   float st, float so, const ConvEpilogue& ep, cudaStream_t stream, ConvElem e) {
  note_epilogue(ep);
  const Geo g = geo_of(cg);
  if (e != ConvElem::fp32 && mma_ok(g, dgrad_fast_ok(g)) && g.kh * g.wo * g.f < kLim) {
    g_nhwc_mma.fetch_add(1, std::memory_order_relaxed);
    // No space-to-depth (img_acts_gemm's few-channel path): its filterActs over NHWC hid_grads
    // would need a channel-major temporary, and conv1's imgActs is not run in training.
    const Impl& im = e == ConvElem::bf16 ? kBf16 : kTf32;
    return img_acts_phases(im, hid, filters, out, g, st, so, ep, plan_dgrad(im, g), stream, true);
  }
  img_acts_nhwc_v1(hid, filters, out, g, st, so, ep, stream, e);
}

void weight_acts_nhwc(const void* images, const void* hid, float* out, const ConvGeometry& cg,
                      float st, float so, cudaStream_t stream, ConvElem e) {
  const Geo g = geo_of(cg);
  if (e != ConvElem::fp32 && mma_ok(g, wgrad_fast_ok(g)) && g.kh * g.w * g.c < kLim) {
    g_nhwc_mma.fetch_add(1, std::memory_order_relaxed);
    return weight_acts_gemm(e == ConvElem::bf16 ? kBf16 : kTf32, images, hid, out, g, st, so,
                            stream, true);
  }
  weight_acts_nhwc_v1(images, hid, out, g, st, so, stream, e);
}

}  // namespace alexnet_ext::cuda
