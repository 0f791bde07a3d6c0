// CUDA bias gradient of a convolution (conv.h's conv_bias_grad): out[f] = st*out[f] + so * sum
// of hid_grads[n, f, :] over images and pixels (NCHW; float32 or bf16 hid_grads, fp32 sums).
// Version 1: one block per filter. Version 2+: the batch split so that ~4 blocks per SM run, the
// partial sums reduced in a second pass in a fixed order (deterministic, no float atomics).
#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include "conv.h"
#include "cuda/conv_impl.cuh"
#include "real.h"

namespace alexnet_ext::cuda {
namespace {
using namespace conv;

// Bias gradient: block (f, s) sums hid_grads[n, f, :] over images n in [s*n_per, (s+1)*n_per);
// warp w takes images w, w+8, ..., its lanes walk the contiguous pixel row. With final != 0
// (one split) it writes out[f] in the accumulate form, else the raw partial part[s*F + f].
// T: float, or uint16_t bf16 bits (widened exactly; the same fp32 sums).
template <class T>
__global__ void __launch_bounds__(kRedThreads) bias_grad_kernel(
    const T* __restrict__ hid, float* __restrict__ dst, int64_t n, int64_t f, int64_t pixels,
    int64_t n_per, float st, float so, int final_write) {
  __shared__ float red[kRedThreads];
  const int64_t fi = blockIdx.x, s = blockIdx.y;
  const int64_t n_begin = s * n_per, n_end = (n < n_begin + n_per ? n : n_begin + n_per);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float acc = 0.f;
  for (int64_t img = n_begin + warp; img < n_end; img += kRedThreads / 32) {
    const T* row = hid + (img * f + fi) * pixels;
    for (int64_t p = lane; p < pixels; p += 32) acc += to_f32(row[p]);
  }
  const float sum = block_sum<kRedThreads>(acc, red);
  if (threadIdx.x == 0) {
    if (final_write)
      store_scaled(dst + fi, so * sum, st);
    else
      dst[s * f + fi] = sum;
  }
}

// Both element types: T float or uint16_t (bf16 bits).
template <class T>
void bias_grad(const T* hid, float* out, int64_t n, int64_t f, int64_t pixels, float st, float so,
               cudaStream_t stream) {
  if (n < 1 || f < 1 || pixels < 1) throw std::invalid_argument("conv_bias_grad: empty hid_grads");
  if (f > 0x7fffffffLL) throw std::invalid_argument("conv_bias_grad: more than 2^31-1 filters");
  // Version 1: one block per filter. Version 2: the batch split so that ~4 blocks per SM run,
  // partial sums reduced in a second pass in a fixed order (deterministic).
  int64_t splits = 1;
  if (fast_kernels()) {
    splits = std::min(ceil_div(4 * sm_count(), f), ceil_div(n, 8));  // >= 8 images per split
    splits = std::max<int64_t>(1, std::min<int64_t>(splits, 65535));
  }
  const int64_t n_per = ceil_div(n, splits);
  splits = ceil_div(n, n_per);
  if (splits == 1) {
    launch(bias_grad_kernel<T>, dim3(static_cast<unsigned>(f), 1), dim3(kRedThreads), stream, hid,
           out, n, f, pixels, n_per, st, so, 1);
    check_launch("conv_bias_grad");
    return;
  }
  Workspace parts(static_cast<size_t>(splits * f) * sizeof(float), stream);
  launch(bias_grad_kernel<T>, dim3(static_cast<unsigned>(f), static_cast<unsigned>(splits)),
         dim3(kRedThreads), stream, hid, parts.get<float>(), n, f, pixels, n_per, st, so, 0);
  check_launch("conv_bias_grad");
  reduce_parts(parts.get<float>(), out, f, splits, st, so, stream,
               "conv_bias_grad (split reduction)");
}

}  // namespace

void conv_bias_grad(const float* hid, float* out, int64_t n, int64_t f, int64_t pixels, float st,
                    float so, cudaStream_t stream) {
  bias_grad(hid, out, n, f, pixels, st, so, stream);
}

void conv_bias_grad(const uint16_t* hid, float* out, int64_t n, int64_t f, int64_t pixels,
                    float st, float so, cudaStream_t stream) {
  bias_grad(hid, out, n, f, pixels, st, so, stream);
}

}  // namespace alexnet_ext::cuda
