// What the two conv emulator harnesses share (conv_emu_test.cpp: versions 1 and 2, fp32;
// conv_mma_test.cpp: version 3, tf32/bf16): the case table and random geometries, emulated
// device memory, the conv workspaces' allocator, the float64 loop over every product a
// convolution multiplies, and the command line. Each harness has its own references and checks.
// Header-only for exactly one translation unit (the harness's): it defines device_alloc.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <new>
#include <utility>
#include <random>
#include <string>
#include <vector>

#include "conv.h"
#include "cuda/conv_impl.cuh"
#include "cuda/memory.h"
#include "cuda_runtime.h"

using alexnet_ext::ConvGeometry;
using alexnet_ext::conv_out_size;
namespace gpu = alexnet_ext::cuda;

// The conv workspaces' memory (the package build links memory.cu's caching allocator instead).
namespace alexnet_ext::cuda {
void* device_alloc(size_t bytes, int, cudaStream_t) {
  void* p = nullptr;  // exactly `bytes`, so that AddressSanitizer sees any overrun
  if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) throw std::bad_alloc();
  return p;
}
void device_free(void* ptr) { cudaFree(ptr); }
}  // namespace alexnet_ext::cuda

namespace harness {

struct Case {
  std::string name;
  int64_t n, c, h, w, f, kh, kw, sh, sw, ph, pw, groups;
  bool ceil_mode;
};

// Every case goes through the binding's memory-safety check (conv.h) before a kernel sees it.
inline ConvGeometry geometry(const Case& k) {
  const ConvGeometry g{k.n, k.c, k.h, k.w, k.f, k.kh, k.kw, k.sh, k.sw, k.ph, k.pw, k.groups,
                       conv_out_size(k.h, k.kh, k.sh, k.ph, k.ceil_mode),
                       conv_out_size(k.w, k.kw, k.sw, k.pw, k.ceil_mode)};
  if (const char* err = alexnet_ext::conv_geometry_error(g)) {
    std::fprintf(stderr, "case %s: %s\n", k.name.c_str(), err);
    std::abort();
  }
  return g;
}

// Buffers the kernels read and write are emulated device memory (cudaMalloc registers them with
// the emulator, whose launches reject host pointers); the harness reads them directly, which the
// emulator allows because its device memory is host memory.
template <class T>
struct DeviceAllocator {
  using value_type = T;
  DeviceAllocator() = default;
  template <class U>
  DeviceAllocator(const DeviceAllocator<U>&) {}
  T* allocate(size_t n) {
    void* p = nullptr;
    if (cudaMalloc(&p, n * sizeof(T)) != cudaSuccess) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { cudaFree(p); }
  bool operator==(const DeviceAllocator&) const { return true; }
  bool operator!=(const DeviceAllocator&) const { return false; }
};
using Vec = std::vector<float, DeviceAllocator<float>>;
using Vec16 = std::vector<uint16_t, DeviceAllocator<uint16_t>>;
using Ref = std::vector<double>;

inline Vec random_vec(std::mt19937_64& rng, size_t n) {
  std::normal_distribution<float> d;
  Vec v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// ---------------------------------------------------------------- checking
inline int failures = 0, checks = 0;
inline double worst_ratio = 0;  // largest |err| / bound seen

// A float64 reference: the exact sum of every output's products (val) and of their magnitudes.
struct Result {
  Ref val, mag;
  explicit Result(size_t n) : val(n, 0.0), mag(n, 0.0) {}
};

// Element-wise bound. Any summation order of L terms in a precision with unit roundoff u gives
// |fl(sum) - sum| <= gamma_L * sum|a b|, gamma_L = L u / (1 - L u) (Higham, Accuracy and
// Stability, 2nd ed., 4.2; an FMA chain rounds once per step, so it is covered). Terms: the
// products, the split-K partials (any split count and order: only the order changes) and the
// epilogue's bias add, scale and accumulate form, so
//   |got - want| <= gamma_{terms+8} * (|so| (sum_k |a_k b_k| + |bias|) + |st * target|).
// The caller gives u and the products' exactness (fp32: u = 2^-24, the products rounded inside
// the FMA; version 3 see conv_mma_test.cpp). Output must be finite (st = 0 never reads NaNs).
inline void expect_within(const Vec& got, const Result& want, const Vec* prev, double st,
                          double so, const Ref* bias_of, int64_t terms, double u,
                          const std::string& what) {
  ++checks;
  const double L = static_cast<double>(terms + 8);
  const double gamma = L * u / (1 - L * u);
  for (size_t i = 0; i < want.val.size(); ++i) {
    const double b = bias_of ? (*bias_of)[i] : 0.0;
    const double t = prev ? (*prev)[i] : 0.0;
    const double ref = st * t + so * (want.val[i] + b);
    const double bound =
        gamma * (std::fabs(so) * (want.mag[i] + std::fabs(b)) + std::fabs(st * t)) + 1e-37;
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

// The three accumulate forms: st = 0 into NaNs, 1/1, 0.5/-2. After each call the element-wise
// check, then extra(out, prev or null, st, so, what) for a harness's own further checks.
template <class Call, class Extra>
void check_forms(std::mt19937_64& rng, const Result& want, const Ref* bias_of, int64_t terms,
                 double u, const std::string& what, Call call, Extra extra) {
  Vec out(want.val.size(), std::numeric_limits<float>::quiet_NaN());
  call(out.data(), 0.f, 1.f);
  cudaDeviceSynchronize();  // the emulator's streams run only when waited for
  expect_within(out, want, nullptr, 0, 1, bias_of, terms, u, what + " into NaN out");
  extra(out, static_cast<const Vec*>(nullptr), 0.0, 1.0, what + " into NaN out");
  const Vec prev = random_vec(rng, want.val.size());
  for (auto [st, so] : {std::pair<float, float>{1.f, 1.f}, {0.5f, -2.f}}) {
    out = prev;
    call(out.data(), st, so);
    cudaDeviceSynchronize();
    const std::string form = what + " " + std::to_string(st) + "/" + std::to_string(so);
    expect_within(out, want, &prev, st, so, bias_of, terms, u, form);
    extra(out, &prev, st, so, form);
  }
}

// Calls tap(x index, w index, y index) for every (input pixel, filter tap, output pixel) triple a
// convolution multiplies, padding skipped: the one loop nest of every float64 reference.
template <class Tap>
void for_each_product(const ConvGeometry& g, Tap tap) {
  for (int64_t n = 0; n < g.n; ++n)
    for (int64_t f = 0; f < g.f; ++f) {
      const int64_t grp = f / g.fg();
      for (int64_t oy = 0; oy < g.ho; ++oy)
        for (int64_t ox = 0; ox < g.wo; ++ox)
          for (int64_t c = 0; c < g.cg(); ++c)
            for (int64_t i = 0; i < g.kh; ++i)
              for (int64_t j = 0; j < g.kw; ++j) {
                const int64_t iy = oy * g.sh - g.ph + i, ix = ox * g.sw - g.pw + j;
                if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
                tap(((n * g.c + grp * g.cg() + c) * g.h + iy) * g.w + ix,
                    ((f * g.cg() + c) * g.kh + i) * g.kw + j, ((n * g.f + f) * g.ho + oy) * g.wo + ox);
              }
    }
}

// The three passes' references at once: y (filterActs, no bias) from x and wt, gx (imgActs,
// scatter form: not the kernels' gather) from gy and wt, gw (weightActs) from x and gy.
template <class X, class W, class G>
void reference_sums(const ConvGeometry& g, const X& x, const W& wt, const G& gy, Result& y,
                    Result& gx, Result& gw) {
  for_each_product(g, [&](int64_t xi, int64_t wi, int64_t yi) {
    const double p = double(x[xi]) * double(wt[wi]), q = double(gy[yi]) * double(wt[wi]);
    const double s = double(gy[yi]) * double(x[xi]);
    y.val[yi] += p;
    y.mag[yi] += std::fabs(p);
    gx.val[xi] += q;
    gx.mag[xi] += std::fabs(q);
    gw.val[wi] += s;
    gw.mag[wi] += std::fabs(s);
  });
}

inline void print_case(const char* status, const Case& k, const ConvGeometry& g, int failures) {
  std::printf("%s %-28s N=%lld C=%lld %lldx%lld F=%lld k=%lldx%lld s=%lld,%lld p=%lld,%lld "
              "g=%lld ceil=%d -> %lldx%lld (failures so far %d)\n",
              status, k.name.c_str(), (long long)g.n, (long long)g.c, (long long)g.h,
              (long long)g.w, (long long)g.f, (long long)g.kh, (long long)g.kw, (long long)g.sh,
              (long long)g.sw, (long long)g.ph, (long long)g.pw, (long long)g.groups,
              int(k.ceil_mode), (long long)g.ho, (long long)g.wo, failures);
  std::fflush(stdout);
}

// Sides up to max_side, up to max_per_group channels and filters per group.
inline Case random_case(std::mt19937_64& rng, int i, int max_side, int max_per_group) {
  auto u = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  Case k;
  k.name = "random" + std::to_string(i);
  k.groups = u(1, 3);
  k.kh = u(1, 6);
  k.kw = u(1, 6);
  k.sh = u(1, 4);
  k.sw = u(1, 4);
  k.ph = u(0, 2);
  k.pw = u(0, 2);
  k.h = u(std::max<int>(1, k.kh - 2 * k.ph), max_side);
  k.w = u(std::max<int>(1, k.kw - 2 * k.pw), max_side);
  k.n = u(1, 3);
  k.c = k.groups * u(1, max_per_group);
  k.f = k.groups * u(1, max_per_group);
  k.ceil_mode = u(0, 1);
  return k;
}

// Cases for the dispatch paths a full run must reach: split-K filterActs/imgActs grids (at any
// SM count) and imgActs by space-to-depth (at a few SMs; run_cases).
const std::vector<Case> kPathCases = {
    // name, N, C, H, W, F, kh, kw, sh, sw, ph, pw, groups, ceil
    // K = 1125 (filterActs) and 1075 (imgActs): 141/135 K-steps in version 2, 36/34 (tf32) and
    // 18/17 (bf16) in version 3: split-K at every SM count, odd M and N.
    {"splitk_odd_5x5", 2, 45, 7, 7, 43, 5, 5, 1, 1, 2, 2, 1, false},
    // Grouped and strided: split-K with phases and groups in the grid's z.
    {"splitk_groups3_stride2", 2, 3 * 21, 6, 5, 3 * 17, 5, 4, 2, 1, 2, 1, 3, true},
    // Few channels per group and a stride: imgActs by space-to-depth (odd sides, ceil mode,
    // uneven phases and padding on one axis only).
    {"s2d_groups2_stride3x2_ceil", 2, 2 * 2, 13, 11, 2 * 5, 5, 4, 3, 2, 1, 0, 2, true},
};

// argv: [seed] [random_cases] [fixed cases: all | none | name substring]. Runs run(rng, case)
// on the selected fixed cases, then the random ones; with "all" it also checks that the
// dispatcher took the split-K and space-to-depth paths. Returns the number of failures added.
template <class Run, class Random>
int run_cases(int argc, char** argv, int default_randoms, std::vector<Case> cases, Run run,
              Random random) {
  const unsigned long seed = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 1;
  const int randoms = argc > 2 ? std::atoi(argv[2]) : default_randoms;
  const std::string fixed = argc > 3 ? argv[3] : "all";
  std::mt19937_64 rng(seed);
  cases.insert(cases.end(), kPathCases.begin(), kPathCases.end());
  if (fixed == "none") cases.clear();
  if (fixed != "all" && fixed != "none")
    cases.erase(std::remove_if(cases.begin(), cases.end(),
                               [&](const Case& k) { return k.name.find(fixed) == std::string::npos; }),
                cases.end());
  for (int i = 0; i < randoms; ++i) cases.push_back(random(rng, i));
  for (const Case& k : cases) run(rng, k);
  if (fixed != "all") return 0;
  const gpu::conv::PathCounts paths = gpu::conv::path_counts();
  std::printf("dispatch paths: %lld split-K grids, %lld space-to-depth imgActs\n",
              (long long)paths.split_k, (long long)paths.s2d);
  // Space-to-depth wins once the phases' grid takes more than a wave; on 132 SMs these small
  // cases fit in one (split-K then beats its longer K), so it is required at a few SMs only
  // (tests/test_conv_cuda_emu.py runs EMU_SMS=1 and 132).
  const bool want_s2d = gpu::sm_count() <= 4;
  if (paths.split_k > 0 && (paths.s2d > 0 || !want_s2d)) return 0;
  std::printf("FAIL: the fixed cases did not reach split-K%s\n",
              want_s2d ? " and space-to-depth" : "");
  return 1;
}

}  // namespace harness
