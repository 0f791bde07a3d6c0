// CUDA fully connected layer: the three GEMMs through cuBLAS, the bias and its gradient in small
// kernels. Compiled when CMake found cuBLAS (ALEXNET_EXT_WITH_CUBLAS); otherwise the fc functions
// are simply not registered on _core.cuda.
//
// Row-major through column-major cuBLAS: a row-major (r x c) matrix is the column-major (c x r)
// matrix of its transpose, so row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T,
// i.e. cublasSgemm with A and B swapped, m and n swapped, the same transpose flags and the same
// leading dimensions.
//
// One cuBLAS handle per device, created on first use with the default math mode (plain FP32: no
// TF32 tensor-op rounding) and kept for the life of the process. A mutex serialises the
// set-stream + enqueue pair, so host threads on different streams cannot retarget each other's
// call. cuBLAS promises bitwise-reproducible results for the same problem on the same GPU model
// and toolkit, with one stream per handle at a time (see its reproducibility notes): different
// results across GPU models or cuBLAS versions are expected, at float32 rounding level.
//
// bf16 operands go through cublasGemmEx (CUDA_R_16BF inputs, CUBLAS_COMPUTE_32F: each product
// exact in float32, float32 accumulation) into a float32 C. A bf16 y or grad_x is that float32
// result, computed in a scratch buffer by the very calls of the float32 output, rounded once at the
// end (cast.h's RNE): bf16 out == RNE(float32 out) bit for bit, bias and accumulate form included.
#ifdef ALEXNET_EXT_WITH_CUBLAS
#include <cstdint>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <cublas_v2.h>

#include "cast.h"
#include "cuda/common.cuh"
#include "cuda/report.h"
#include "fc.h"
#include "host_device.h"
#include "real.h"

namespace alexnet_ext::cuda {
namespace {

constexpr int kThreads = 256;

void check_blas(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS)
    throw CudaError(std::string(what) + ": " + cublasGetStatusName(st) + ": " +
                    cublasGetStatusString(st));
}

int gemm_dim(int64_t v, const char* what) {
  if (v < 0 || v > std::numeric_limits<int>::max())
    throw std::length_error(std::string("GEMM dimension ") + what + " = " + std::to_string(v) +
                            " does not fit cuBLAS's 32-bit interface");
  return static_cast<int>(v);
}

// The calling thread's exclusive use of the current device's handle, bound to `stream`.
class Blas {
 public:
  explicit Blas(cudaStream_t stream) : lock_(mutex()) {
    int dev = 0;
    check(cudaGetDevice(&dev), "cudaGetDevice");
    auto& hs = handles();
    if (static_cast<size_t>(dev) >= hs.size()) hs.resize(dev + 1, nullptr);
    if (!hs[dev]) {
      cublasHandle_t h = nullptr;
      check_blas(cublasCreate(&h), "cublasCreate");
      const cublasStatus_t st = cublasSetMathMode(h, CUBLAS_DEFAULT_MATH);
      if (st != CUBLAS_STATUS_SUCCESS) cublasDestroy(h);
      check_blas(st, "cublasSetMathMode");
      hs[dev] = h;
    }
    h_ = hs[dev];
    check_blas(cublasSetStream(h_, stream), "cublasSetStream");
  }

  // Row-major C[m x n] = alpha * op(A) op(B) + beta * C (cpu/blas.h's sgemm). beta == 0: C is not
  // read, as BLAS promises.
  void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
             const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
             int64_t ldc) {
    if (m == 0 || n == 0) return;
    check_blas(cublasSgemm(h_, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                           trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, gemm_dim(n, "n"), gemm_dim(m, "m"),
                           gemm_dim(k, "k"), &alpha, b, gemm_dim(ldb, "ldb"), a,
                           gemm_dim(lda, "lda"), &beta, c, gemm_dim(ldc, "ldc")),
               "cublasSgemm");
  }

  // The same for T = float (sgemm) or bf16 (GemmEx, float32 compute), C float32.
  template <class T>
  void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const T* a,
            int64_t lda, const T* b, int64_t ldb, float beta, float* c, int64_t ldc) {
    if constexpr (std::is_same_v<T, float>) {
      sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    } else {
      if (m == 0 || n == 0) return;
      check_blas(cublasGemmEx(h_, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                              trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, gemm_dim(n, "n"),
                              gemm_dim(m, "m"), gemm_dim(k, "k"), &alpha, b, CUDA_R_16BF,
                              gemm_dim(ldb, "ldb"), a, CUDA_R_16BF, gemm_dim(lda, "lda"), &beta, c,
                              CUDA_R_32F, gemm_dim(ldc, "ldc"), CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
    }
  }

 private:
  // Never destroyed: handles outlive every caller, and destroying them at exit could run after
  // the CUDA driver has shut down.
  static std::mutex& mutex() {
    static auto* m = new std::mutex;
    return *m;
  }
  static std::vector<cublasHandle_t>& handles() {
    static auto* h = new std::vector<cublasHandle_t>;
    return *h;
  }

  std::unique_lock<std::mutex> lock_;
  cublasHandle_t h_ = nullptr;
};

// y[i, j] += so * bias[j], the CPU's rounding (a product, then a sum).
__global__ void __launch_bounds__(kThreads)
add_bias(float* __restrict__ y, const float* __restrict__ bias, int64_t n, int64_t f, float so) {
  const int64_t total = n * f;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total;
       t += stride)
    y[t] = __fadd_rn(y[t], __fmul_rn(so, bias[t % f]));
}

// gb[j] = st * gb[j] + so * sum_i gy[i, j]: one thread per column, rows in order into a double
// (cpu/fc.cpp's order, hence its result bit for bit). Consecutive threads read consecutive
// columns of a row, so each row step is coalesced.
template <class T>
__global__ void __launch_bounds__(kThreads)
bias_grad(const T* __restrict__ gy, float* __restrict__ gb, int64_t n, int64_t f, float st,
          float so) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < f;
       j += stride) {
    double acc = 0.0;
    for (int64_t i = 0; i < n; ++i) acc = __dadd_rn(acc, static_cast<double>(to_f32(gy[i * f + j])));
    accumulate_store(gb + j, static_cast<float>(acc), st, so);  // st == 0: never reads gb
  }
}

void check_dims(int64_t n, int64_t d, int64_t f) {
  gemm_dim(n, "batch");
  gemm_dim(d, "input features");
  gemm_dim(f, "output features");
}

// Runs body(c) with c a float32 target standing for the (rows x cols) `out`: out itself when O is
// float; for bf16 a scratch buffer holding widened out when the accumulate form reads it
// (st != 0), rounded back into out afterwards (one rounding of the float32 result).
template <class O, class Body>
void float_target(O* out, int64_t count, float st, cudaStream_t stream, Body body) {
  if constexpr (std::is_same_v<O, float>) {
    body(out);
  } else {
    if (count == 0) return;
    int dev = 0;
    check(cudaGetDevice(&dev), "cudaGetDevice");
    Scratch scratch(sizeof(float) * count, dev, stream);
    float* c = scratch.as<float>();
    if (st != 0.f) cast_to_f32(out, c, count, stream);
    body(c);
    cast_to_bf16(c, out, count, stream);
  }
}

}  // namespace

template <class T, class O>
void fc_forward(const T* x, const T* w, const float* bias, O* y, int64_t n, int64_t d, int64_t f,
                float st, float so, cudaStream_t stream) {
  check_dims(n, d, f);
  if (n * f == 0) return;
  float_target(y, n * f, st, stream, [&](float* c) {
    {
      Blas blas(stream);
      blas.gemm(false, true, n, f, d, so, x, d, w, d, st, c, f);
    }
    if (bias) {
      launch(add_bias, blocks_for(n * f, kThreads), kThreads, stream, c, bias, n, f, so);
      check_launch("fc_forward (bias)");
    }
  });
}

template <class T, class O>
void fc_grad_x(const T* grad_y, const T* w, O* grad_x, int64_t n, int64_t d, int64_t f, float st,
               float so, cudaStream_t stream) {
  check_dims(n, d, f);
  float_target(grad_x, n * d, st, stream, [&](float* c) {
    Blas blas(stream);
    blas.gemm(false, false, n, d, f, so, grad_y, f, w, d, st, c, d);
  });
}

template <class T>
void fc_grad_w(const T* grad_y, const T* x, float* grad_w, int64_t n, int64_t d, int64_t f,
               float st, float so, cudaStream_t stream) {
  check_dims(n, d, f);
  Blas blas(stream);
  blas.gemm(true, false, f, d, n, so, grad_y, f, x, d, st, grad_w, d);
}

template <class T>
void fc_grad_b(const T* grad_y, float* grad_b, int64_t n, int64_t f, float st, float so,
               cudaStream_t stream) {
  if (f == 0) return;
  launch(bias_grad<T>, blocks_for(f, kThreads), kThreads, stream, grad_y, grad_b, n, f, st, so);
  check_launch("fc_grad_b");
}

#define FC_OUT(T, O)                                                                            \
  template void fc_forward(const T*, const T*, const float*, O*, int64_t, int64_t, int64_t,     \
                           float, float, cudaStream_t);                                         \
  template void fc_grad_x(const T*, const T*, O*, int64_t, int64_t, int64_t, float, float,      \
                          cudaStream_t);
FC_OUT(float, float)
FC_OUT(uint16_t, float)
FC_OUT(uint16_t, uint16_t)
#undef FC_OUT
#define FC_IN(T)                                                                                \
  template void fc_grad_w(const T*, const T*, float*, int64_t, int64_t, int64_t, float, float,  \
                          cudaStream_t);                                                        \
  template void fc_grad_b(const T*, float*, int64_t, int64_t, float, float, cudaStream_t);
FC_IN(float)
FC_IN(uint16_t)
#undef FC_IN

}  // namespace alexnet_ext::cuda
#endif  // ALEXNET_EXT_WITH_CUBLAS
