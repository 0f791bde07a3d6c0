// CPU float32 <-> bfloat16 casts: one OpenMP-parallel pass over the shared conversions of cast.h.
#include "cast.h"

namespace alexnet_ext::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 15;  // below this a parallel region costs more than the work
}

void cast_to_bf16(const float* x, uint16_t* y, int64_t n) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = bf16_from_float(x[i]);
}

void cast_to_f32(const uint16_t* x, float* y, int64_t n) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] = float_from_bf16(x[i]);
}

}  // namespace alexnet_ext::cpu
