// CUDA convolution, version 1: the reference kernels (csrc/conv.h has the semantics), in both
// layouts: NCHW images and outputs with (F, C/groups, kh, kw) filters, and NHWC ((N, H, W, C),
// (N, Ho, Wo, F), (F, kh, kw, C/groups)); the accumulate form out = st*out + so*result (st == 0
// never reads out).
//   filterActs: one thread per output element looping over its window;
//   imgActs:    one thread per input element looping over the filter taps that reach it;
//   weightActs: one block per filter weight reducing over batch and pixels (block_sum).
// All index arithmetic in int64. Obviously correct, slow: for validation, the fallback of the
// dispatcher (conv.cu) for geometries outside version 2's 32-bit tile indexing, and the NHWC
// kernels (fp32; tf32/bf16 run version 3 and come here as its fallback), in every
// precision: the operand type is a template (fp32 as is, tf32 rounded as version 3's cvt.rna
// does, bf16 bits widened exactly); products of tf32/bf16 operands are exact in fp32 and the
// sums are fp32, so version 3's error bound holds.
// docs/CUDA_CONV.md has the design of every version.
#include <algorithm>
#include <cstdint>

#include "cuda/conv_impl.cuh"
#include "cuda/mma.cuh"

namespace alexnet_ext::cuda::conv {
namespace {

template <ConvElem E> struct ElemType { using type = float; };
template <> struct ElemType<ConvElem::bf16> { using type = uint16_t; };
template <ConvElem E> using elem_t = typename ElemType<E>::type;

// fp32 -> tf32 as cvt.rna.tf32.f32 (nearest, ties away from zero: add half of the dropped 13
// bits' range to the magnitude, then drop them) in plain integer ops, so that it runs before
// sm_80 too. Inf/NaN pass unchanged; a carry into the exponent is the correct rounding.
__device__ __forceinline__ float tf32_rna(float x) {
  const uint32_t b = __float_as_uint(x);
  if ((b & 0x7f800000u) == 0x7f800000u) return x;
  return __uint_as_float((b + 0x1000u) & 0xffffe000u);
}

// One operand as the products see it.
template <ConvElem E>
__device__ __forceinline__ float ld(const elem_t<E>* p) {
  if constexpr (E == ConvElem::fp32)
    return *p;
  else if constexpr (E == ConvElem::tf32)
    return tf32_rna(*p);
  else
    return bf16_bits_to_float(*p);
}

// Element offsets of the three array roles in either layout: an image-shaped array (images, or
// hid with (c, h, w) = (f, ho, wo)) and the filters.
template <bool NHWC>
__device__ __forceinline__ int64_t at4(int64_t n, int64_t c, int64_t y, int64_t x, int64_t nc,
                                       int64_t nh, int64_t nw) {
  return NHWC ? ((n * nh + y) * nw + x) * nc + c : ((n * nc + c) * nh + y) * nw + x;
}
template <bool NHWC>
__device__ __forceinline__ int64_t wat(const Geo& g, int64_t f, int64_t c, int64_t i, int64_t j) {
  return NHWC ? ((f * g.kh + i) * g.kw + j) * g.cg + c : ((f * g.cg + c) * g.kh + i) * g.kw + j;
}
// Runs fn(idx, n, c, y, x) over an (n, c, h, w)-sized array stored in the layout (idx its offset).
template <bool NHWC, class Fn>
__device__ __forceinline__ void for_each_nchw(int64_t n, int64_t c, int64_t h, int64_t w, Fn fn) {
  if constexpr (NHWC)
    for_each_element(n, h, w, c, [&](int64_t idx, const Idx4& o) { fn(idx, o.a, o.d, o.b, o.c); });
  else
    for_each_element(n, c, h, w, [&](int64_t idx, const Idx4& o) { fn(idx, o.a, o.b, o.c, o.d); });
}

template <bool NHWC, ConvElem E>
__global__ void __launch_bounds__(256) filter_acts_ref(const elem_t<E>* __restrict__ images,
                                                       const elem_t<E>* __restrict__ filters,
                                                       const float* __restrict__ bias,
                                                       float* __restrict__ out, Geo g, float st,
                                                       float so, ConvEpilogue ep) {
  for_each_nchw<NHWC>(g.n, g.f, g.ho, g.wo, [&](int64_t idx, int64_t n, int64_t f, int64_t oy,
                                                int64_t ox) {
    const int64_t c0 = f / g.fg * g.cg;
    float acc = 0.f;
    for (int64_t c = 0; c < g.cg; ++c) {
      for (int64_t i = 0; i < g.kh; ++i) {
        const int64_t iy = oy * g.sh - g.ph + i;
        if (iy < 0 || iy >= g.h) continue;
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t ix = ox * g.sw - g.pw + j;
          if (ix < 0 || ix >= g.w) continue;
          acc = fmaf(ld<E>(images + at4<NHWC>(n, c0 + c, iy, ix, g.c, g.h, g.w)),
                     ld<E>(filters + wat<NHWC>(g, f, c, i, j)), acc);
        }
      }
    }
    epilogue_store(out, idx, so * (acc + (bias ? bias[f] : 0.f)), st, ep);
  });
}

// Input pixel (y, x) gathers the output pixels whose window covers it, tap by tap.
template <bool NHWC, ConvElem E>
__global__ void __launch_bounds__(256) img_acts_ref(const elem_t<E>* __restrict__ hid,
                                                    const elem_t<E>* __restrict__ filters,
                                                    float* __restrict__ out, Geo g, float st,
                                                    float so, ConvEpilogue ep) {
  for_each_nchw<NHWC>(g.n, g.c, g.h, g.w, [&](int64_t idx, int64_t n, int64_t c, int64_t y,
                                              int64_t x) {
    const int64_t grp = c / g.cg, cc = c - grp * g.cg;
    float acc = 0.f;
    for (int64_t fl = 0; fl < g.fg; ++fl) {
      const int64_t f = grp * g.fg + fl;
      for (int64_t i = 0; i < g.kh; ++i) {
        const int64_t ty = y + g.ph - i;  // = oy * sh for the output row that reads y via tap i
        if (ty < 0 || ty % g.sh != 0 || ty / g.sh >= g.ho) continue;
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t tx = x + g.pw - j;
          if (tx < 0 || tx % g.sw != 0 || tx / g.sw >= g.wo) continue;
          acc = fmaf(ld<E>(hid + at4<NHWC>(n, f, ty / g.sh, tx / g.sw, g.f, g.ho, g.wo)),
                     ld<E>(filters + wat<NHWC>(g, f, cc, i, j)), acc);
        }
      }
    }
    epilogue_store(out, idx, so * acc, st, ep);
  });
}

// One block per filter weight (grid-stride over weights); the threads split the batch*pixels sum.
template <bool NHWC, ConvElem E>
__global__ void __launch_bounds__(kRedThreads) weight_acts_ref(const elem_t<E>* __restrict__ images,
                                                               const elem_t<E>* __restrict__ hid,
                                                               float* __restrict__ out, Geo g,
                                                               float st, float so) {
  __shared__ float red[kRedThreads];
  const int64_t total = g.f * g.cg * g.kh * g.kw, pix = g.ho * g.wo;
  const int64_t rows = g.n * pix;
  for (int64_t idx = blockIdx.x; idx < total; idx += gridDim.x) {  // uniform across the block
    // (f, c, i, j) from the weight's offset in its layout
    const Idx4 o = NHWC ? unflatten(idx, g.kh, g.kw, g.cg) : unflatten(idx, g.cg, g.kh, g.kw);
    const int64_t f = o.a, c = NHWC ? o.d : o.b, i = NHWC ? o.b : o.c, j = NHWC ? o.c : o.d;
    const int64_t c0 = f / g.fg * g.cg;
    float acc = 0.f;
    for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
      const int64_t n = r / pix, p = r - n * pix;
      const int64_t oy = p / g.wo, ox = p - oy * g.wo;
      const int64_t iy = oy * g.sh - g.ph + i, ix = ox * g.sw - g.pw + j;
      if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
      acc = fmaf(ld<E>(hid + at4<NHWC>(n, f, oy, ox, g.f, g.ho, g.wo)),
                 ld<E>(images + at4<NHWC>(n, c0 + c, iy, ix, g.c, g.h, g.w)), acc);
    }
    const float sum = block_sum<kRedThreads>(acc, red);
    if (threadIdx.x == 0) store_scaled(out + idx, so * sum, st);
  }
}

template <bool NHWC, ConvElem E>
void fprop(const void* images, const void* filters, const float* bias, float* out, const Geo& g,
           float st, float so, const ConvEpilogue& ep, cudaStream_t stream) {
  launch(filter_acts_ref<NHWC, E>, dim3(blocks_for(g.n * g.f * g.ho * g.wo, 256)), dim3(256),
         stream, static_cast<const elem_t<E>*>(images), static_cast<const elem_t<E>*>(filters),
         bias, out, g, st, so, ep);
  check_launch("filter_acts");
}

template <bool NHWC, ConvElem E>
void dgrad(const void* hid, const void* filters, float* out, const Geo& g, float st, float so,
           const ConvEpilogue& ep, cudaStream_t stream) {
  launch(img_acts_ref<NHWC, E>, dim3(blocks_for(g.n * g.c * g.h * g.w, 256)), dim3(256), stream,
         static_cast<const elem_t<E>*>(hid), static_cast<const elem_t<E>*>(filters), out, g, st,
         so, ep);
  check_launch("img_acts");
}

template <bool NHWC, ConvElem E>
void wgrad(const void* images, const void* hid, float* out, const Geo& g, float st, float so,
           cudaStream_t stream) {
  const int64_t weights = g.f * g.cg * g.kh * g.kw;
  launch(weight_acts_ref<NHWC, E>,
         dim3(static_cast<unsigned>(std::min<int64_t>(weights, 65535LL * 16))), dim3(kRedThreads),
         stream, static_cast<const elem_t<E>*>(images), static_cast<const elem_t<E>*>(hid), out,
         g, st, so);
  check_launch("weight_acts");
}

}  // namespace

void filter_acts_v1(const float* images, const float* filters, const float* bias, float* out,
                    const Geo& g, float st, float so, const ConvEpilogue& ep, cudaStream_t stream) {
  fprop<false, ConvElem::fp32>(images, filters, bias, out, g, st, so, ep, stream);
}

void img_acts_v1(const float* hid, const float* filters, float* out, const Geo& g, float st,
                 float so, const ConvEpilogue& ep, cudaStream_t stream) {
  dgrad<false, ConvElem::fp32>(hid, filters, out, g, st, so, ep, stream);
}

void weight_acts_v1(const float* images, const float* hid, float* out, const Geo& g, float st,
                    float so, cudaStream_t stream) {
  wgrad<false, ConvElem::fp32>(images, hid, out, g, st, so, stream);
}

void filter_acts_nhwc_v1(const void* images, const void* filters, const float* bias, float* out,
                         const Geo& g, float st, float so, const ConvEpilogue& ep,
                         cudaStream_t stream, ConvElem e) {
  decltype(&fprop<true, ConvElem::fp32>) const table[] = {
      fprop<true, ConvElem::fp32>, fprop<true, ConvElem::tf32>, fprop<true, ConvElem::bf16>};
  table[static_cast<int>(e)](images, filters, bias, out, g, st, so, ep, stream);
}

// The instantiation for the run-time element type: table[e].
void img_acts_nhwc_v1(const void* hid, const void* filters, float* out, const Geo& g, float st,
                      float so, const ConvEpilogue& ep, cudaStream_t stream, ConvElem e) {
  decltype(&dgrad<true, ConvElem::fp32>) const table[] = {
      dgrad<true, ConvElem::fp32>, dgrad<true, ConvElem::tf32>, dgrad<true, ConvElem::bf16>};
  table[static_cast<int>(e)](hid, filters, out, g, st, so, ep, stream);
}

void weight_acts_nhwc_v1(const void* images, const void* hid, float* out, const Geo& g, float st,
                         float so, cudaStream_t stream, ConvElem e) {
  decltype(&wgrad<true, ConvElem::fp32>) const table[] = {
      wgrad<true, ConvElem::fp32>, wgrad<true, ConvElem::tf32>, wgrad<true, ConvElem::bf16>};
  table[static_cast<int>(e)](images, hid, out, g, st, so, stream);
}

}  // namespace alexnet_ext::cuda::conv
