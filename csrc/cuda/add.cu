// CUDA elementwise sum: a grid-stride pass, four floats per load (float4) when every pointer is
// 16-byte aligned, one at a time otherwise. Each element is read and then written by the same
// thread at the same index, so out may be an input (in place). __fadd_rn keeps the compiler from
// fusing anything into it: results equal the CPU's exactly.
#include <cstdint>

#include "add.h"
#include "cuda/common.cuh"

namespace alexnet_ext::cuda {
namespace {

constexpr int kThreads = 256;

// Vector part [0, n4) as float4, the tail [4*n4, n) one element per thread.
__global__ void __launch_bounds__(kThreads)
add_vec(const float4* a, const float4* b, float4* out, int64_t n4, const float* as,
        const float* bs, float* outs, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t t0 = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t i = t0; i < n4; i += stride) {
    const float4 u = a[i], v = b[i];
    out[i] = make_float4(__fadd_rn(u.x, v.x), __fadd_rn(u.y, v.y), __fadd_rn(u.z, v.z),
                         __fadd_rn(u.w, v.w));
  }
  for (int64_t i = 4 * n4 + t0; i < n; i += stride) outs[i] = __fadd_rn(as[i], bs[i]);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace

// No __restrict__: out may be an input.
void add(const float* a, const float* b, float* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  const int64_t n4 = aligned16(a) && aligned16(b) && aligned16(out) ? n / 4 : 0;
  launch(add_vec, blocks_for(n4 + (n - 4 * n4), kThreads), kThreads, stream,
         reinterpret_cast<const float4*>(a), reinterpret_cast<const float4*>(b),
         reinterpret_cast<float4*>(out), n4, a, b, out, n);
  check_launch("add");
}

}  // namespace alexnet_ext::cuda
