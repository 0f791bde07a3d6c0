// The paper's update rule (SGD with momentum and weight decay), in place on dense float32
// arrays of n elements:
//   v <- momentum * v - (weight_decay * lr) * w - lr * grad
//   w <- w + v
// One fused pass (each element of w and v read once, written once). grad must not overlap w or v.
#pragma once
#include <cstdint>

namespace alexnet_ext::cpu {
void sgd_update(float* w, const float* grad, float* velocity, int64_t n, float lr, float momentum,
                float decay_lr);
}  // namespace alexnet_ext::cpu
