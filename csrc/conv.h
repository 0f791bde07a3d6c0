// Convolution, cuda-convnet's three passes:
//   filterActs  (forward)             out[n,f,oy,ox] = sum_{c,i,j} img[n,g*Cg+c, oy*sh-ph+i, ox*sw-pw+j]
//                                                            * w[f,c,i,j]  (+ bias[f])
//   imgActs     (gradient w.r.t. images)   the adjoint of filterActs in the images
//   weightActs  (gradient w.r.t. filters)  the adjoint of filterActs in the filters
// Layout: images (N, C, H, W), filters (F, C/groups, kh, kw), outputs (N, F, Ho, Wo), all dense
// row-major float32. Group g owns input channels [g*C/groups, (g+1)*C/groups) and output channels
// [g*F/groups, (g+1)*F/groups). Reads outside the image (padding, ceil_mode overhang) are zeros.
//
// NHWC (the *_nhwc functions, channels innermost: PyTorch's channels_last memory): images
// (N, H, W, C), filters (F, kh, kw, C/groups), outputs (N, Ho, Wo, F), same formula and groups.
// The NHWC bias gradient is conv_bias_grad with n = N*Ho*Wo and pixels = 1.
//
// Every pass has cuda-convnet's accumulate form: target = scale_targets * target
// + scale_output * result. scale_targets == 0 never reads the target (it may hold NaNs).
//
// filterActs and imgActs take a ConvEpilogue (`ep`, after the scales): what the store of each
// output element does after the accumulate form, so that the layer's ReLU (forward) or ReLU undo
// (backward) and a bf16 result cost no pass of their own. weightActs takes none.
#pragma once
#include <cstdint>
#include <initializer_list>

#include "host_device.h"

#ifdef ALEXNET_EXT_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace alexnet_ext {

struct ConvGeometry {
  int64_t n, c, h, w;     // images
  int64_t f, kh, kw;      // filters: f total, each over c/groups channels
  int64_t sh, sw, ph, pw; // stride, padding (top/left; the bottom/right extent follows from ho/wo)
  int64_t groups;
  int64_t ho, wo;         // output size, computed by the caller (floor or ceil mode)

  int64_t cg() const { return c / groups; }      // input channels per group
  int64_t fg() const { return f / groups; }      // filters per group
  int64_t k() const { return cg() * kh * kw; }   // reduction length per output
  int64_t p() const { return ho * wo; }          // output pixels per map
};

// Output size along one axis: floor((size + 2*pad - k)/stride) + 1, or with ceil_mode
// cuda-convnet's 1 + ceil((size + 2*pad - k)/stride). Caller guarantees size + 2*pad >= k and the
// bounds of conv_geometry_error (no overflow).
inline int64_t conv_out_size(int64_t size, int64_t k, int64_t stride, int64_t pad, bool ceil_mode) {
  const int64_t span = size + 2 * pad - k;
  return (ceil_mode ? ceil_div_nonneg(span, stride) : span / stride) + 1;
}

// The memory-safety check of a convolution geometry, shared by the binding and the emulator
// harness: nullptr when the kernels may run on it, else what is wrong. Sizes are at least 1 and
// below 2^62, stride/padding/filter sides within kGeometryMax (so no index arithmetic
// overflows), the groups divide channels and filters, the window fits the padded image and
// (ho, wo) is the floor- or ceil-mode output size. Array shapes are checked against it apart.
inline const char* conv_geometry_error(const ConvGeometry& g) {
  for (int64_t v : {g.n, g.c, g.h, g.w, g.f, g.ho, g.wo})
    if (v < 1 || v > kExtentMax) return "conv geometry: a size is < 1 or >= 2^62";
  for (int64_t v : {g.kh, g.kw, g.sh, g.sw, g.groups})
    if (v < 1 || v > kGeometryMax) return "conv geometry: a filter side, stride or groups is < 1 or >= 2^31";
  for (int64_t v : {g.ph, g.pw})
    if (v < 0 || v > kGeometryMax) return "conv geometry: padding is < 0 or >= 2^31";
  if (g.c % g.groups || g.f % g.groups) return "conv geometry: groups must divide channels and filters";
  if (g.ph > g.h + g.kh || g.pw > g.w + g.kw)  // more padding adds outputs that read only zeros
    return "conv geometry: padding is larger than image side + filter side";
  if (g.h + 2 * g.ph < g.kh || g.w + 2 * g.pw < g.kw)
    return "conv geometry: the filter is larger than the padded image";
  auto size_ok = [](int64_t out, int64_t size, int64_t k, int64_t s, int64_t p) {
    return out == conv_out_size(size, k, s, p, false) || out == conv_out_size(size, k, s, p, true);
  };
  if (!size_ok(g.ho, g.h, g.kh, g.sh, g.ph) || !size_ok(g.wo, g.w, g.kw, g.sw, g.pw))
    return "conv geometry: (ho, wo) is not the output size of the filter";
  return nullptr;
}

// The store of every filterActs/imgActs output element, in this order: v = the accumulate form
// (with out_bf16, the target read as its bf16 value widened), relu: v = relu_select(v) (relu.h;
// NaN kept), relu_mask: v = relu_undo_select(v, mask[i]) (0 unless mask[i] > 0; mask shaped and
// laid out as out), then the store: fp32, or with out_bf16 the bf16 bits of v rounded to nearest
// even (out then points at uint16_t data, though typed float*). So the fused op is the unfused
// op followed by ops.relu / ops.relu_undo / an RNE cast, bit for bit. {} is the plain store.
// out_bf16 and bf16 masks are GPU only (the CPU throws std::invalid_argument).
struct ConvEpilogue {
  bool relu = false;
  bool out_bf16 = false;
  const void* relu_mask = nullptr;  // float, or uint16_t bf16 bits when mask_bf16
  bool mask_bf16 = false;
};

namespace cpu {
void filter_acts(const float* images, const float* filters, const float* bias, float* out,
                 const ConvGeometry& g, float scale_targets, float scale_output,
                 const ConvEpilogue& ep);
void img_acts(const float* hid_grads, const float* filters, float* out, const ConvGeometry& g,
              float scale_targets, float scale_output, const ConvEpilogue& ep);
void weight_acts(const float* images, const float* hid_grads, float* out, const ConvGeometry& g,
                 float scale_targets, float scale_output);
// out[f] = scale_targets * out[f] + scale_output * sum_{n,y,x} hid_grads[n,f,y,x]
void conv_bias_grad(const float* hid_grads, float* out, int64_t n, int64_t f, int64_t pixels,
                    float scale_targets, float scale_output);
// NHWC (cpu/conv.cpp): im2col with NHWC indexing and the same sgemm.
void filter_acts_nhwc(const float* images, const float* filters, const float* bias, float* out,
                      const ConvGeometry& g, float scale_targets, float scale_output,
                      const ConvEpilogue& ep);
void img_acts_nhwc(const float* hid_grads, const float* filters, float* out, const ConvGeometry& g,
                   float scale_targets, float scale_output, const ConvEpilogue& ep);
void weight_acts_nhwc(const float* images, const float* hid_grads, float* out,
                      const ConvGeometry& g, float scale_targets, float scale_output);
}  // namespace cpu

#ifdef ALEXNET_EXT_WITH_CUDA
// The same four passes on the GPU (csrc/cuda/conv.cu): device pointers, same layouts and the same
// accumulate form, queued on `stream` (nothing synchronises). The caller has made the arrays'
// device current. Throws CudaError on a launch error, OutOfMemory when the workspace cannot be had.
namespace cuda {
void filter_acts(const float* images, const float* filters, const float* bias, float* out,
                 const ConvGeometry& g, float scale_targets, float scale_output,
                 const ConvEpilogue& ep, cudaStream_t stream);
void img_acts(const float* hid_grads, const float* filters, float* out, const ConvGeometry& g,
              float scale_targets, float scale_output, const ConvEpilogue& ep, cudaStream_t stream);
void weight_acts(const float* images, const float* hid_grads, float* out, const ConvGeometry& g,
                 float scale_targets, float scale_output, cudaStream_t stream);
void conv_bias_grad(const float* hid_grads, float* out, int64_t n, int64_t f, int64_t pixels,
                    float scale_targets, float scale_output, cudaStream_t stream);
// bf16 hid_grads (uint16_t bits, widened exactly): the same sums in fp32, fp32 out.
void conv_bias_grad(const uint16_t* hid_grads, float* out, int64_t n, int64_t f, int64_t pixels,
                    float scale_targets, float scale_output, cudaStream_t stream);

// Version 3: tensor-core implicit GEMM (mma.sync, sm_80+; csrc/cuda/conv_mma.cu), same
// geometry, layouts and accumulate form, fp32 accumulation and fp32 output (bias fp32).
//   *_tf32: fp32 arrays; every product is of operands rounded to tf32 (cvt.rna: 10-bit mantissa).
//   *_bf16: images, filters and hid_grads as bf16 bits (uint16_t), exact products in fp32.
// Before sm_80, or when a tensor reaches 2^30 elements (version 3's offsets are 32-bit), they
// run version 2 (or 1) in fp32 on the same values (bf16 widened exactly): never less precise.
void filter_acts_tf32(const float* images, const float* filters, const float* bias, float* out,
                      const ConvGeometry& g, float scale_targets, float scale_output,
                      const ConvEpilogue& ep,
                      cudaStream_t stream);
void img_acts_tf32(const float* hid_grads, const float* filters, float* out, const ConvGeometry& g,
                   float scale_targets, float scale_output,
                   const ConvEpilogue& ep, cudaStream_t stream);
void weight_acts_tf32(const float* images, const float* hid_grads, float* out,
                      const ConvGeometry& g, float scale_targets, float scale_output,
                      cudaStream_t stream);
void filter_acts_bf16(const uint16_t* images, const uint16_t* filters, const float* bias,
                      float* out, const ConvGeometry& g, float scale_targets, float scale_output,
                      const ConvEpilogue& ep,
                      cudaStream_t stream);
void img_acts_bf16(const uint16_t* hid_grads, const uint16_t* filters, float* out,
                   const ConvGeometry& g, float scale_targets, float scale_output,
                   const ConvEpilogue& ep,
                   cudaStream_t stream);
void weight_acts_bf16(const uint16_t* images, const uint16_t* hid_grads, float* out,
                      const ConvGeometry& g, float scale_targets, float scale_output,
                      cudaStream_t stream);

// NHWC in tf32/bf16: version 3 within its limits (conv_mma.cu: filterActs and imgActs with NHWC
// B loaders, 16-byte cp.async of 8 bf16 / 4 tf32 channels when C/groups resp. F/groups allow;
// weightActs with element-wise loads along the channels; imgActs without space-to-depth).
// fp32, and tf32/bf16 past version 3's limits: version 1's direct loops with NHWC indexing
// (cuda/conv_reference.cu), correct for every shape and slow. The operands are `elem`:
// fp32, tf32 (fp32 arrays, each operand rounded as cvt.rna does, as the *_tf32 functions) or
// bf16 (uint16_t bits, widened exactly); products exact, sums fp32, results fp32.
enum class ConvElem { fp32 = 0, tf32 = 1, bf16 = 2 };
void filter_acts_nhwc(const void* images, const void* filters, const float* bias, float* out,
                      const ConvGeometry& g, float scale_targets, float scale_output,
                      const ConvEpilogue& ep,
                      cudaStream_t stream, ConvElem elem = ConvElem::fp32);
void img_acts_nhwc(const void* hid_grads, const void* filters, float* out, const ConvGeometry& g,
                   float scale_targets, float scale_output,
                   const ConvEpilogue& ep, cudaStream_t stream,
                   ConvElem elem = ConvElem::fp32);
void weight_acts_nhwc(const void* images, const void* hid_grads, float* out,
                      const ConvGeometry& g, float scale_targets, float scale_output,
                      cudaStream_t stream, ConvElem elem = ConvElem::fp32);

// Which kernels the float functions (filter_acts, img_acts, weight_acts) use, process-wide:
// 1 = the reference kernels (direct loops, one thread per output), 2 = the tiled implicit-GEMM
// kernels (default), 3 = version 3 in tf32 (an explicit opt-in to tf32 rounding, as the *_tf32
// functions). Versions 2 and 3 fall back as stated above (version 2 to version 1 for a geometry
// outside its 32-bit tile indexing, a GEMM dimension >= 2^30).
void set_conv_kernel(int version);  // throws std::invalid_argument unless 1, 2 or 3
int get_conv_kernel();

// For tests, since the process started: filterActs/imgActs grids split along K, imgActs run by
// space-to-depth, and filterActs/imgActs calls with an epilogue other than the plain store.
struct ConvPathCounts {
  int64_t split_k, s2d, fused;
};
ConvPathCounts conv_path_counts();
}  // namespace cuda
#endif

}  // namespace alexnet_ext
