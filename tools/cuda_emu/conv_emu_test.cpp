// Runs the CUDA convolution's kernels (csrc/cuda/conv*.cu, both versions) on the CPU through
// tools/cuda_emu and compares every pass, in every accumulate form, with a float64 direct
// reference written here.
// Usage: conv_emu_test [seed] [random_cases] [fixed cases: all | none | name substring];
// exit status 1 on any mismatch.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "conv.h"
#include "cuda_runtime.h"
#include "cuda/memory.h"

using alexnet_ext::ConvGeometry;
using alexnet_ext::conv_out_size;
namespace gpu = alexnet_ext::cuda;

namespace {

struct Case {
  std::string name;
  int64_t n, c, h, w, f, kh, kw, sh, sw, ph, pw, groups;
  bool ceil_mode;
};

// Every case goes through the binding's memory-safety check (conv.h) before a kernel sees it.
ConvGeometry geometry(const Case& k) {
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
using Ref = std::vector<double>;

}  // namespace

// The conv workspaces' memory (the package build links memory.cu's caching allocator instead).
namespace alexnet_ext::cuda {
void* device_alloc(size_t bytes, int, cudaStream_t) {
  void* p = nullptr;  // exactly `bytes`, so that AddressSanitizer sees any overrun
  if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) throw std::bad_alloc();
  return p;
}
void device_free(void* ptr) { cudaFree(ptr); }
}  // namespace alexnet_ext::cuda

namespace {

// ---------------------------------------------------------------- float64 references
// Calls tap(x index, w index, y index) for every (input pixel, filter tap, output pixel) triple a
// convolution multiplies, padding skipped: the one loop nest of the three references below.
template <class Tap>
void for_each_tap(const ConvGeometry& g, Tap tap) {
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

Ref ref_fprop(const Vec& x, const Vec& wt, const float* bias, const ConvGeometry& g) {
  Ref y(g.n * g.f * g.ho * g.wo, 0.0);
  if (bias)
    for (size_t k = 0; k < y.size(); ++k) y[k] = bias[(k / (g.ho * g.wo)) % g.f];
  for_each_tap(g, [&](int64_t xi, int64_t wi, int64_t yi) { y[yi] += double(x[xi]) * wt[wi]; });
  return y;
}

// Scatter form (a different formulation from the kernels' gather).
Ref ref_dgrad(const Vec& gy, const Vec& wt, const ConvGeometry& g) {
  Ref gx(g.n * g.c * g.h * g.w, 0.0);
  for_each_tap(g, [&](int64_t xi, int64_t wi, int64_t yi) { gx[xi] += double(gy[yi]) * wt[wi]; });
  return gx;
}

Ref ref_wgrad(const Vec& x, const Vec& gy, const ConvGeometry& g) {
  Ref gw(g.f * g.cg() * g.kh * g.kw, 0.0);
  for_each_tap(g, [&](int64_t xi, int64_t wi, int64_t yi) { gw[wi] += double(gy[yi]) * x[xi]; });
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

Vec random_vec(std::mt19937_64& rng, size_t n) {
  std::normal_distribution<float> d;
  Vec v(n);
  for (auto& x : v) x = d(rng);
  return v;
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
  std::printf("ok-ish %-28s N=%lld C=%lld %lldx%lld F=%lld k=%lldx%lld s=%lld,%lld p=%lld,%lld "
              "g=%lld ceil=%d -> %lldx%lld (failures so far %d)\n",
              k.name.c_str(), (long long)g.n, (long long)g.c, (long long)g.h, (long long)g.w,
              (long long)g.f, (long long)g.kh, (long long)g.kw, (long long)g.sh, (long long)g.sw,
              (long long)g.ph, (long long)g.pw, (long long)g.groups, int(k.ceil_mode),
              (long long)g.ho, (long long)g.wo, failures);
  std::fflush(stdout);
}

Case random_case(std::mt19937_64& rng, int i) {
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
  k.h = u(std::max<int>(1, k.kh - 2 * k.ph), 19);
  k.w = u(std::max<int>(1, k.kw - 2 * k.pw), 19);
  k.n = u(1, 3);
  k.c = k.groups * u(1, 4);
  k.f = k.groups * u(1, 4);
  k.ceil_mode = u(0, 1);
  return k;
}

}  // namespace

int main(int argc, char** argv) {
  const unsigned long seed = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 1;
  const int randoms = argc > 2 ? std::atoi(argv[2]) : 10;
  const std::string fixed = argc > 3 ? argv[3] : "all";  // "all", "none" or a name substring
  std::mt19937_64 rng(seed);
  std::vector<Case> cases;
  if (fixed != "none") {
    cases = {
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
  }
  if (fixed != "all" && fixed != "none")
    cases.erase(std::remove_if(cases.begin(), cases.end(),
                               [&](const Case& k) { return k.name.find(fixed) == std::string::npos; }),
                cases.end());
  for (int i = 0; i < randoms; ++i) cases.push_back(random_case(rng, i));
  // The reference weightActs runs a block per weight: too slow to emulate for the big cases.
  for (const Case& k : cases) {
    const ConvGeometry g = geometry(k);
    run_case(rng, k, g.f * g.k() <= 1000);
  }
  std::printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
