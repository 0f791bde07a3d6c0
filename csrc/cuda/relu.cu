// CUDA ReLU and its undo, maps of cuda/elementwise.cuh (four elements per access when aligned, in
// place allowed), for float32 and bf16. Results equal the CPU's exactly: the same selects
// (relu.h), no arithmetic; bf16 elements pass through float32 unchanged.
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

template <class T>
void relu(const T* x, T* y, int64_t n, cudaStream_t stream) {
  map_elementwise("relu", Relu{}, y, n, stream, x);
}

template <class T>
void relu_undo(const T* grad_y, const T* y, T* grad_x, int64_t n, cudaStream_t stream) {
  map_elementwise("relu_undo", ReluUndo{}, grad_x, n, stream, grad_y, y);
}

template void relu(const float*, float*, int64_t, cudaStream_t);
template void relu(const uint16_t*, uint16_t*, int64_t, cudaStream_t);
template void relu_undo(const float*, const float*, float*, int64_t, cudaStream_t);
template void relu_undo(const uint16_t*, const uint16_t*, uint16_t*, int64_t, cudaStream_t);

}  // namespace alexnet_ext::cuda
