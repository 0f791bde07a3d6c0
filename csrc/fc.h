// Fully connected layer (the paper's fc6, fc7, fc8):
//   forward   y (N, F)      = x (N, D) . w^T + b          w is (F, D): PyTorch Linear's layout,
//                                                         and conv's OIHW filters with 1x1 maps
//   grad_x    gx (N, D)     = gy (N, F) . w
//   grad_w    gw (F, D)     = gy^T . x                    (summed over the batch)
//   grad_b    gb (F,)       = sum_n gy[n, :]
// All dense row-major float32. A (N, C, H, W) activation is the (N, C*H*W) matrix x as is.
// Every pass has cuda-convnet's accumulate form: target = scale_targets * target
// + scale_output * result; scale_targets == 0 never reads the target (it may hold NaNs).
#pragma once
#include <cstdint>

namespace alexnet_ext::cpu {
void fc_forward(const float* x, const float* w, const float* bias, float* y, int64_t n,
                int64_t d, int64_t f, float scale_targets, float scale_output);
void fc_grad_x(const float* grad_y, const float* w, float* grad_x, int64_t n, int64_t d,
               int64_t f, float scale_targets, float scale_output);
void fc_grad_w(const float* grad_y, const float* x, float* grad_w, int64_t n, int64_t d,
               int64_t f, float scale_targets, float scale_output);
void fc_grad_b(const float* grad_y, float* grad_b, int64_t n, int64_t f, float scale_targets,
               float scale_output);
}  // namespace alexnet_ext::cpu

#ifdef ALEXNET_EXT_WITH_CUDA
#include <cuda_runtime.h>

// The same on device pointers, queued on `stream` (cuda/fc.cu): the GEMMs through cuBLAS in plain
// FP32 (one handle per device, bound to `stream` for each call), the bias and grad_b in small
// kernels (grad_b sums rows in order in double, as the CPU does). Only built when CMake found
// cuBLAS (ALEXNET_EXT_WITH_CUBLAS). Dimensions above 2^31 - 1 throw std::length_error.
//
// bf16 (GPU only, uint16_t bits): T is the operands' type (x, w, grad_y: float, or bf16 through
// cublasGemmEx with CUBLAS_COMPUTE_32F: exact products, float32 accumulation), O the type of y and
// grad_x (float; or bf16 with bf16 operands: the float32 result of the same calls, into a scratch
// buffer, rounded once to bf16 at the end, bias and accumulate form included). grad_w and grad_b
// are float32 always (they feed float32 master weights). Instantiated: (float, float),
// (bf16, float), (bf16, bf16).
namespace alexnet_ext::cuda {
template <class T, class O>
void fc_forward(const T* x, const T* w, const float* bias, O* y, int64_t n, int64_t d, int64_t f,
                float scale_targets, float scale_output, cudaStream_t stream);
template <class T, class O>
void fc_grad_x(const T* grad_y, const T* w, O* grad_x, int64_t n, int64_t d, int64_t f,
               float scale_targets, float scale_output, cudaStream_t stream);
template <class T>
void fc_grad_w(const T* grad_y, const T* x, float* grad_w, int64_t n, int64_t d, int64_t f,
               float scale_targets, float scale_output, cudaStream_t stream);
template <class T>
void fc_grad_b(const T* grad_y, float* grad_b, int64_t n, int64_t f, float scale_targets,
               float scale_output, cudaStream_t stream);
}  // namespace alexnet_ext::cuda
#endif
