// CUDA convolution in NHWC (channels innermost): images (N, H, W, C), hidden acts/grads
// (N, Ho, Wo, F), filters (F, kh, kw, C/groups), dense row-major; the entry points of conv.h's
// *_nhwc functions. Semantics and accumulate form as conv.h (out = st*out + so*result, st == 0
// never reads out).
//
// Algorithm: version 1's direct loops with NHWC indexing (one thread per output element for
// filterActs/imgActs, one block per filter weight reducing over batch x pixels for weightActs),
// int64 index arithmetic. Obviously correct and SLOW (no tiling, no tensor cores): it is the
// correct-for-every-shape NHWC path, not a fast one. The element type is a template: fp32 read
// as is, tf32 (fp32 words rounded by cvt.rna as version 3 does, so every product is of tf32
// operands) and bf16 bits widened exactly. Products of tf32 or bf16 operands are exact in fp32
// and the sums are fp32, so the results satisfy version 3's error bound (docs/CUDA_CONV.md).
// The innermost loop walks the channels, contiguous in both operands.
#include <algorithm>
#include <cstdint>

#include "conv.h"
#include "cuda/conv_impl.cuh"
#include "cuda/mma.cuh"

namespace alexnet_ext::cuda {
namespace conv {
namespace {

enum class Elem { fp32, tf32, bf16 };

template <Elem E> struct ElemType { using type = float; };
template <> struct ElemType<Elem::bf16> { using type = uint16_t; };

// One operand as the products see it.
template <Elem E>
__device__ __forceinline__ float ld(const typename ElemType<E>::type* p) {
  if constexpr (E == Elem::fp32)
    return *p;
  else if constexpr (E == Elem::tf32)
    return __uint_as_float(to_tf32(*p));
  else
    return bf16_bits_to_float(*p);
}

template <Elem E>
__global__ void __launch_bounds__(256) filter_acts_nhwc_k(const typename ElemType<E>::type* images,
                                                          const typename ElemType<E>::type* filters,
                                                          const float* __restrict__ bias,
                                                          float* __restrict__ out, Geo g, float st,
                                                          float so) {
  for_each_element(g.n, g.ho, g.wo, g.f, [&](int64_t idx, const Idx4& o) {
    const int64_t n = o.a, oy = o.b, ox = o.c, f = o.d, grp = f / g.fg;
    const auto* img = images + n * g.h * g.w * g.c + grp * g.cg;
    const auto* wf = filters + f * g.kh * g.kw * g.cg;
    float acc = 0.f;
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t iy = oy * g.sh - g.ph + i;
      if (iy < 0 || iy >= g.h) continue;
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t ix = ox * g.sw - g.pw + j;
        if (ix < 0 || ix >= g.w) continue;
        const auto* px = img + (iy * g.w + ix) * g.c;
        const auto* tap = wf + (i * g.kw + j) * g.cg;
        for (int64_t c = 0; c < g.cg; ++c) acc = fmaf(ld<E>(px + c), ld<E>(tap + c), acc);
      }
    }
    store_scaled(out + idx, so * (acc + (bias ? bias[f] : 0.f)), st);
  });
}

// Input pixel (y, x) gathers the output pixels whose window covers it, tap by tap.
template <Elem E>
__global__ void __launch_bounds__(256) img_acts_nhwc_k(const typename ElemType<E>::type* hid,
                                                       const typename ElemType<E>::type* filters,
                                                       float* __restrict__ out, Geo g, float st,
                                                       float so) {
  for_each_element(g.n, g.h, g.w, g.c, [&](int64_t idx, const Idx4& o) {
    const int64_t n = o.a, y = o.b, x = o.c, c = o.d;
    const int64_t grp = c / g.cg, cc = c - grp * g.cg;
    float acc = 0.f;
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t ty = y + g.ph - i;  // = oy * sh for the output row that reads y via tap i
      if (ty < 0 || ty % g.sh != 0 || ty / g.sh >= g.ho) continue;
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t tx = x + g.pw - j;
        if (tx < 0 || tx % g.sw != 0 || tx / g.sw >= g.wo) continue;
        const auto* hp = hid + ((n * g.ho + ty / g.sh) * g.wo + tx / g.sw) * g.f + grp * g.fg;
        const auto* wp = filters + (grp * g.fg * g.kh * g.kw + i * g.kw + j) * g.cg + cc;
        const int64_t wstride = g.kh * g.kw * g.cg;  // next filter, same tap and channel
        for (int64_t fl = 0; fl < g.fg; ++fl) acc = fmaf(ld<E>(hp + fl), ld<E>(wp + fl * wstride), acc);
      }
    }
    store_scaled(out + idx, so * acc, st);
  });
}

// One block per filter weight (f, i, j, c) (grid-stride); the threads split the batch*pixels sum.
template <Elem E>
__global__ void __launch_bounds__(kRedThreads) weight_acts_nhwc_k(
    const typename ElemType<E>::type* images, const typename ElemType<E>::type* hid,
    float* __restrict__ out, Geo g, float st, float so) {
  __shared__ float red[kRedThreads];
  const int64_t total = g.f * g.kh * g.kw * g.cg, pix = g.ho * g.wo, rows = g.n * pix;
  for (int64_t idx = blockIdx.x; idx < total; idx += gridDim.x) {  // uniform across the block
    const Idx4 o = unflatten(idx, g.kh, g.kw, g.cg);
    const int64_t f = o.a, i = o.b, j = o.c, c = o.d, grp = f / g.fg;
    float acc = 0.f;
    for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
      const int64_t n = r / pix, p = r - n * pix;
      const int64_t oy = p / g.wo, ox = p - oy * g.wo;
      const int64_t iy = oy * g.sh - g.ph + i, ix = ox * g.sw - g.pw + j;
      if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
      acc = fmaf(ld<E>(hid + r * g.f + f),
                 ld<E>(images + ((n * g.h + iy) * g.w + ix) * g.c + grp * g.cg + c), acc);
    }
    const float sum = block_sum<kRedThreads>(acc, red);
    if (threadIdx.x == 0) store_scaled(out + idx, so * sum, st);
  }
}

template <Elem E, class T = typename ElemType<E>::type>
void fprop(const T* images, const T* filters, const float* bias, float* out, const ConvGeometry& cg,
           float st, float so, cudaStream_t stream) {
  const Geo g = geo_of(cg);
  launch(filter_acts_nhwc_k<E>, dim3(blocks_for(g.n * g.f * g.ho * g.wo, 256)), dim3(256), stream,
         images, filters, bias, out, g, st, so);
  check_launch("filter_acts (NHWC)");
}

template <Elem E, class T = typename ElemType<E>::type>
void dgrad(const T* hid, const T* filters, float* out, const ConvGeometry& cg, float st, float so,
           cudaStream_t stream) {
  const Geo g = geo_of(cg);
  launch(img_acts_nhwc_k<E>, dim3(blocks_for(g.n * g.c * g.h * g.w, 256)), dim3(256), stream, hid,
         filters, out, g, st, so);
  check_launch("img_acts (NHWC)");
}

template <Elem E, class T = typename ElemType<E>::type>
void wgrad(const T* images, const T* hid, float* out, const ConvGeometry& cg, float st, float so,
           cudaStream_t stream) {
  const Geo g = geo_of(cg);
  const int64_t weights = g.f * g.cg * g.kh * g.kw;
  launch(weight_acts_nhwc_k<E>, dim3(static_cast<unsigned>(std::min<int64_t>(weights, 65535LL * 16))),
         dim3(kRedThreads), stream, images, hid, out, g, st, so);
  check_launch("weight_acts (NHWC)");
}

}  // namespace
}  // namespace conv

using namespace conv;

void filter_acts_nhwc(const float* images, const float* filters, const float* bias, float* out,
                      const ConvGeometry& g, float st, float so, cudaStream_t stream) {
  fprop<Elem::fp32>(images, filters, bias, out, g, st, so, stream);
}
void img_acts_nhwc(const float* hid, const float* filters, float* out, const ConvGeometry& g,
                   float st, float so, cudaStream_t stream) {
  dgrad<Elem::fp32>(hid, filters, out, g, st, so, stream);
}
void weight_acts_nhwc(const float* images, const float* hid, float* out, const ConvGeometry& g,
                      float st, float so, cudaStream_t stream) {
  wgrad<Elem::fp32>(images, hid, out, g, st, so, stream);
}
void filter_acts_nhwc_tf32(const float* images, const float* filters, const float* bias,
                           float* out, const ConvGeometry& g, float st, float so,
                           cudaStream_t stream) {
  fprop<Elem::tf32>(images, filters, bias, out, g, st, so, stream);
}
void img_acts_nhwc_tf32(const float* hid, const float* filters, float* out, const ConvGeometry& g,
                        float st, float so, cudaStream_t stream) {
  dgrad<Elem::tf32>(hid, filters, out, g, st, so, stream);
}
void weight_acts_nhwc_tf32(const float* images, const float* hid, float* out,
                           const ConvGeometry& g, float st, float so, cudaStream_t stream) {
  wgrad<Elem::tf32>(images, hid, out, g, st, so, stream);
}
void filter_acts_nhwc_bf16(const uint16_t* images, const uint16_t* filters, const float* bias,
                           float* out, const ConvGeometry& g, float st, float so,
                           cudaStream_t stream) {
  fprop<Elem::bf16>(images, filters, bias, out, g, st, so, stream);
}
void img_acts_nhwc_bf16(const uint16_t* hid, const uint16_t* filters, float* out,
                        const ConvGeometry& g, float st, float so, cudaStream_t stream) {
  dgrad<Elem::bf16>(hid, filters, out, g, st, so, stream);
}
void weight_acts_nhwc_bf16(const uint16_t* images, const uint16_t* hid, float* out,
                           const ConvGeometry& g, float st, float so, cudaStream_t stream) {
  wgrad<Elem::bf16>(images, hid, out, g, st, so, stream);
}

}  // namespace alexnet_ext::cuda
