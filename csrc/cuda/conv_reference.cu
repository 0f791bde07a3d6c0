// CUDA convolution, version 1: the reference kernels (csrc/conv.h has the semantics).
// NCHW images and outputs, (F, C/groups, kh, kw) filters, fp32, the accumulate form
// out = st*out + so*result (st == 0 never reads out).
//   filterActs: one thread per output element looping over its window;
//   imgActs:    one thread per input element looping over the filter taps that reach it;
//   weightActs: one block per filter weight reducing over batch and pixels (block_sum).
// All index arithmetic in int64. Obviously correct, slow: for validation, and the fallback of the
// dispatcher (conv.cu) for geometries outside version 2's 32-bit tile indexing.
// docs/CUDA_CONV.md has the design of both versions.
#include <algorithm>
#include <cstdint>

#include "cuda/conv_impl.cuh"

namespace alexnet_ext::cuda::conv {
namespace {
__global__ void __launch_bounds__(256) filter_acts_ref(const float* __restrict__ images,
                                                       const float* __restrict__ filters,
                                                       const float* __restrict__ bias,
                                                       float* __restrict__ out, Geo g, float st,
                                                       float so) {
  for_each_element(g.n, g.f, g.ho, g.wo, [&](int64_t idx, const Idx4& o) {
    const int64_t n = o.a, f = o.b, oy = o.c, ox = o.d, grp = f / g.fg;
    const float* img = images + (n * g.c + grp * g.cg) * g.h * g.w;
    const float* wf = filters + f * g.cg * g.kh * g.kw;
    float acc = 0.f;
    for (int64_t c = 0; c < g.cg; ++c) {
      for (int64_t i = 0; i < g.kh; ++i) {
        const int64_t iy = oy * g.sh - g.ph + i;
        if (iy < 0 || iy >= g.h) continue;
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t ix = ox * g.sw - g.pw + j;
          if (ix < 0 || ix >= g.w) continue;
          acc = fmaf(img[(c * g.h + iy) * g.w + ix], wf[(c * g.kh + i) * g.kw + j], acc);
        }
      }
    }
    store_scaled(out + idx, so * (acc + (bias ? bias[f] : 0.f)), st);
  });
}

// Input pixel (y, x) gathers the output pixels whose window covers it, tap by tap.
__global__ void __launch_bounds__(256) img_acts_ref(const float* __restrict__ hid,
                                                    const float* __restrict__ filters,
                                                    float* __restrict__ out, Geo g, float st,
                                                    float so) {
  for_each_element(g.n, g.c, g.h, g.w, [&](int64_t idx, const Idx4& o) {
    const int64_t n = o.a, c = o.b, y = o.c, x = o.d;
    const int64_t grp = c / g.cg, cc = c - grp * g.cg;
    float acc = 0.f;
    for (int64_t fl = 0; fl < g.fg; ++fl) {
      const int64_t f = grp * g.fg + fl;
      const float* hf = hid + (n * g.f + f) * g.ho * g.wo;
      const float* wf = filters + (f * g.cg + cc) * g.kh * g.kw;
      for (int64_t i = 0; i < g.kh; ++i) {
        const int64_t ty = y + g.ph - i;  // = oy * sh for the output row that reads y via tap i
        if (ty < 0 || ty % g.sh != 0 || ty / g.sh >= g.ho) continue;
        const int64_t oy = ty / g.sh;
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t tx = x + g.pw - j;
          if (tx < 0 || tx % g.sw != 0 || tx / g.sw >= g.wo) continue;
          acc = fmaf(hf[oy * g.wo + tx / g.sw], wf[i * g.kw + j], acc);
        }
      }
    }
    store_scaled(out + idx, so * acc, st);
  });
}

// One block per filter weight (grid-stride over weights); the threads split the batch*pixels sum.
__global__ void __launch_bounds__(kRedThreads) weight_acts_ref(const float* __restrict__ images,
                                                               const float* __restrict__ hid,
                                                               float* __restrict__ out, Geo g,
                                                               float st, float so) {
  __shared__ float red[kRedThreads];
  const int64_t total = g.f * g.cg * g.kh * g.kw, pix = g.ho * g.wo;
  const int64_t rows = g.n * pix;
  for (int64_t idx = blockIdx.x; idx < total; idx += gridDim.x) {  // uniform across the block
    const Idx4 o = unflatten(idx, g.cg, g.kh, g.kw);
    const int64_t f = o.a, c = o.b, i = o.c, j = o.d;
    const int64_t grp = f / g.fg;
    float acc = 0.f;
    for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
      const int64_t n = r / pix, p = r - n * pix;
      const int64_t oy = p / g.wo, ox = p - oy * g.wo;
      const int64_t iy = oy * g.sh - g.ph + i, ix = ox * g.sw - g.pw + j;
      if (iy < 0 || iy >= g.h || ix < 0 || ix >= g.w) continue;
      acc = fmaf(hid[(n * g.f + f) * pix + p],
                 images[((n * g.c + grp * g.cg + c) * g.h + iy) * g.w + ix], acc);
    }
    const float sum = block_sum<kRedThreads>(acc, red);
    if (threadIdx.x == 0) store_scaled(out + idx, so * sum, st);
  }
}

}  // namespace

void filter_acts_v1(const float* images, const float* filters, const float* bias, float* out,
                    const Geo& g, float st, float so, cudaStream_t stream) {
  launch(filter_acts_ref, dim3(blocks_for(g.n * g.f * g.ho * g.wo, 256)), dim3(256), stream, images,
         filters, bias, out, g, st, so);
  check_launch("filter_acts");
}

void img_acts_v1(const float* hid, const float* filters, float* out, const Geo& g, float st,
                 float so, cudaStream_t stream) {
  launch(img_acts_ref, dim3(blocks_for(g.n * g.c * g.h * g.w, 256)), dim3(256), stream, hid, filters,
         out, g, st, so);
  check_launch("img_acts");
}

void weight_acts_v1(const float* images, const float* hid, float* out, const Geo& g, float st,
                    float so, cudaStream_t stream) {
  const int64_t weights = g.f * g.cg * g.kh * g.kw;
  launch(weight_acts_ref, dim3(static_cast<unsigned>(std::min<int64_t>(weights, 65535LL * 16))),
         dim3(kRedThreads), stream, images, hid, out, g, st, so);
  check_launch("weight_acts");
}

}  // namespace alexnet_ext::cuda::conv
