// CPU ReLU: one OpenMP-parallel SIMD pass. Small arrays stay on one thread (a parallel region
// costs more than the work). The result does not depend on the thread count.
#include "relu.h"

namespace alexnet_ext::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 15;
}

void relu(const float* x, float* y, int64_t n) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = relu_select(x[i]);
}

void relu_undo(const float* grad_y, const float* y, float* grad_x, int64_t n) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) grad_x[i] = relu_undo_select(grad_y[i], y[i]);
}

}  // namespace alexnet_ext::cpu
