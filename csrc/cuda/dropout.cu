// CUDA dropout: one thread per block of four elements and one Philox-4x32-10 call per thread,
// exactly the CPU's stream (philox.h is shared host/device code): element i keeps iff word i % 4 of
// philox_block(seed, offset, i / 4), shifted right by 8, is >= threshold. Masks therefore equal the
// CPU's bit for bit whatever the launch shape, and so do y and grad_x (one float multiply each).
// Four floats and four mask bytes move as one float4 / uchar4 when the pointers allow it.
// In place (y = x, grad_x = grad_y) works: each thread reads its elements before writing them.
// bf16 (T = uint16_t): the same Philox words and comparisons (so the same mask), each value
// widened, multiplied in float32 and rounded once (real.h); element by element (no vector path).
#include <cstdint>
#include <type_traits>

#include "cuda/common.cuh"
#include "dropout.h"
#include "philox.h"
#include "real.h"

namespace alexnet_ext::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ bool keep(uint32_t word, uint32_t threshold) {
  return (word >> 8) >= threshold;
}

// A kept element times scale, else 0, rounded once to T.
template <class T>
__device__ __forceinline__ T kept(bool k, T v, float scale) {
  return from_f32<T>(k ? __fmul_rn(to_f32(v), scale) : 0.f);
}

// kVec (T = float only): x and y 16-byte aligned and mask 4-byte aligned, so every full block of
// four is one vector access (element 4b starts at byte 16b of x and byte 4b of mask).

template <class T, bool kVec>
__global__ void __launch_bounds__(kThreads)
dropout_kernel(const T* x, T* y, uint8_t* mask, int64_t n, uint32_t threshold,
               float scale, uint64_t seed_value, const uint64_t* seed_at, uint64_t offset,
               DropoutLayout layout) {
  const uint64_t seed = seed_at ? *seed_at : seed_value;  // dropout.h: seed in memory
  const int64_t blocks = (n + 3) / 4;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < blocks;
       b += stride) {
    const int64_t i0 = 4 * b;
    const Philox4x32 r = philox_block(seed, offset, static_cast<uint64_t>(layout.index(i0) / 4));
    if constexpr (kVec) {
      if (i0 + 4 <= n) {
        const float4 v = *reinterpret_cast<const float4*>(x + i0);
        const bool k0 = keep(r.v[0], threshold), k1 = keep(r.v[1], threshold);
        const bool k2 = keep(r.v[2], threshold), k3 = keep(r.v[3], threshold);
        *reinterpret_cast<float4*>(y + i0) =
            make_float4(k0 ? __fmul_rn(v.x, scale) : 0.f, k1 ? __fmul_rn(v.y, scale) : 0.f,
                        k2 ? __fmul_rn(v.z, scale) : 0.f, k3 ? __fmul_rn(v.w, scale) : 0.f);
        *reinterpret_cast<uchar4*>(mask + i0) = make_uchar4(k0, k1, k2, k3);
        continue;
      }
    }
    const int m = n - i0 < 4 ? static_cast<int>(n - i0) : 4;
    for (int j = 0; j < m; ++j) {
      const bool k = keep(r.v[j], threshold);
      const T v = x[i0 + j];  // read before the write: y may be x
      mask[i0 + j] = k ? 1 : 0;
      y[i0 + j] = kept(k, v, scale);
    }
  }
}

// A block of a larger array in sizes that are not multiples of 4: one Philox call per element.
template <class T>
__global__ void __launch_bounds__(kThreads)
dropout_scattered(const T* x, T* y, uint8_t* mask, int64_t n, uint32_t threshold,
                  float scale, uint64_t seed_value, const uint64_t* seed_at, uint64_t offset,
                  DropoutLayout layout) {
  const uint64_t seed = seed_at ? *seed_at : seed_value;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const int64_t g = layout.index(i);
    const Philox4x32 r = philox_block(seed, offset, static_cast<uint64_t>(g / 4));
    const bool k = keep(r.v[g % 4], threshold);
    const T v = x[i];
    mask[i] = k ? 1 : 0;
    y[i] = kept(k, v, scale);
  }
}

// relu_mask (may be null): also 0 where !(relu_mask > 0), relu_undo_select's test (relu.h).
template <class T, bool kVec>
__global__ void __launch_bounds__(kThreads)
dropout_undo_kernel(const T* grad_y, const uint8_t* mask, const T* relu_mask, T* grad_x, int64_t n,
                    float scale) {
  const int64_t blocks = (n + 3) / 4;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < blocks;
       b += stride) {
    const int64_t i0 = 4 * b;
    if constexpr (kVec) {  // T = float, no relu_mask
      if (i0 + 4 <= n) {
        const float4 g = *reinterpret_cast<const float4*>(grad_y + i0);
        const uchar4 m = *reinterpret_cast<const uchar4*>(mask + i0);
        *reinterpret_cast<float4*>(grad_x + i0) =
            make_float4(m.x ? __fmul_rn(g.x, scale) : 0.f, m.y ? __fmul_rn(g.y, scale) : 0.f,
                        m.z ? __fmul_rn(g.z, scale) : 0.f, m.w ? __fmul_rn(g.w, scale) : 0.f);
        continue;
      }
    }
    const int64_t e = n - i0 < 4 ? n : i0 + 4;
    for (int64_t i = i0; i < e; ++i) {
      const bool k = mask[i] && (!relu_mask || to_f32(relu_mask[i]) > 0.f);
      grad_x[i] = kept(k, grad_y[i], scale);
    }
  }
}

bool aligned(const void* p, uintptr_t bytes) {
  return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0;
}

}  // namespace

template <class T>
void dropout(const T* x, T* y, uint8_t* mask, int64_t n, uint32_t threshold, float scale,
             uint64_t seed, const uint64_t* seed_at, uint64_t offset, const DropoutLayout& layout,
             cudaStream_t stream) {
  if (n == 0) return;
  if (!layout.aligned4(n)) {
    launch(dropout_scattered<T>, blocks_for(n, kThreads), kThreads, stream, x, y, mask, n,
           threshold, scale, seed, seed_at, offset, layout);
    check_launch("dropout");
    return;
  }
  const unsigned grid = blocks_for((n + 3) / 4, kThreads);
  bool vec = false;
  if constexpr (std::is_same_v<T, float>) {
    vec = aligned(x, 16) && aligned(y, 16) && aligned(mask, 4);
    if (vec)
      launch(dropout_kernel<float, true>, grid, kThreads, stream, x, y, mask, n, threshold, scale,
             seed, seed_at, offset, layout);
  }
  if (!vec)
    launch(dropout_kernel<T, false>, grid, kThreads, stream, x, y, mask, n, threshold, scale, seed,
           seed_at, offset, layout);
  check_launch("dropout");
}

template <class T>
void dropout_undo(const T* grad_y, const uint8_t* mask, const T* relu_mask, T* grad_x, int64_t n,
                  float scale, cudaStream_t stream) {
  if (n == 0) return;
  const unsigned grid = blocks_for((n + 3) / 4, kThreads);
  bool vec = false;
  if constexpr (std::is_same_v<T, float>) {
    vec = !relu_mask && aligned(grad_y, 16) && aligned(grad_x, 16) && aligned(mask, 4);
    if (vec)
      launch(dropout_undo_kernel<float, true>, grid, kThreads, stream, grad_y, mask, relu_mask,
             grad_x, n, scale);
  }
  if (!vec)
    launch(dropout_undo_kernel<T, false>, grid, kThreads, stream, grad_y, mask, relu_mask, grad_x,
           n, scale);
  check_launch("dropout_undo");
}

template void dropout(const float*, float*, uint8_t*, int64_t, uint32_t, float, uint64_t,
                      const uint64_t*, uint64_t, const DropoutLayout&, cudaStream_t);
template void dropout(const uint16_t*, uint16_t*, uint8_t*, int64_t, uint32_t, float, uint64_t,
                      const uint64_t*, uint64_t, const DropoutLayout&, cudaStream_t);
template void dropout_undo(const float*, const uint8_t*, const float*, float*, int64_t, float,
                           cudaStream_t);
template void dropout_undo(const uint16_t*, const uint8_t*, const uint16_t*, uint16_t*, int64_t,
                           float, cudaStream_t);

}  // namespace alexnet_ext::cuda
