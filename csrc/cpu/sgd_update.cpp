// CPU SGD update: one OpenMP-parallel SIMD pass; elementwise, so independent of thread count.
#include "sgd_update.h"

namespace alexnet_ext::cpu {

void sgd_update(float* w, const float* grad, float* velocity, int64_t n, float lr, float momentum,
                float decay_lr) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= (1 << 15))
  for (int64_t i = 0; i < n; ++i) {
    const float v = momentum * velocity[i] - decay_lr * w[i] - lr * grad[i];
    velocity[i] = v;
    w[i] += v;
  }
}

}  // namespace alexnet_ext::cpu
