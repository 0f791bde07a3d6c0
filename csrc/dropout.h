// Inverted dropout (Hinton et al. 2012; the paper's fc6/fc7 with p = 0.5), random numbers from
// Philox-4x32-10 (philox.h):
//   u[i]    = philox_uniform(word i % 4 of philox_block(seed, offset, i / 4))   in [0, 1)
//   mask[i] = u[i] >= p                (kept with probability 1 - p; p = 0 keeps everything)
//   y[i]    = mask[i] ? x[i] * scale : 0,   scale = float(1 / (1 - p))
//   dropout_undo:  grad_x[i] = mask[i] ? grad_y[i] * scale : 0
//                  with relu_mask (optional, the dropout's input: a ReLU output) also 0 where
//                  !(relu_mask[i] > 0): dropout_undo followed by relu_undo in one pass, the same
//                  bits (the ReLU select never rounds)
// The mask (uint8, 0/1, x's shape) is the state the backward needs; it is an explicit output.
// Because u[i] depends on (seed, offset, i) only, the mask is the same for every thread count and
// on every device. The comparison runs on integers: u >= p  <=>  (word >> 8) >= ceil(p * 2^24),
// so no float rounding of p can move the boundary. In place (y = x, grad_x = grad_y) is allowed.
//
// Blocks of a larger array (DropoutLayout): x may be a block of a larger array A, made of rows of
// `row` consecutive elements taken every `stride` elements of A from element `start` on. Element
// i of x then uses A's index  g(i) = (i / row) * stride + start + i % row  in place of i, so its
// mask is A's mask at those positions: a net split into columns (each column a block of every
// image) draws exactly the masks of the merged net. The identity layout is row = stride = n.
//
// Seed in memory (seed_at, may be null): the kernels then read the seed from *seed_at when they
// run (host memory on the CPU, device memory on the GPU) instead of taking `seed` by value, so a
// captured CUDA graph draws each replay's masks from the seed the host wrote before it.
#pragma once
#include <cmath>
#include <cstdint>

#include "philox.h"  // ALEXNET_EXT_HD

#ifdef ALEXNET_EXT_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace alexnet_ext {

// ceil(p * 2^24) for p in [0, 1): keep element i iff (word >> 8) >= this.
inline uint32_t dropout_threshold(double p) {
  return static_cast<uint32_t>(std::ceil(p * 16777216.0));
}

// The factor kept activations are multiplied by.
inline float dropout_scale(double p) { return static_cast<float>(1.0 / (1.0 - p)); }

struct DropoutLayout {
  int64_t row, stride, start;
  // Where element i of the block sits in the larger array.
  ALEXNET_EXT_HD int64_t index(int64_t i) const {
    return row == stride ? start + i : (i / row) * stride + start + i % row;  // no division when whole
  }
  // Groups of four consecutive block elements map to groups of four of the larger array (one
  // Philox call each) when every size is a multiple of 4; the identity layout always does.
  bool aligned4(int64_t n) const {
    return (row >= n && start == 0) || (row % 4 == 0 && stride % 4 == 0 && start % 4 == 0);
  }
};

namespace cpu {
void dropout(const float* x, float* y, uint8_t* mask, int64_t n, uint32_t threshold, float scale,
             uint64_t seed, const uint64_t* seed_at, uint64_t offset, const DropoutLayout& layout);
void dropout_undo(const float* grad_y, const uint8_t* mask, const float* relu_mask, float* grad_x,
                  int64_t n, float scale);
}  // namespace cpu

#ifdef ALEXNET_EXT_WITH_CUDA
// The same on device pointers, queued on `stream` (cuda/dropout.cu). The mask is the CPU's bit
// for bit for the same (seed, offset), whatever the launch shape, and whatever T: float, or bf16
// as its uint16_t bits (real.h; GPU only: the product in float32, rounded once to bf16).
namespace cuda {
template <class T>
void dropout(const T* x, T* y, uint8_t* mask, int64_t n, uint32_t threshold, float scale,
             uint64_t seed, const uint64_t* seed_at, uint64_t offset, const DropoutLayout& layout,
             cudaStream_t stream);
template <class T>
void dropout_undo(const T* grad_y, const uint8_t* mask, const T* relu_mask, T* grad_x, int64_t n,
                  float scale, cudaStream_t stream);
}  // namespace cuda
#endif

}  // namespace alexnet_ext
