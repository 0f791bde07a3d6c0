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
// Split-K (weightActs always, filterActs/imgActs when the dispatcher's wave model splits them)
// only reorders the fp32 sum, and imgActs by space-to-depth only adds zero products (exact), so
// the bound holds for every path unchanged.
// With scale_targets = 0 the output starts as NaN (never read) and must come back finite.
// Every pass is also checked in NHWC (images, filters, hid_grads and the references transposed),
// and every NHWC call must have run version 3 (path_counts().nhwc_mma).
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

// (a, b, c, d) -> (a, c, d, b): NCHW images/outputs and (F, Cg, kh, kw) filters in NHWC order.
template <class V>
V to_nhwc(const V& v, int64_t a, int64_t b, int64_t c, int64_t d) {
  V r(v.size());
  for (int64_t i = 0; i < a; ++i)
    for (int64_t j = 0; j < b; ++j)
      for (int64_t y = 0; y < c * d; ++y) r[(i * c * d + y) * b + j] = v[(i * b + j) * c * d + y];
  return r;
}

// ---------------------------------------------------------------- checking
// The references (run_case, conv_harness.h's reference_sums) are computed on the rounded inputs.
// fp32 accumulation with exact products; 2^-23, not 2^-24: tensor cores may truncate inside
// their adder (the header's bound, the derivation above).
const double kU = std::ldexp(1.0, -23);

template <class Call>
void forms(std::mt19937_64& rng, const Result& want, const Ref* bias_of, int64_t terms,
           const std::string& what, Call call) {
  check_forms(rng, want, bias_of, terms, kU, what, call, [](const Vec&, const Vec*, double, double,
                                                            const std::string&) {});
}

int64_t nhwc_calls = 0;  // NHWC tf32/bf16 calls made: all within version 3's limits

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
    reference_sums(g, xr, wr, gr, y, gx, gw);
    const std::string tag = k.name + (bf16 ? " bf16 " : " tf32 ");
    const int64_t kf = g.k(), kd = g.fg() * g.kh * g.kw, kw_ = g.n * g.p();
    forms(rng, y, nullptr, kf, tag + "filter_acts", [&](float* o, float st, float so) {
      if (bf16)
        gpu::filter_acts_bf16(x16.data(), w16.data(), nullptr, o, g, st, so, {}, nullptr);
      else
        gpu::filter_acts_tf32(x.data(), wt.data(), nullptr, o, g, st, so, {}, nullptr);
    });
    forms(rng, y, &bias_of, kf, tag + "filter_acts+bias", [&](float* o, float st, float so) {
      if (bf16)
        gpu::filter_acts_bf16(x16.data(), w16.data(), b.data(), o, g, st, so, {}, nullptr);
      else
        gpu::filter_acts_tf32(x.data(), wt.data(), b.data(), o, g, st, so, {}, nullptr);
    });
    forms(rng, gx, nullptr, kd, tag + "img_acts", [&](float* o, float st, float so) {
      if (bf16)
        gpu::img_acts_bf16(g16.data(), w16.data(), o, g, st, so, {}, nullptr);
      else
        gpu::img_acts_tf32(gy.data(), wt.data(), o, g, st, so, {}, nullptr);
    });
    forms(rng, gw, nullptr, kw_, tag + "weight_acts", [&](float* o, float st, float so) {
      if (bf16)
        gpu::weight_acts_bf16(x16.data(), g16.data(), o, g, st, so, nullptr);
      else
        gpu::weight_acts_tf32(x.data(), gy.data(), o, g, st, so, nullptr);
    });
    // NHWC filterActs: version 3's NHWC B loader (16-byte chunks when Cg is a multiple of 8
    // bf16 / 4 tf32 channels, else element-wise), NHWC output, bias per f = i % F.
    Result yn(y.val.size());
    yn.val = to_nhwc(y.val, g.n, g.f, g.ho, g.wo);
    yn.mag = to_nhwc(y.mag, g.n, g.f, g.ho, g.wo);
    Ref bias_nhwc(bias_of.size());
    for (size_t i = 0; i < bias_nhwc.size(); ++i) bias_nhwc[i] = b[i % g.f];
    const Vec xn = to_nhwc(x, g.n, g.c, g.h, g.w), wn = to_nhwc(wt, g.f, g.cg(), g.kh, g.kw);
    const Vec16 xn16 = to_nhwc(x16, g.n, g.c, g.h, g.w);
    const Vec16 wn16 = to_nhwc(w16, g.f, g.cg(), g.kh, g.kw);
    forms(rng, yn, &bias_nhwc, kf, tag + "filter_acts NHWC+bias",
          [&](float* o, float st, float so) {
      ++nhwc_calls;
      if (bf16)
        gpu::filter_acts_nhwc(xn16.data(), wn16.data(), b.data(), o, g, st, so, {}, nullptr,
                              gpu::ConvElem::bf16);
      else
        gpu::filter_acts_nhwc(xn.data(), wn.data(), b.data(), o, g, st, so, {}, nullptr,
                              gpu::ConvElem::tf32);
    });
    // NHWC imgActs (k = (ii, jj, f) per phase, 16-byte hid_grads chunks when F/groups allows)
    // and weightActs (columns (i, j, c)): results in NHWC order.
    Result gxn(gx.val.size()), gwn(gw.val.size());
    gxn.val = to_nhwc(gx.val, g.n, g.c, g.h, g.w);
    gxn.mag = to_nhwc(gx.mag, g.n, g.c, g.h, g.w);
    gwn.val = to_nhwc(gw.val, g.f, g.cg(), g.kh, g.kw);
    gwn.mag = to_nhwc(gw.mag, g.f, g.cg(), g.kh, g.kw);
    const Vec gyn = to_nhwc(gy, g.n, g.f, g.ho, g.wo);
    const Vec16 gyn16 = to_nhwc(g16, g.n, g.f, g.ho, g.wo);
    const gpu::ConvElem elem = bf16 ? gpu::ConvElem::bf16 : gpu::ConvElem::tf32;
    forms(rng, gxn, nullptr, kd, tag + "img_acts NHWC", [&](float* o, float st, float so) {
      ++nhwc_calls;
      gpu::img_acts_nhwc(bf16 ? static_cast<const void*>(gyn16.data()) : gyn.data(),
                         bf16 ? static_cast<const void*>(wn16.data()) : wn.data(), o, g, st, so,
                         {}, nullptr, elem);
    });
    forms(rng, gwn, nullptr, kw_, tag + "weight_acts NHWC", [&](float* o, float st, float so) {
      ++nhwc_calls;
      gpu::weight_acts_nhwc(bf16 ? static_cast<const void*>(xn16.data()) : xn.data(),
                            bf16 ? static_cast<const void*>(gyn16.data()) : gyn.data(), o, g,
                            st, so, nullptr, elem);
    });
    if (!bf16) {  // the version switch routes the float entry points to version 3 (tf32)
      gpu::set_conv_kernel(3);
      forms(rng, y, &bias_of, kf, tag + "filter_acts (set_conv_kernel 3)",
                  [&](float* o, float st, float so) {
                    gpu::filter_acts(x.data(), wt.data(), b.data(), o, g, st, so, {}, nullptr);
                  });
      forms(rng, gx, nullptr, kd, tag + "img_acts (set_conv_kernel 3)",
                  [&](float* o, float st, float so) {
                    gpu::img_acts(gy.data(), wt.data(), o, g, st, so, {}, nullptr);
                  });
      forms(rng, gw, nullptr, kw_, tag + "weight_acts (set_conv_kernel 3)",
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
      // channels per group multiples of 8: NHWC's 16-byte chunks (with groups, with split-K)
      {"cg16_groups2_nhwc_chunks", 2, 32, 7, 7, 24, 3, 3, 1, 1, 1, 1, 2, false},
      {"cg48_splitk_nhwc_chunks", 2, 48, 7, 7, 40, 5, 5, 1, 1, 2, 2, 1, false},
  };
  failures += run_cases(argc, argv, 6, cases, run_case,
                        [](std::mt19937_64& rng, int i) { return random_case(rng, i, 17, 9); });
  const int64_t nhwc_mma = gpu::conv::path_counts().nhwc_mma;
  std::printf("NHWC calls: %lld, on version 3: %lld\n", (long long)nhwc_calls,
              (long long)nhwc_mma);
  if (nhwc_mma != nhwc_calls) {
    std::printf("FAIL: an NHWC tf32/bf16 call did not run version 3\n");
    ++failures;
  }
  std::printf("%d checks, %d failures (worst |err|/bound %.3g)\n", checks, failures, worst_ratio);
  return failures ? 1 : 0;
}
