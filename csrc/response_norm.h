// Local response normalization across kernel maps (the paper's "response normalization"):
//   denoms[n,i,y,x] = k + a * sum_{j in window(i)} x[n,j,y,x]^2
//   y[n,i,y,x]      = x[n,i,y,x] * denoms[n,i,y,x]^(-beta)
// window(i) = channels j with i - size/2 <= j <= i + (size-1)/2 (integer division), clipped to
// [0, C-1]. For odd sizes that is the paper's centred window; for even sizes it holds one more
// channel below i than above, PyTorch's LocalResponseNorm rule. a is the coefficient the caller
// passes: the paper's alpha, or alpha/size for the Caffe / cuda-convnet / PyTorch convention.
//
// Backward (grad_x never aliases an input; the inputs are read only):
//   grad_x[j] = grad_y[j] * denoms[j]^(-beta)
//             - 2 a beta x[j] * sum_{i : j in window(i)} grad_y[i] * y[i] / denoms[i]
// where i ranges over j - (size-1)/2 .. j + size/2 (the mirrored window), clipped.
//
// Layout: x, y, denoms, grads (N, C, H, W) dense row-major float32, or with nhwc (N, H, W, C)
// (channels innermost: a pixel's window is contiguous). The same arithmetic in either layout.
// relu (undo only): x is a ReLU output and grad_x is zeroed where x <= 0 in the same pass
// (relu.h's relu_undo_select): response_norm_undo then relu_undo, bit for bit.
// Both directions are one pass per pixel column with a running window sum over channels, kept in
// double so that adding and removing channels does not drift (its error stays near 2^-53 times the
// largest window sum seen at that pixel, far below float32 resolution of denoms since denoms >= k).
// Where a running sum is not finite (NaN or inf input) it is recomputed over the window, so a
// non-finite value reaches exactly the outputs whose windows hold it. OpenMP splits the work over
// (image, block of pixels).
#pragma once
#include <cmath>
#include <cstdint>

#include "host_device.h"

#ifdef ALEXNET_EXT_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace alexnet_ext {

// d^(-beta) for d > 0 in float, the same on both sides: beta = 0.75 (the paper's) as
// 1 / (sqrt(d) * sqrt(sqrt(d))) with correctly rounded sqrt, division and product (bit-identical
// on CPU and GPU), others through powf (equal up to its last bit). A template parameter so the
// GPU kernel for 0.75 carries no general pow.
template <bool kThreeQuarters>
ALEXNET_EXT_HD inline float lrn_inv_pow(float d, float beta) {
#ifdef __CUDA_ARCH__
  if (kThreeQuarters) {
    const float s = __fsqrt_rn(d);
    return __fdiv_rn(1.f, __fmul_rn(s, __fsqrt_rn(s)));
  }
  return powf(d, -beta);
#else
  if (kThreeQuarters) {
    const float s = std::sqrt(d);
    return 1.f / (s * std::sqrt(s));
  }
  return std::pow(d, -beta);
#endif
}

struct ResponseNormParams {
  int64_t size;  // window length in channels, >= 1
  double k;      // additive constant, > 0
  double a;      // coefficient of the window sum of squares (alpha or alpha/size), >= 0
  double beta;   // exponent, >= 0
};

namespace cpu {
// y, denoms: outputs of the shape of x, (n, c, pixels) with pixels = H*W.
void response_norm(const float* x, float* y, float* denoms, int64_t n, int64_t c, int64_t pixels,
                   const ResponseNormParams& p, bool nhwc);
// grad_x: output; grad_y, x, y, denoms are what response_norm read and wrote. y may be null: it
// is then recomputed as x * denoms^(-beta), bit for bit the y the forward wrote (the undo of
// response_norm_max_pool.h, whose forward never stores y).
void response_norm_undo(const float* grad_y, const float* x, const float* y, const float* denoms,
                        float* grad_x, int64_t n, int64_t c, int64_t pixels,
                        const ResponseNormParams& p, bool nhwc, bool relu);
}  // namespace cpu

#ifdef ALEXNET_EXT_WITH_CUDA
// The same two functions on device pointers, queued on `stream` (cuda/response_norm.cu): one
// thread per pixel column walks the channels with the running double sum, one fused pass over
// memory each way (forward: 3 tensors of traffic, undo: 5).
//
// Fusing with the next op (AlexNet's norm1 -> pool1, norm2 -> pool2): response_norm_max_pool.h
// does this forward and the 3x3/2 max pool in one pass over tiles of pooled outputs with their
// halo, writing only the pooled values, switches and denoms. Its undo is max_pool_undo, then
// response_norm_undo with y = null, recomputing the LRN output as x * denoms^(-beta) instead of
// reading it. Not done: a fused undo gathering the pool's gradient through the switches into
// the tile, which would also skip writing and reading the full-size pool gradient.
//
// T is float or uint16_t (bf16 bits, real.h) for x, y, grad_y and grad_x; denoms stay float32
// (the saved statistics, read back by the undo: rounding them would put a 2^-9 error into both
// of its terms). bf16 runs the float32 arithmetic above on the widened elements and rounds each
// stored y or grad_x once: it equals the float32 op on those values, cast.
namespace cuda {
template <class T>
void response_norm(const T* x, T* y, float* denoms, int64_t n, int64_t c, int64_t pixels,
                   const ResponseNormParams& p, bool nhwc, cudaStream_t stream);
template <class T>
void response_norm_undo(const T* grad_y, const T* x, const T* y, const float* denoms, T* grad_x,
                        int64_t n, int64_t c, int64_t pixels, const ResponseNormParams& p,
                        bool nhwc, bool relu, cudaStream_t stream);
}  // namespace cuda
#endif

}  // namespace alexnet_ext
