// Prints docs/CUDA_CONV.md's wave tables from the dispatcher's own model (csrc/cuda/conv_plan.cuh):
// for AlexNet's five conv layers at batch 128, per pass and kernel set (version 2 fp32, version 3
// tf32 and bf16), the tile, blocks, split-K count and waves the dispatcher picks, before (one
// split: the tile model alone) and after (tile, split-K and, for imgActs, space-to-depth), with
// the model's time estimate. The SM count is the emulator's (EMU_SMS, default 132: an H100 SXM).
//   EMU_HARNESS=conv_waves tools/cuda_emu/run.sh
// Assumes every layer is within the fast paths' limits (true at these sizes).
#include <cmath>
#include <cstdio>

#include "conv_harness.h"  // links the conv sources: their workspace allocator
#include "cuda/conv_plan.cuh"

namespace conv = alexnet_ext::cuda::conv;

namespace {

conv::Geo layer(int64_t c, int64_t hw, int64_t f, int64_t k, int64_t s, int64_t p, int64_t groups) {
  const int64_t o = (hw + 2 * p - k) / s + 1;
  return {128, c, hw, hw, f, k, k, s, s, p, p, groups, o, o, c / groups, f / groups};
}

// "tile, blocks x splits, waves (efficiency), model ms" of a plan.
void cell(const conv::Plan& pl) {
  const double waves = pl.waves();
  std::printf(" %sx128, %lld x %lld, %.2f (%.0f%%), %.3f |", pl.bm128 ? "128" : "64",
              (long long)pl.blocks, (long long)pl.splits, waves, 100.0 * waves / std::ceil(waves),
              pl.seconds * 1e3);
}

}  // namespace

int main() {
  const char* names[] = {"conv1", "conv2", "conv3", "conv4", "conv5"};
  const conv::Geo layers[] = {layer(3, 224, 96, 11, 4, 2, 1), layer(96, 27, 256, 5, 1, 2, 2),
                              layer(256, 13, 384, 3, 1, 1, 1), layer(384, 13, 384, 3, 1, 1, 2),
                              layer(384, 13, 256, 3, 1, 1, 2)};
  const conv::Impl impls[] = {conv::kSimt, conv::kTf32, conv::kBf16};
  const char* impl_names[] = {"v2 fp32", "v3 tf32", "v3 bf16"};
  std::printf("SMs: %d. Cells: tile, blocks x splits, waves (efficiency), model ms\n\n",
              alexnet_ext::cuda::sm_count());
  std::printf("| layer | kernels | filterActs before | after | imgActs before | after |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (int l = 0; l < 5; ++l)
    for (int v = 0; v < 3; ++v) {
      const conv::Geo& g = layers[l];
      const conv::Impl& im = impls[v];
      std::printf("| %s | %s |", names[l], impl_names[v]);
      cell(conv::plan_fprop(im, g, 1));
      cell(conv::plan_fprop(im, g));
      const conv::Plan d = conv::plan_dgrad(im, g);
      cell(conv::plan_dgrad(im, g, 1));
      conv::S2d s;
      conv::Plan q;
      if (conv::s2d_geometry(g, s) &&
          conv::s2d_seconds(q = conv::plan_fprop(im, s.g), s) < d.seconds) {
        std::printf(" space-to-depth, M = %lld, K = %lld:", (long long)s.g.fg,
                    (long long)(s.g.cg * s.g.kh * s.g.kw));
        q.seconds = conv::s2d_seconds(q, s);
        cell(q);
      } else {
        cell(d);
      }
      std::printf("\n");
    }
  return 0;
}
