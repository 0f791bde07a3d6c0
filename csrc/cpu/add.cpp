// CPU elementwise sum: one OpenMP-parallel SIMD pass (small arrays on one thread). The result
// does not depend on the thread count.
#include "add.h"

namespace alexnet_ext::cpu {

void add(const float* a, const float* b, float* out, int64_t n) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= (1 << 15))
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

}  // namespace alexnet_ext::cpu
