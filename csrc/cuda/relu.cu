// CUDA ReLU and its undo, maps of cuda/elementwise.cuh (float4 when aligned, in place allowed).
// Results equal the CPU's exactly: the same selects (relu.h), no arithmetic.
#include <cstdint>

#include "cuda/elementwise.cuh"
#include "relu.h"

namespace alexnet_ext::cuda {
namespace {

struct Relu {
  __device__ float operator()(float v) const { return relu_select(v); }
};
struct ReluUndo {
  __device__ float operator()(float g, float y) const { return relu_undo_select(g, y); }
};

}  // namespace

void relu(const float* x, float* y, int64_t n, cudaStream_t stream) {
  map_elementwise("relu", Relu{}, y, n, stream, x);
}

void relu_undo(const float* grad_y, const float* y, float* grad_x, int64_t n, cudaStream_t stream) {
  map_elementwise("relu_undo", ReluUndo{}, grad_x, n, stream, grad_y, y);
}

}  // namespace alexnet_ext::cuda
