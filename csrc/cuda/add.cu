// CUDA elementwise sum, a map of cuda/elementwise.cuh (four elements per access when aligned, in
// place allowed), for float32 and bf16 (add.h: the float32 sum, rounded once).
// __fadd_rn keeps the compiler from fusing anything into it: results equal the CPU's exactly.
#include <cstdint>

#include "add.h"
#include "cuda/elementwise.cuh"

namespace alexnet_ext::cuda {
namespace {

struct Add {
  __device__ float operator()(float a, float b) const { return __fadd_rn(a, b); }
};

}  // namespace

template <class T>
void add(const T* a, const T* b, T* out, int64_t n, cudaStream_t stream) {
  map_elementwise("add", Add{}, out, n, stream, a, b);
}

template void add(const float*, const float*, float*, int64_t, cudaStream_t);
template void add(const uint16_t*, const uint16_t*, uint16_t*, int64_t, cudaStream_t);

}  // namespace alexnet_ext::cuda
