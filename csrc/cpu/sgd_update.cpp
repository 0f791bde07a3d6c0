// CPU SGD update: one OpenMP-parallel SIMD pass; elementwise, so independent of thread count.
#include "cast.h"
#include "sgd_update.h"

namespace alexnet_ext::cpu {

void sgd_update(float* w, const float* grad, float* velocity, int64_t n, float lr, float momentum,
                float decay_lr, uint16_t* w_bf16) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= (1 << 15))
  for (int64_t i = 0; i < n; ++i) {
    const float v = momentum * velocity[i] - decay_lr * w[i] - lr * grad[i];
    velocity[i] = v;
    w[i] += v;
  }
  if (w_bf16) {  // a second pass, so the loop above stays the vectorised one it was
#pragma omp parallel for simd schedule(static) if (parallel : n >= (1 << 15))
    for (int64_t i = 0; i < n; ++i) w_bf16[i] = bf16_from_float(w[i]);
  }
}

}  // namespace alexnet_ext::cpu
