// The dispatcher's model of the GEMM passes (internal to conv.cu): what it needs to know of
// version 2 (FP32 SIMT, conv_gemm.cu) and version 3 (tensor cores, conv_mma.cu), and the wave
// model that picks the tile height (128 or 64 rows x 128 columns) and the split-K count of a
// filterActs/imgActs grid. Nominal H100 SXM numbers; the SM count comes from the device.
// docs/CUDA_CONV.md has the per-layer tables (waves before and after).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cuda/conv_impl.cuh"

namespace alexnet_ext::cuda::conv {
namespace {

// What the dispatcher needs to know of version 2 (FP32 SIMT, conv_gemm.cu) and version 3
// (tensor cores in tf32 or bf16, conv_mma.cu): the K-step, the operand size, resident blocks per
// SM for each tile, and a nominal per-SM rate for the wave model.
struct Impl {
  bool mma, bf16;
  int64_t ke() const { return mma ? mma_k_elems(bf16) : kBK; }  // K-step in elements
  size_t elem_bytes() const { return bf16 ? 2 : 4; }
  int64_t per_sm(bool bm128) const { return bm128 ? 2 : mma ? 3 : 4; }
  // Cost factor of the 64-row tile: more load/store work per FLOP (version 2), and a smaller
  // warp grid per block (version 3). Heuristics to tune on the GPU.
  double eff64() const { return mma ? 1.1 : 1.12; }
  // FLOP/s per SM of an H100 SXM (132 SMs): 51.3 T FP32 FFMA; mma.sync at ~65% of the dense
  // tensor peaks, 320 T tf32 / 640 T bf16 (docs/CUDA_CONV.md's napkin tables).
  double sm_flops() const { return (mma ? (bf16 ? 640e12 : 320e12) : 51.3e12) / 132; }
  int64_t min_split_steps() const { return mma ? 8 : 16; }  // K-steps per split, at least
};
constexpr Impl kSimt{false, false}, kTf32{true, false}, kBf16{true, true};

// ---- the wave model: tile height and split-K of a filterActs/imgActs grid
constexpr double kDramBytesPerS = 3.0e12;  // H100 SXM
constexpr double kLaunchS = 3e-6;          // one more kernel on the stream
constexpr int64_t kMaxSplits = 8;
constexpr int64_t kWorkspaceCap = int64_t(256) << 20;  // bytes of split-K partials, at most

struct Plan {
  bool bm128;
  int64_t splits, kps;    // split-K: splits, K-steps per split (1 and all of them: no split)
  double seconds;         // the model's estimate (compared, and printed by conv_waves)
  int64_t blocks, slots;  // blocks of one split; resident blocks of a wave (sms * per_sm)
  double waves() const { return static_cast<double>(blocks * splits) / slots; }
};

// tiles(bm): blocks of one split for row tile bm (x 128 columns); ksteps: the longest block's
// K-steps. A wave is sms * per_sm resident blocks sharing their SMs, so a K-step of a full wave
// takes per_sm * eff * 2 * bm * 128 * KE FLOP at one SM's rate and the grid takes
//   ceil(tiles * splits / (sms * per_sm)) * ceil(ksteps / splits)
// such steps: waves / ceil(waves) is the efficiency a split can raise (AlexNet's conv3 imgActs
// and conv5 filterActs sit at ~1.28 waves unsplit on 132 SMs). A split count > 1 pays for its
// reduction: one launch and 8 bytes per output and split (partials written, then read). Ties keep
// the 128-row tile and fewer splits; with one split the tile choice is the old cost model.
template <class Tiles>
Plan plan_gemm(const Impl& im, Tiles tiles, int64_t ksteps, int64_t out_elems, int64_t max_splits) {
  const int64_t sms = sm_count();
  const int64_t by_ws = kWorkspaceCap / std::max<int64_t>(1, 4 * out_elems);
  const int64_t most = std::max<int64_t>(
      1, std::min({kMaxSplits, max_splits, ksteps / im.min_split_steps(), by_ws}));
  Plan best{true, 1, ksteps, HUGE_VAL, 0, 1};
  for (const bool bm128 : {true, false}) {
    const int64_t bm = bm128 ? 128 : 64, per_sm = im.per_sm(bm128), blocks = tiles(bm);
    const double step_s =
        per_sm * (bm128 ? 1.0 : im.eff64()) * 2.0 * bm * 128 * im.ke() / im.sm_flops();
    for (int64_t splits = 1; splits <= most; ++splits) {
      const int64_t kps = ceil_div(ksteps, splits);
      if (ceil_div(ksteps, kps) < splits) continue;  // the last split would be empty
      const double waves = static_cast<double>(ceil_div(blocks * splits, sms * per_sm));
      const double reduce = splits > 1 ? kLaunchS + 8.0 * splits * out_elems / kDramBytesPerS : 0;
      const double t = waves * kps * step_s + reduce;
      if (t < best.seconds) best = {bm128, splits, kps, t, blocks, sms * per_sm};
    }
  }
  return best;
}

// max_splits = 1: the tile choice alone (the model before split-K; conv_waves prints both).
Plan plan_fprop(const Impl& im, const Geo& g, int64_t max_splits = kMaxSplits) {
  const int64_t cols = g.n * g.ho * g.wo;
  return plan_gemm(
      im, [&](int64_t bm) { return ceil_div(g.fg, bm) * ceil_div(cols, 128) * g.groups; },
      ceil_div(g.cg * g.kh * g.kw, im.ke()), g.n * g.f * g.ho * g.wo,
      std::min(max_splits, 65535 / g.groups));
}

// imgActs per stride phase: only the phases with taps cost; the largest phase sets the grid.
Plan plan_dgrad(const Impl& im, const Geo& g, int64_t max_splits = kMaxSplits) {
  const int64_t live = std::min(g.sh, g.kh) * std::min(g.sw, g.kw);
  const int64_t cols = g.n * ceil_div(g.h, g.sh) * ceil_div(g.w, g.sw);
  const int64_t kmax = g.fg * ceil_div(g.kh, g.sh) * ceil_div(g.kw, g.sw);
  return plan_gemm(
      im, [&](int64_t bm) { return ceil_div(g.cg, bm) * ceil_div(cols, 128) * g.groups * live; },
      ceil_div(kmax, im.ke()), g.n * g.c * g.h * g.w,
      std::min(max_splits, 65535 / (g.groups * g.sh * g.sw)));
}

// ---- imgActs for few channels per group (conv1: 3): space-to-depth
// With a stride above 1, input pixel (ry + sh*yy, rx + sw*xx) of phase (ry, rx) receives
// hid_grads row yy + d through tap i = ry + ph - sh*d (valid when 0 <= i < kh). Gathering the
// sh*sw phases as channels makes imgActs a stride-1 filterActs over the super-pixels (yy, xx):
//   tmp[n, (grp, ry, rx, c), yy, xx] = sum_{f, t, u} hid[n, grp*Fg + f, yy + dmin + t, xx + ...]
//                                      * W'[(grp, ry, rx, c), f, t, u],
//   W'[.., f, t, u] = filters[grp*Fg + f, c, ry + ph - sh*(dmin + t), rx + pw - sw*(dmin_x + u)]
// (zero where the tap falls outside the filter), then out = st*out + so*tmp, pixel by pixel
// (depth_to_space). The GEMM's M is sh*sw*Cg (48 for conv1, not 3), at the price of zero taps in
// W' and one pass over tmp; the model below weighs both.
struct S2d {
  Geo g;           // the filterActs geometry: images = hid_grads, filters = W'
  int64_t dy, dx;  // dmin: hid row yy + dy + t is tap t of super-pixel row yy
};

int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

bool s2d_geometry(const Geo& g, S2d& s) {
  if (g.sh * g.sw == 1) return false;
  s.dy = -floor_div(g.kh - 1 - g.ph, g.sh);  // ceil((ph - kh + 1) / sh)
  s.dx = -floor_div(g.kw - 1 - g.pw, g.sw);
  if (s.dy > 0 || s.dx > 0) return false;  // padding wider than the filter: no left padding
  const int64_t kdh = floor_div(g.sh - 1 + g.ph, g.sh) - s.dy + 1;
  const int64_t kdw = floor_div(g.sw - 1 + g.pw, g.sw) - s.dx + 1;
  const int64_t hs = ceil_div(g.h, g.sh), ws = ceil_div(g.w, g.sw), fs = g.c * g.sh * g.sw;
  s.g = {g.n, g.f, g.ho, g.wo, fs, kdh, kdw, 1, 1, -s.dy, -s.dx, g.groups, hs, ws, g.fg,
         fs / g.groups};
  return true;
}

// The space-to-depth form's estimate: its filterActs plan, plus the pass over tmp (read once
// and out written once more: 8 bytes per element) and two more launches (W', depth_to_space).
double s2d_seconds(const Plan& fprop, const S2d& s) {
  const double bytes = 8.0 * s.g.n * s.g.f * s.g.ho * s.g.wo;
  return fprop.seconds + 2 * kLaunchS + bytes / kDramBytesPerS;
}

}  // namespace
}  // namespace alexnet_ext::cuda::conv
