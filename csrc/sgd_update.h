// The paper's update rule (SGD with momentum and weight decay), in place on dense float32
// arrays of n elements:
//   v <- momentum * v - (weight_decay * lr) * w - lr * grad
//   w <- w + v
// One fused pass (each element of w and v read once, written once). grad must not overlap w or v.
// w_bf16 (optional, nullptr for none): also receives the new w rounded to bf16 (cast.h's
// bf16_from_float), in the same pass: with fp32 master weights, the copy a bf16 forward reads.
// sgd_update_many: the same for a list of tensors (a loop on the CPU, one launch on the GPU).
#pragma once
#include <cstdint>

namespace alexnet_ext::cpu {
void sgd_update(float* w, const float* grad, float* velocity, int64_t n, float lr, float momentum,
                float decay_lr, uint16_t* w_bf16);
}  // namespace alexnet_ext::cpu

#ifdef ALEXNET_EXT_WITH_CUDA
#include <cuda_runtime.h>

// The same on device pointers, queued on `stream` (cuda/sgd_update.cu); results equal the CPU's
// bit for bit. sgd_update_many updates a list of tensors, each with its own hyper-parameters, in
// one launch per kSgdMaxTensors tensors. No tensor may overlap another's w or velocity.
namespace alexnet_ext::cuda {
struct SgdTensor {
  float* w;
  const float* grad;
  float* velocity;
  int64_t n;
  float lr, momentum, decay_lr;
  uint16_t* w_bf16;  // nullptr: no bf16 copy
};
constexpr int kSgdMaxTensors = 32;  // 32 descriptors fill under 2.3 KB of the 4 KB parameter block

void sgd_update(float* w, const float* grad, float* velocity, int64_t n, float lr, float momentum,
                float decay_lr, uint16_t* w_bf16, cudaStream_t stream);
void sgd_update_many(const SgdTensor* tensors, int64_t count, cudaStream_t stream);
}  // namespace alexnet_ext::cuda
#endif
