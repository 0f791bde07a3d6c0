// A stand-in for <cublas_v2.h> under tools/cuda_emu: the calls csrc/cuda/fc.cu makes, with
// cublasSgemm queued on the handle's stream like a kernel and computed by OpenBLAS (column-major,
// exactly cuBLAS's argument convention). Pointer arguments are checked like kernel arguments.
#pragma once
#include <cblas.h>

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
