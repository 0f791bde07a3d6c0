// CPU fully connected layer: OpenBLAS sgemm, which runs single-threaded (cpu/blas.h), so each
// GEMM is cut into one slab per OpenMP thread, each slab one sgemm call:
//   forward: columns of y  = rows of w     (each thread reads its own rows of the big matrix w)
//   grad_x:  columns of gx = columns of w
//   grad_w:  rows of gw    = columns of gy
// Slabs are disjoint, so there is no reduction and no race; slab edges are multiples of 16
// floats so each thread's columns start on a 64-byte boundary of the row.
#include <algorithm>
#include <vector>

#include <omp.h>

#include "cpu/blas.h"
#include "fc.h"
#include "host_device.h"

namespace alexnet_ext::cpu {

namespace {

constexpr int64_t kAlign = 16;

// Calls body(begin, end) for one slab of [0, total) per thread; small problems run on one thread.
template <class Body>
void for_slabs(int64_t total, int64_t work, Body body) {
  const int64_t max_slabs = (total + kAlign - 1) / kAlign;
  int64_t threads = std::min<int64_t>(omp_get_max_threads(), max_slabs);
  if (work < (int64_t{1} << 16)) threads = 1;  // a parallel region costs more than the GEMM
  threads = std::max<int64_t>(threads, 1);
  if (threads == 1) {
    body(int64_t{0}, total);
    return;
  }
  const int64_t chunk = (max_slabs + threads - 1) / threads * kAlign;
#pragma omp parallel num_threads(static_cast<int>(threads))
  {
    const int64_t begin = std::min(total, omp_get_thread_num() * chunk);
    const int64_t end = std::min(total, begin + chunk);
    if (begin < end) body(begin, end);
  }
}

// sgemm's 32-bit dimension check throws; do it before any OpenMP region (an exception escaping
// one would terminate the process).
void check_dims(int64_t n, int64_t d, int64_t f) {
  blas_dim(n, "batch");
  blas_dim(d, "input features");
  blas_dim(f, "output features");
}

}  // namespace

void fc_forward(const float* x, const float* w, const float* bias, float* y, int64_t n,
                int64_t d, int64_t f, float st, float so) {
  check_dims(n, d, f);
  for_slabs(f, n * d * f, [&](int64_t f0, int64_t f1) {
    float* ys = y + f0;
    sgemm(false, true, n, f1 - f0, d, so, x, d, w + f0 * d, d, st, ys, f);
    if (bias) {
      for (int64_t i = 0; i < n; ++i) {
        float* row = ys + i * f;
        for (int64_t j = 0; j < f1 - f0; ++j) row[j] += so * bias[f0 + j];
      }
    }
  });
}

void fc_grad_x(const float* gy, const float* w, float* gx, int64_t n, int64_t d, int64_t f,
               float st, float so) {
  check_dims(n, d, f);
  for_slabs(d, n * d * f, [&](int64_t d0, int64_t d1) {
    sgemm(false, false, n, d1 - d0, f, so, gy, f, w + d0, d, st, gx + d0, d);
  });
}

void fc_grad_w(const float* gy, const float* x, float* gw, int64_t n, int64_t d, int64_t f,
               float st, float so) {
  check_dims(n, d, f);
  for_slabs(f, n * d * f, [&](int64_t f0, int64_t f1) {
    sgemm(true, false, f1 - f0, d, n, so, gy + f0, f, x, d, st, gw + f0 * d, d);
  });
}

void fc_grad_b(const float* gy, float* gb, int64_t n, int64_t f, float st, float so) {
  // Row by row (contiguous reads) into a double accumulator per column of the slab.
  for_slabs(f, n * f, [&](int64_t f0, int64_t f1) {
    std::vector<double> acc(f1 - f0, 0.0);
    for (int64_t i = 0; i < n; ++i) {
      const float* row = gy + i * f + f0;
      for (int64_t j = 0; j < f1 - f0; ++j) acc[j] += row[j];
    }
    for (int64_t j = 0; j < f1 - f0; ++j)
      accumulate_store(gb + f0 + j, static_cast<float>(acc[j]), st, so);
  });
}

}  // namespace alexnet_ext::cpu
