// A stand-in for <cublas_v2.h> under tools/cuda_emu: the calls csrc/cuda/fc.cu makes, with
// cublasSgemm (and cublasGemmEx, below) queued on the handle's stream like a kernel and computed
// by OpenBLAS (column-major, exactly cuBLAS's argument convention). Pointer arguments are checked like kernel arguments.
#pragma once
#include <cblas.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "cuda_runtime.h"

typedef struct cublasContext* cublasHandle_t;
enum cublasStatus_t {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_EXECUTION_FAILED = 13,
};
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cublasMath_t { CUBLAS_DEFAULT_MATH = 0, CUBLAS_PEDANTIC_MATH = 2 };

struct cublasContext {
  cudaStream_t stream = nullptr;
  int device = 0;
};

inline const char* cublasGetStatusName(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}
inline const char* cublasGetStatusString(cublasStatus_t s) { return cublasGetStatusName(s); }
inline cublasStatus_t cublasCreate(cublasHandle_t* h) {
  *h = new cublasContext;
  cudaGetDevice(&(*h)->device);
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasDestroy(cublasHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }

// Column-major C[m x n] = alpha * op(A) op(B) + beta * C; alpha and beta read at call time
// (host pointer mode), beta == 0 never reads C.
inline cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                                  int m, int n, int k, const float* alpha, const float* a, int lda,
                                  const float* b, int ldb, const float* beta, float* c, int ldc) {
  int dev = 0;
  cudaGetDevice(&dev);
  if (dev != h->device) return CUBLAS_STATUS_EXECUTION_FAILED;  // a handle belongs to its device
  if (!emu::check_kernel_pointer(a, 0) || !emu::check_kernel_pointer(b, 1) ||
      !emu::check_kernel_pointer(c, 2))
    return CUBLAS_STATUS_EXECUTION_FAILED;
  const float al = *alpha, be = *beta;
  const cudaError_t queued = emu::enqueue(h->stream, [=] {
    if (m == 0 || n == 0) return;
    if (be == 0.f)  // BLAS may scale C by 0, which keeps NaNs; cuBLAS never reads it
      for (int j = 0; j < n; ++j)
        for (int i = 0; i < m; ++i) c[static_cast<int64_t>(j) * ldc + i] = 0.f;
    scipy_cblas_sgemm(CblasColMajor, ta == CUBLAS_OP_T ? CblasTrans : CblasNoTrans,
                      tb == CUBLAS_OP_T ? CblasTrans : CblasNoTrans, m, n, k, al, a, lda, b, ldb,
                      be, c, ldc);
  });
  return queued == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

// cublasGemmEx for the types csrc/cuda/fc.cu uses: A and B CUDA_R_32F or CUDA_R_16BF (both the
// same), C CUDA_R_32F or CUDA_R_16BF, CUBLAS_COMPUTE_32F. bf16 operands are widened exactly to
// float32 (so every product is exact in float32, as on the GPU) and multiplied by OpenBLAS sgemm
// with float32 accumulation; a bf16 C is read widened (beta != 0) and the float32 result rounded
// once to nearest even (NaN -> the quiet NaN of its sign).
enum cudaDataType_t { CUDA_R_32F = 0, CUDA_R_16BF = 14 };
enum cublasComputeType_t { CUBLAS_COMPUTE_32F = 68 };
enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1 };

namespace emu_blas {
inline float widen_bf16(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float v;
  memcpy(&v, &u, 4);
  return v;
}
inline uint16_t round_bf16(float v) {
  uint32_t u;
  memcpy(&u, &v, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16 & 0x8000u) | 0x7fc0u);
  return static_cast<uint16_t>((u + 0x7fffu + (u >> 16 & 1u)) >> 16);
}
// A column-major (rows x cols) block with leading dimension ld as float32, in the same layout
// (entries past `rows` in a column are never read by sgemm; they are left 0).
inline std::vector<float> widen(const void* p, cudaDataType_t t, int rows, int cols, int ld) {
  std::vector<float> out(static_cast<size_t>(ld) * (cols > 0 ? cols : 0), 0.f);
  for (int j = 0; j < cols; ++j)
    for (int i = 0; i < rows; ++i) {
      const size_t at = static_cast<size_t>(j) * ld + i;
      out[at] = t == CUDA_R_16BF ? widen_bf16(static_cast<const uint16_t*>(p)[at])
                                 : static_cast<const float*>(p)[at];
    }
  return out;
}
}  // namespace emu_blas

inline cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                                   int m, int n, int k, const void* alpha, const void* a,
                                   cudaDataType_t at, int lda, const void* b, cudaDataType_t bt,
                                   int ldb, const void* beta, void* c, cudaDataType_t ct, int ldc,
                                   cublasComputeType_t compute, cublasGemmAlgo_t) {
  int dev = 0;
  cudaGetDevice(&dev);
  if (dev != h->device) return CUBLAS_STATUS_EXECUTION_FAILED;
  if (compute != CUBLAS_COMPUTE_32F || at != bt ||
      (at != CUDA_R_32F && at != CUDA_R_16BF) || (ct != CUDA_R_32F && ct != CUDA_R_16BF))
    return CUBLAS_STATUS_INVALID_VALUE;  // cuBLAS: CUBLAS_STATUS_NOT_SUPPORTED for these
  if (!emu::check_kernel_pointer(a, 0) || !emu::check_kernel_pointer(b, 1) ||
      !emu::check_kernel_pointer(c, 2))
    return CUBLAS_STATUS_EXECUTION_FAILED;
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  const cudaError_t queued = emu::enqueue(h->stream, [=] {
    if (m == 0 || n == 0) return;
    const bool a_n = ta == CUBLAS_OP_N, b_n = tb == CUBLAS_OP_N;
    const std::vector<float> wa = emu_blas::widen(a, at, a_n ? m : k, a_n ? k : m, lda);
    const std::vector<float> wb = emu_blas::widen(b, bt, b_n ? k : n, b_n ? n : k, ldb);
    // C as float32: zero when beta == 0 (never read, as cuBLAS), else its widened values.
    std::vector<float> wc(static_cast<size_t>(ldc) * n, 0.f);
    if (be != 0.f) wc = emu_blas::widen(c, ct, m, n, ldc);
    if (k > 0)
      scipy_cblas_sgemm(CblasColMajor, a_n ? CblasNoTrans : CblasTrans,
                        b_n ? CblasNoTrans : CblasTrans, m, n, k, al, wa.data(), lda, wb.data(),
                        ldb, be, wc.data(), ldc);
    else
      for (float& v : wc) v *= be;
    for (int j = 0; j < n; ++j)
      for (int i = 0; i < m; ++i) {
        const size_t at2 = static_cast<size_t>(j) * ldc + i;
        if (ct == CUDA_R_16BF)
          static_cast<uint16_t*>(c)[at2] = emu_blas::round_bf16(wc[at2]);
        else
          static_cast<float*>(c)[at2] = wc[at2];
      }
  });
  return queued == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}
