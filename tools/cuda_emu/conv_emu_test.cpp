// Runs the CUDA convolution's kernels (csrc/cuda/conv*.cu, both versions) on the CPU through
// tools/cuda_emu and compares every pass, in every accumulate form, with a float64 direct
// reference written here.
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

// ---------------------------------------------------------------- float64 references
Ref ref_fprop(const Vec& x, const Vec& wt, const float* bias, const ConvGeometry& g) {
  Ref y(g.n * g.f * g.ho * g.wo, 0.0);
  if (bias)
    for (size_t k = 0; k < y.size(); ++k) y[k] = bias[(k / (g.ho * g.wo)) % g.f];
  for_each_product(g, [&](int64_t xi, int64_t wi, int64_t yi) { y[yi] += double(x[xi]) * wt[wi]; });
  return y;
}

// Scatter form (a different formulation from the kernels' gather).
Ref ref_dgrad(const Vec& gy, const Vec& wt, const ConvGeometry& g) {
  Ref gx(g.n * g.c * g.h * g.w, 0.0);
  for_each_product(g, [&](int64_t xi, int64_t wi, int64_t yi) { gx[xi] += double(gy[yi]) * wt[wi]; });
  return gx;
}

Ref ref_wgrad(const Vec& x, const Vec& gy, const ConvGeometry& g) {
  Ref gw(g.f * g.cg() * g.kh * g.kw, 0.0);
  for_each_product(g, [&](int64_t xi, int64_t wi, int64_t yi) { gw[wi] += double(gy[yi]) * x[xi]; });
  return gw;
}

// ---------------------------------------------------------------- checking
int failures = 0, checks = 0;

void expect_close(const Vec& got, const Ref& want, int64_t reduction, const std::string& what) {
  ++checks;
  double err = 0, ref = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) {
      std::printf("FAIL %s: non-finite value at %zu\n", what.c_str(), i);
      ++failures;
      return;
    }
    err += (got[i] - want[i]) * (got[i] - want[i]);
    ref += want[i] * want[i];
  }
  const double rel = std::sqrt(err) / std::max(std::sqrt(ref), 1e-30);
  const double bound = 8.0 * std::numeric_limits<float>::epsilon() *
                       std::sqrt(static_cast<double>(std::max<int64_t>(reduction, 1)));
  if (rel > bound) {
    std::printf("FAIL %s: relative error %.3g > %.3g\n", what.c_str(), rel, bound);
    ++failures;
  }
}

Ref combine(double st, const Vec& prev, double so, const Ref& r) {
  Ref out(r.size());
  for (size_t i = 0; i < r.size(); ++i) out[i] = st * prev[i] + so * r[i];
  return out;
}

// Runs `call(out, st, so)` in the three accumulate forms against `result`.
template <class Call>
void check_forms(std::mt19937_64& rng, const Ref& result, int64_t reduction, const std::string& what,
                 Call call) {
  Vec out(result.size(), std::numeric_limits<float>::quiet_NaN());
  call(out.data(), 0.f, 1.f);
  cudaDeviceSynchronize();  // the emulator's streams run only when waited for
  expect_close(out, result, reduction, what + " into NaN out");
  const Vec prev = random_vec(rng, result.size());
  out = prev;
  call(out.data(), 1.f, 1.f);
  cudaDeviceSynchronize();
  expect_close(out, combine(1, prev, 1, result), reduction, what + " 1/1");
  out = prev;
  call(out.data(), 0.5f, -2.f);
  cudaDeviceSynchronize();
  expect_close(out, combine(0.5, prev, -2, result), reduction, what + " 0.5/-2");
}

void run_case(std::mt19937_64& rng, const Case& k, bool with_reference) {
  const ConvGeometry g = geometry(k);
  const Vec x = random_vec(rng, g.n * g.c * g.h * g.w);
  const Vec wt = random_vec(rng, g.f * g.cg() * g.kh * g.kw);
  const Vec b = random_vec(rng, g.f);
  const Vec gy = random_vec(rng, g.n * g.f * g.ho * g.wo);
  const Ref y = ref_fprop(x, wt, nullptr, g), yb = ref_fprop(x, wt, b.data(), g);
  const Ref gx = ref_dgrad(gy, wt, g), gw = ref_wgrad(x, gy, g);
  Ref gb(g.f, 0.0);
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t f = 0; f < g.f; ++f)
      for (int64_t p = 0; p < g.p(); ++p) gb[f] += gy[(n * g.f + f) * g.p() + p];

  for (int version : {2, 1}) {
    if (version == 1 && !with_reference) continue;
    gpu::set_conv_kernel(version);
    const std::string tag = k.name + " v" + std::to_string(version) + " ";
    check_forms(rng, y, g.k(), tag + "filter_acts", [&](float* o, float st, float so) {
      gpu::filter_acts(x.data(), wt.data(), nullptr, o, g, st, so, nullptr);
    });
    check_forms(rng, yb, g.k(), tag + "filter_acts+bias", [&](float* o, float st, float so) {
      gpu::filter_acts(x.data(), wt.data(), b.data(), o, g, st, so, nullptr);
    });
    check_forms(rng, gx, g.fg() * g.kh * g.kw, tag + "img_acts", [&](float* o, float st, float so) {
      gpu::img_acts(gy.data(), wt.data(), o, g, st, so, nullptr);
    });
    check_forms(rng, gw, g.n * g.p(), tag + "weight_acts", [&](float* o, float st, float so) {
      gpu::weight_acts(x.data(), gy.data(), o, g, st, so, nullptr);
    });
    check_forms(rng, gb, g.n * g.p(), tag + "conv_bias_grad", [&](float* o, float st, float so) {
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
  std::printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
