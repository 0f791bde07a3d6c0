// Runs the CUDA convolution's kernels (csrc/cuda/conv*.cu, versions 1 and 2) on the CPU through
// tools/cuda_emu and compares every pass, in every accumulate form, with a float64 direct
// reference written here: element by element within the derived bound of conv_harness.h
// (u = 2^-24), and normwise.
// Usage: conv_emu_test [seed] [random_cases] [fixed cases: all | none | name substring];
// exit status 1 on any mismatch.
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "conv_harness.h"

using namespace harness;

namespace {

// ---------------------------------------------------------------- checking
// Two checks per call: element-wise within gamma_{K+8} * sum|a b| at u = 2^-24 (conv_harness.h:
// fp32 FMA chains in any order, split-K included), and the normwise error of the whole output
// within 8 eps sqrt(K) times the norm of the magnitudes (st*prev, so*sum|a b|, so*bias): the
// statistical size of K roundings. Relative to the result's own norm it would fail where the
// sums cancel (a bias gradient of random-signed gradients, say), not where the kernel errs.
const double kU = std::ldexp(1.0, -24);

void expect_close(const Vec& got, const Result& want, const Ref* bias_of, const Vec* prev,
                  double st, double so, int64_t reduction, const std::string& what) {
  ++checks;
  double err = 0, ref = 0;
  for (size_t i = 0; i < want.val.size(); ++i) {
    if (!std::isfinite(got[i])) {
      std::printf("FAIL %s: non-finite value at %zu\n", what.c_str(), i);
      ++failures;
      return;
    }
    const double r = st * (prev ? (*prev)[i] : 0.0) + so * (want.val[i] + (bias_of ? (*bias_of)[i] : 0.0));
    const double m = std::fabs(st * (prev ? (*prev)[i] : 0.0)) +
                     std::fabs(so) * (want.mag[i] + (bias_of ? std::fabs((*bias_of)[i]) : 0.0));
    err += (got[i] - r) * (got[i] - r);
    ref += m * m;
  }
  const double rel = std::sqrt(err) / std::max(std::sqrt(ref), 1e-30);
  const double bound = 8.0 * std::numeric_limits<float>::epsilon() *
                       std::sqrt(static_cast<double>(std::max<int64_t>(reduction, 1)));
  if (rel > bound) {
    std::printf("FAIL %s: relative error %.3g > %.3g\n", what.c_str(), rel, bound);
    ++failures;
  }
}

// Runs `call(out, st, so)` in the three accumulate forms against `want` (+ bias_of).
template <class Call>
void forms(std::mt19937_64& rng, const Result& want, const Ref* bias_of, int64_t reduction,
           const std::string& what, Call call) {
  check_forms(rng, want, bias_of, reduction, kU, what, call,
              [&](const Vec& out, const Vec* prev, double st, double so, const std::string& w) {
                expect_close(out, want, bias_of, prev, st, so, reduction, w);
              });
}

void run_case(std::mt19937_64& rng, const Case& k, bool with_reference) {
  const ConvGeometry g = geometry(k);
  const Vec x = random_vec(rng, g.n * g.c * g.h * g.w);
  const Vec wt = random_vec(rng, g.f * g.cg() * g.kh * g.kw);
  const Vec b = random_vec(rng, g.f);
  const Vec gy = random_vec(rng, g.n * g.f * g.ho * g.wo);
  Result y(gy.size()), gx(x.size()), gw(wt.size()), gb(g.f);
  reference_sums(g, x, wt, gy, y, gx, gw);
  Ref bias_of(gy.size());
  for (size_t i = 0; i < bias_of.size(); ++i) bias_of[i] = b[(i / g.p()) % g.f];
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t f = 0; f < g.f; ++f)
      for (int64_t p = 0; p < g.p(); ++p) {
        gb.val[f] += gy[(n * g.f + f) * g.p() + p];
        gb.mag[f] += std::fabs(gy[(n * g.f + f) * g.p() + p]);
      }

  for (int version : {2, 1}) {
    if (version == 1 && !with_reference) continue;
    gpu::set_conv_kernel(version);
    const std::string tag = k.name + " v" + std::to_string(version) + " ";
    forms(rng, y, nullptr, g.k(), tag + "filter_acts", [&](float* o, float st, float so) {
      gpu::filter_acts(x.data(), wt.data(), nullptr, o, g, st, so, {}, nullptr);
    });
    forms(rng, y, &bias_of, g.k(), tag + "filter_acts+bias", [&](float* o, float st, float so) {
      gpu::filter_acts(x.data(), wt.data(), b.data(), o, g, st, so, {}, nullptr);
    });
    forms(rng, gx, nullptr, g.fg() * g.kh * g.kw, tag + "img_acts", [&](float* o, float st, float so) {
      gpu::img_acts(gy.data(), wt.data(), o, g, st, so, {}, nullptr);
    });
    forms(rng, gw, nullptr, g.n * g.p(), tag + "weight_acts", [&](float* o, float st, float so) {
      gpu::weight_acts(x.data(), gy.data(), o, g, st, so, nullptr);
    });
    forms(rng, gb, nullptr, g.n * g.p(), tag + "conv_bias_grad", [&](float* o, float st, float so) {
      gpu::conv_bias_grad(gy.data(), o, g.n, g.f, g.p(), st, so, nullptr);
    });
  }
  print_case("ok-ish", k, g, failures);
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<Case> cases = {
      // name, N, C, H, W, F, kh, kw, sh, sw, ph, pw, groups, ceil
      {"conv1_like_11x11_s4", 2, 3, 35, 35, 96, 11, 11, 4, 4, 2, 2, 1, false},
      {"conv2_like_5x5_g2", 2, 16, 9, 9, 20, 5, 5, 1, 1, 2, 2, 2, false},
      {"fg130_crosses_tile", 1, 5, 6, 7, 130, 3, 3, 1, 1, 1, 1, 1, false},
      {"cg70_groups2_dgrad_rows", 2, 140, 5, 5, 6, 3, 3, 1, 1, 1, 1, 2, false},
      {"stride3_1x1_empty_phases", 2, 3, 10, 11, 4, 1, 1, 3, 3, 0, 0, 1, false},
      {"stride4_2x2_ceil", 2, 3, 11, 13, 5, 2, 2, 4, 3, 1, 0, 1, true},
      {"pad_larger_than_kernel", 1, 2, 4, 5, 3, 2, 2, 1, 2, 3, 2, 1, false},
      {"long_reduction_splitk", 8, 3, 24, 24, 4, 3, 3, 1, 1, 0, 0, 1, false},
      {"pointwise_1x1", 2, 7, 6, 5, 9, 1, 1, 1, 1, 0, 0, 1, false},
      {"filter_covers_image", 2, 3, 5, 5, 4, 5, 5, 1, 1, 0, 0, 1, false},
      {"many_columns_300", 3, 2, 10, 10, 3, 1, 3, 1, 1, 0, 1, 1, true},
      {"nonsquare_stride_pad", 2, 4, 11, 17, 6, 3, 5, 2, 1, 1, 2, 1, false},
  };
  // The reference weightActs runs a block per weight: too slow to emulate for the big cases.
  failures += run_cases(
      argc, argv, 10, cases,
      [](std::mt19937_64& rng, const Case& k) {
        const ConvGeometry g = geometry(k);
        run_case(rng, k, g.f * g.k() <= 1000);
      },
      [](std::mt19937_64& rng, int i) { return random_case(rng, i, 19, 4); });
  std::printf("%d checks, %d failures (worst |err|/bound %.3g)\n", checks, failures, worst_ratio);
  return failures ? 1 : 0;
}
