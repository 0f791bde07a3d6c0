// CPU dropout: OpenMP over blocks of four elements, one Philox call per block (its four words
// are elements 4b..4b+3, or the four elements of the larger array they sit at, see
// DropoutLayout). Every element is a function of (seed, offset, index), so the result does not
// depend on the thread count or schedule.
#include "dropout.h"
#include "philox.h"

namespace alexnet_ext::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 14;
}

void dropout(const float* x, float* y, uint8_t* mask, int64_t n, uint32_t threshold, float scale,
             uint64_t seed_value, const uint64_t* seed_at, uint64_t offset,
             const DropoutLayout& layout) {
  const uint64_t seed = seed_at ? *seed_at : seed_value;
  if (!layout.aligned4(n)) {  // a block of the larger array in sizes not a multiple of 4
#pragma omp parallel for schedule(static) if (parallel : n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) {
      const int64_t g = layout.index(i);
      const Philox4x32 r = philox_block(seed, offset, static_cast<uint64_t>(g / 4));
      const bool keep = (r.v[g % 4] >> 8) >= threshold;
      const float v = x[i];
      mask[i] = keep ? 1 : 0;
      y[i] = keep ? v * scale : 0.f;
    }
    return;
  }
  const int64_t blocks = (n + 3) / 4;
#pragma omp parallel for schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t i0 = 4 * b;
    const Philox4x32 r = philox_block(seed, offset, static_cast<uint64_t>(layout.index(i0) / 4));
    const int m = n - i0 < 4 ? static_cast<int>(n - i0) : 4;
    for (int j = 0; j < m; ++j) {
      const bool keep = (r.v[j] >> 8) >= threshold;
      const float v = x[i0 + j];  // read before the write: y may be x
      mask[i0 + j] = keep ? 1 : 0;
      y[i0 + j] = keep ? v * scale : 0.f;
    }
  }
}

void dropout_undo(const float* grad_y, const uint8_t* mask, const float* relu_mask, float* grad_x,
                  int64_t n, float scale) {
  if (!relu_mask) {
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) grad_x[i] = mask[i] ? grad_y[i] * scale : 0.f;
    return;
  }
  // relu_undo_select's test (relu.h): a NaN or non-positive ReLU output passes nothing.
#pragma omp parallel for simd schedule(static) if (parallel : n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i)
    grad_x[i] = mask[i] && relu_mask[i] > 0.f ? grad_y[i] * scale : 0.f;
}

}  // namespace alexnet_ext::cpu
