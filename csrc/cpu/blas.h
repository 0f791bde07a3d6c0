// Row-major single-precision GEMM through OpenBLAS (scipy-openblas32, symbols prefixed scipy_).
//
// OpenBLAS runs single-threaded here: the CPU kernels parallelise over images (or output slabs)
// with OpenMP and call sgemm from inside those loops, so BLAS threads would only oversubscribe
// the cores. module.cpp pins OpenBLAS to one thread at import.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

#include <cblas.h>

namespace alexnet_ext::cpu {

inline int blas_dim(int64_t v, const char* what) {
  if (v < 0 || v > INT32_MAX)
    throw std::length_error(std::string("GEMM dimension ") + what + " = " + std::to_string(v) +
                            " does not fit the 32-bit BLAS interface");
  return static_cast<int>(v);
}

// C[m x n] = alpha * op(A) * op(B) + beta * C, all row-major with leading dimensions lda/ldb/ldc.
// beta == 0 means C is not read (BLAS semantics; OpenBLAS writes zeros first, so NaNs in C vanish).
inline void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
                  int64_t ldc) {
  if (m == 0 || n == 0) return;
  scipy_cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                    trans_b ? CblasTrans : CblasNoTrans, blas_dim(m, "m"), blas_dim(n, "n"),
                    blas_dim(k, "k"), alpha, a, blas_dim(lda, "lda"), b, blas_dim(ldb, "ldb"), beta,
                    c, blas_dim(ldc, "ldc"));
}

}  // namespace alexnet_ext::cpu
