// CPU ReLU: one OpenMP-parallel SIMD pass. Small arrays stay on one thread (a parallel region
// costs more than the work). The result does not depend on the thread count.
#include "relu.h"

namespace alexnet_ext::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 15;
}

void relu(const float* x, float* y, int64_t n) {
  // !(v <= 0) keeps NaN (a NaN activation should show up, not turn into a silent 0).
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    y[i] = !(v <= 0.f) ? v : 0.f;
  }
}

void relu_undo(const float* grad_y, const float* y, float* grad_x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) grad_x[i] = y[i] > 0.f ? grad_y[i] : 0.f;
}

}  // namespace alexnet_ext::cpu
