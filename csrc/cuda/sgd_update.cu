// CUDA SGD step (the paper's rule), in place, and the same step on a whole list of parameter
// tensors in one launch.
//
// The arithmetic is the CPU's operation for operation, each product and difference rounded on its
// own (no FMA contraction), so w and velocity equal the CPU's bit for bit.
//
// sgd_update_many: the tensors' descriptors (pointers, size, hyper-parameters) travel in the
// kernel's parameter block, up to kMaxTensors per launch; longer lists take several launches.
// Each block updates one tile of kTile consecutive elements of one tensor: tensor t owns blocks
// [first_block[t], first_block[t+1]), so a block finds its tensor by a short scan of the
// (constant-cached) table. AlexNet's 16 parameter tensors (8 layers x weights, biases) are one
// launch instead of 16.
#include <cstdint>
#include <stdexcept>

#include "cast.h"
#include "cuda/common.cuh"
#include "sgd_update.h"

namespace alexnet_ext::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kPerThread = 4;
constexpr int64_t kTile = int64_t{kThreads} * kPerThread;

// The new velocity: momentum * v - decay_lr * w - lr * g, left to right, as in
// cpu/sgd_update.cpp; w's new value is w + that.
__device__ __forceinline__ float velocity_step(float w, float g, float v, float lr, float momentum,
                                               float decay_lr) {
  return __fsub_rn(__fsub_rn(__fmul_rn(momentum, v), __fmul_rn(decay_lr, w)), __fmul_rn(lr, g));
}

__global__ void __launch_bounds__(kThreads)
sgd_kernel(float* __restrict__ w, const float* __restrict__ grad, float* __restrict__ velocity,
           int64_t n, float lr, float momentum, float decay_lr, uint16_t* __restrict__ w_bf16) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const float wi = w[i];
    const float nv = velocity_step(wi, grad[i], velocity[i], lr, momentum, decay_lr);
    velocity[i] = nv;
    const float nw = __fadd_rn(wi, nv);
    w[i] = nw;
    if (w_bf16) w_bf16[i] = bf16_from_float(nw);
  }
}

struct Batch {
  SgdTensor t[kSgdMaxTensors];
  int64_t first_block[kSgdMaxTensors + 1];  // first_block[count] = blocks in the launch
  int count;
};

__global__ void __launch_bounds__(kThreads) sgd_many_kernel(const Batch batch) {
  const int64_t b = blockIdx.x;
  int i = 0;
  while (i + 1 < batch.count && b >= batch.first_block[i + 1]) ++i;  // uniform per block
  const SgdTensor& t = batch.t[i];
  const int64_t base = (b - batch.first_block[i]) * kTile + threadIdx.x;
  // All loads first, then all stores: the tensors do not overlap (a precondition), and issuing
  // the 3 x kPerThread loads together keeps more of them in flight.
  float w[kPerThread], g[kPerThread], v[kPerThread];
#pragma unroll
  for (int e = 0; e < kPerThread; ++e) {
    const int64_t j = base + int64_t{e} * kThreads;  // coalesced: a block covers kTile in a row
    if (j < t.n) {
      w[e] = t.w[j];
      g[e] = t.grad[j];
      v[e] = t.velocity[j];
    }
  }
#pragma unroll
  for (int e = 0; e < kPerThread; ++e) {
    const int64_t j = base + int64_t{e} * kThreads;
    if (j < t.n) {
      const float nv = velocity_step(w[e], g[e], v[e], t.lr, t.momentum, t.decay_lr);
      t.velocity[j] = nv;
      const float nw = __fadd_rn(w[e], nv);
      t.w[j] = nw;
      if (t.w_bf16) t.w_bf16[j] = bf16_from_float(nw);
    }
  }
}

}  // namespace

void sgd_update(float* w, const float* grad, float* velocity, int64_t n, float lr, float momentum,
                float decay_lr, uint16_t* w_bf16, cudaStream_t stream) {
  if (n == 0) return;
  launch(sgd_kernel, blocks_for(n, kThreads), kThreads, stream, w, grad, velocity, n, lr, momentum,
      decay_lr, w_bf16);
  check_launch("sgd_update");
}

void sgd_update_many(const SgdTensor* tensors, int64_t count, cudaStream_t stream) {
  // A launch's grid is at most 2^31 - 1 blocks; stop a batch well before that.
  constexpr int64_t kMaxBlocks = int64_t{1} << 30;
  int64_t i = 0;
  while (i < count) {
    Batch batch{};
    int64_t blocks = 0;
    while (i < count && batch.count < kSgdMaxTensors) {
      const int64_t nb = (tensors[i].n + kTile - 1) / kTile;
      if (nb > kMaxBlocks) throw std::length_error("sgd_update_many: a tensor has too many elements");
      if (blocks + nb > kMaxBlocks) break;
      if (nb > 0) {  // empty tensors take no blocks
        batch.t[batch.count] = tensors[i];
        batch.first_block[batch.count] = blocks;
        ++batch.count;
        blocks += nb;
      }
      ++i;
    }
    batch.first_block[batch.count] = blocks;
    if (blocks == 0) continue;
    launch(sgd_many_kernel, static_cast<unsigned>(blocks), kThreads, stream, batch);
    check_launch("sgd_update_many");
  }
}

}  // namespace alexnet_ext::cuda
