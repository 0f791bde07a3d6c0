// Runs version 3 of the CUDA convolution (csrc/cuda/conv_mma.cu: tensor-core implicit GEMM, tf32
// and bf16) on the CPU through tools/cuda_emu and compares every pass, in every accumulate form,
// with a float64 reference computed on the ROUNDED inputs (tf32: round to nearest, ties away,
// 10 mantissa bits, as cvt.rna; bf16: the data are bf16 values to begin with).
//
// Error bound, per output element. With rounded inputs every product a*b is exact in fp32 (tf32:
// 11 x 11 significand bits, bf16: 8 x 8), so only the fp32 accumulation errs. Any summation order
// of L terms in a precision with unit roundoff u satisfies |fl(sum) - sum| <= gamma_L * sum|a b|,
// gamma_L = L u / (1 - L u) (Higham, Accuracy and Stability, 2nd ed., section 4.2). Terms here:
// the K products, the split-K partials and the epilogue's bias add, scale and accumulate form, so
//   |got - want| <= gamma_{K+8} * (|so| (sum_k |a_k b_k| + |bias|) + |st * target|)
// with u = 2^-23 rather than 2^-24 because tensor cores may truncate inside their adder (the
// emulator rounds each mma once, which the bound covers a fortiori). A wrong fragment layout,
// swizzle or gather gives errors of the size of the terms themselves, far above this bound.
// With scale_targets = 0 the output starts as NaN (never read) and must come back finite.
// Usage: conv_mma_test [seed] [random_cases] [fixed cases: all | none | name substring];
// exit status 1 on any failure.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "conv_harness.h"

using namespace harness;

namespace {

// ---------------------------------------------------------------- rounding (written here, not
// taken from mma.cuh, so that the kernels' conversions are checked against an independent one)
uint32_t bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}
float from_bits(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}
// tf32, round to nearest with ties away from zero: add half an ulp to the magnitude, truncate.
float round_tf32(float x) { return from_bits((bits(x) + 0x1000u) & 0xffffe000u); }
// bf16 by round to nearest even (finite inputs).
uint16_t to_bf16(float x) {
  const uint32_t u = bits(x);
  const uint32_t lsb = (u >> 16) & 1u;
  return static_cast<uint16_t>((u + 0x7fffu + lsb) >> 16);
}
double bf16_value(uint16_t h) { return from_bits(static_cast<uint32_t>(h) << 16); }

// ---------------------------------------------------------------- float64 references
// One loop over every (image, filter, output pixel, tap) visits each product once; the three
// passes scatter it to their own output: val += a*b, mag += |a*b|.
struct Result {
  Ref val, mag;
  explicit Result(size_t n) : val(n, 0.0), mag(n, 0.0) {}
};

// ---------------------------------------------------------------- checking
int failures = 0, checks = 0;
double worst_ratio = 0;  // largest |err| / bound seen

void expect_within(const Vec& got, const Result& want, const Vec* prev, double st, double so,
                   const Ref* bias_of, int64_t terms, const std::string& what) {
  ++checks;
  const double u = std::ldexp(1.0, -23), L = static_cast<double>(terms + 8);
  const double gamma = L * u / (1 - L * u);
  for (size_t i = 0; i < want.val.size(); ++i) {
    const double b = bias_of ? (*bias_of)[i] : 0.0;
    const double t = prev ? (*prev)[i] : 0.0;
    const double ref = st * t + so * (want.val[i] + b);
    const double bound = gamma * (std::fabs(so) * (want.mag[i] + std::fabs(b)) + std::fabs(st * t)) +
                         1e-37;
    const double err = std::fabs(static_cast<double>(got[i]) - ref);
    if (!std::isfinite(got[i]) || !(err <= bound)) {
      std::printf("FAIL %s: element %zu got %.9g want %.9g (|err| %.3g > bound %.3g)\n",
                  what.c_str(), i, static_cast<double>(got[i]), ref, err, bound);
      ++failures;
      return;
    }
    worst_ratio = std::max(worst_ratio, err / bound);
  }
}

// The three accumulate forms: st = 0 into NaNs, 1/1, 0.5/-2.
template <class Call>
void check_forms(std::mt19937_64& rng, const Result& want, const Ref* bias_of, int64_t terms,
                 const std::string& what, Call call) {
  Vec out(want.val.size(), std::numeric_limits<float>::quiet_NaN());
  call(out.data(), 0.f, 1.f);
  cudaDeviceSynchronize();  // the emulator's streams run only when waited for
  expect_within(out, want, nullptr, 0, 1, bias_of, terms, what + " into NaN out");
  const Vec prev = random_vec(rng, want.val.size());
  for (auto [st, so] : {std::pair<float, float>{1.f, 1.f}, {0.5f, -2.f}}) {
    out = prev;
    call(out.data(), st, so);
    cudaDeviceSynchronize();
    expect_within(out, want, &prev, st, so, bias_of, terms,
                  what + " " + std::to_string(st) + "/" + std::to_string(so));
  }
}

void run_case(std::mt19937_64& rng, const Case& k) {
  const ConvGeometry g = geometry(k);
  const Vec x = random_vec(rng, g.n * g.c * g.h * g.w);
  const Vec wt = random_vec(rng, g.f * g.cg() * g.kh * g.kw);
  const Vec b = random_vec(rng, g.f);
  const Vec gy = random_vec(rng, g.n * g.f * g.ho * g.wo);
  Ref bias_of(g.n * g.f * g.ho * g.wo);
  for (size_t i = 0; i < bias_of.size(); ++i) bias_of[i] = b[(i / g.p()) % g.f];

  for (const bool bf16 : {false, true}) {
    // The values the kernels multiply: tf32-rounded fp32, or the bf16 arrays themselves.
    std::vector<double> xr(x.size()), wr(wt.size()), gr(gy.size());
    Vec16 x16(x.size()), w16(wt.size()), g16(gy.size());
    auto prep = [&](const Vec& v, std::vector<double>& r, Vec16& h) {
      for (size_t i = 0; i < v.size(); ++i) {
        h[i] = to_bf16(v[i]);
        r[i] = bf16 ? bf16_value(h[i]) : round_tf32(v[i]);
      }
    };
    prep(x, xr, x16);
    prep(wt, wr, w16);
    prep(gy, gr, g16);
    Result y(gy.size()), gx(x.size()), gw(wt.size());
    for_each_product(g, [&](int64_t xi, int64_t wi, int64_t yi) {
      const double p = xr[xi] * wr[wi], q = gr[yi] * wr[wi], s = gr[yi] * xr[xi];
      y.val[yi] += p;
      y.mag[yi] += std::fabs(p);
      gx.val[xi] += q;
      gx.mag[xi] += std::fabs(q);
      gw.val[wi] += s;
      gw.mag[wi] += std::fabs(s);
    });
    const std::string tag = k.name + (bf16 ? " bf16 " : " tf32 ");
    const int64_t kf = g.k(), kd = g.fg() * g.kh * g.kw, kw_ = g.n * g.p();
    check_forms(rng, y, nullptr, kf, tag + "filter_acts", [&](float* o, float st, float so) {
      if (bf16)
        gpu::filter_acts_bf16(x16.data(), w16.data(), nullptr, o, g, st, so, nullptr);
      else
        gpu::filter_acts_tf32(x.data(), wt.data(), nullptr, o, g, st, so, nullptr);
    });
    check_forms(rng, y, &bias_of, kf, tag + "filter_acts+bias", [&](float* o, float st, float so) {
      if (bf16)
        gpu::filter_acts_bf16(x16.data(), w16.data(), b.data(), o, g, st, so, nullptr);
      else
        gpu::filter_acts_tf32(x.data(), wt.data(), b.data(), o, g, st, so, nullptr);
    });
    check_forms(rng, gx, nullptr, kd, tag + "img_acts", [&](float* o, float st, float so) {
      if (bf16)
        gpu::img_acts_bf16(g16.data(), w16.data(), o, g, st, so, nullptr);
      else
        gpu::img_acts_tf32(gy.data(), wt.data(), o, g, st, so, nullptr);
    });
    check_forms(rng, gw, nullptr, kw_, tag + "weight_acts", [&](float* o, float st, float so) {
      if (bf16)
        gpu::weight_acts_bf16(x16.data(), g16.data(), o, g, st, so, nullptr);
      else
        gpu::weight_acts_tf32(x.data(), gy.data(), o, g, st, so, nullptr);
    });
    if (!bf16) {  // the version switch routes the float entry points to version 3 (tf32)
      gpu::set_conv_kernel(3);
      check_forms(rng, y, &bias_of, kf, tag + "filter_acts (set_conv_kernel 3)",
                  [&](float* o, float st, float so) {
                    gpu::filter_acts(x.data(), wt.data(), b.data(), o, g, st, so, nullptr);
                  });
      check_forms(rng, gx, nullptr, kd, tag + "img_acts (set_conv_kernel 3)",
                  [&](float* o, float st, float so) {
                    gpu::img_acts(gy.data(), wt.data(), o, g, st, so, nullptr);
                  });
      check_forms(rng, gw, nullptr, kw_, tag + "weight_acts (set_conv_kernel 3)",
                  [&](float* o, float st, float so) {
                    gpu::weight_acts(x.data(), gy.data(), o, g, st, so, nullptr);
                  });
      gpu::set_conv_kernel(2);
    }
  }
  print_case("done", k, g, failures);
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<Case> cases = {
      // name, N, C, H, W, F, kh, kw, sh, sw, ph, pw, groups, ceil
      {"conv1_like_11x11_s4", 1, 3, 27, 27, 20, 11, 11, 4, 4, 2, 2, 1, false},
      {"conv2_like_5x5_g2_ksteps", 2, 32, 7, 7, 20, 5, 5, 1, 1, 2, 2, 2, false},  // K = 400
      {"fg130_crosses_tile", 1, 5, 6, 7, 130, 3, 3, 1, 1, 1, 1, 1, false},
      {"cg70_groups2_dgrad_rows", 1, 140, 5, 5, 6, 3, 3, 1, 1, 1, 1, 2, false},
      {"stride3_1x1_empty_phases", 2, 3, 10, 11, 4, 1, 1, 3, 3, 0, 0, 1, false},
      {"stride4_2x2_ceil", 2, 3, 11, 13, 5, 2, 2, 4, 3, 1, 0, 1, true},
      {"pad_larger_than_kernel", 1, 2, 4, 5, 3, 2, 2, 1, 2, 3, 2, 1, false},
      {"long_reduction_splitk", 8, 3, 24, 24, 4, 3, 3, 1, 1, 0, 0, 1, false},
      {"columns_300_ceil", 3, 2, 10, 10, 3, 1, 3, 1, 1, 0, 1, 1, true},
      {"nonsquare_stride_pad", 2, 4, 11, 17, 6, 3, 5, 2, 1, 1, 2, 1, false},
  };
  failures += run_cases(argc, argv, 6, cases, run_case,
                        [](std::mt19937_64& rng, int i) { return random_case(rng, i, 17, 9); });
  std::printf("%d checks, %d failures (worst |err|/bound %.3g)\n", checks, failures, worst_ratio);
  return failures ? 1 : 0;
}
