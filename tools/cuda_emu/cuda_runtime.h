// A stand-in for <cuda_runtime.h> that compiles CUDA kernel sources as plain C++ and runs them on
// the CPU: every thread of a block is an OS thread, __syncthreads() a real barrier, __shared__
// variables are statics shared by the block's threads (blocks run one after another), device
// memory is host memory. Only what csrc/cuda/conv.cu uses is provided.
//
// Purpose: a GPU-less machine can execute the kernels' index arithmetic, predication, tiling,
// split-K and epilogues end to end, and ThreadSanitizer can check the barriers (a missing
// __syncthreads between a shared-memory write and a read of another thread is a data race here).
// It says nothing about performance, warp-level behaviour or the real memory model.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(8))) int2 { int x, y; };
inline int2 make_int2(int x, int y) { return {x, y}; }

extern thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

template <class T>
inline T __ldg(const T* p) { return *p; }
inline unsigned __umulhi(unsigned a, unsigned b) {
  return static_cast<unsigned>((static_cast<uint64_t>(a) * b) >> 32);
}
void __syncthreads();

typedef struct CUstream_st* cudaStream_t;
enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1 };
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };
inline const char* cudaGetErrorName(cudaError_t) { return "cudaErrorEmulated"; }
inline const char* cudaGetErrorString(cudaError_t) { return "emulated error"; }
cudaError_t cudaGetLastError();
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);

namespace emu {
// Runs `body` once per thread of every block of the grid (blocks in order, threads concurrently).
void run_grid(dim3 grid, dim3 block, const std::function<void()>& body);
}  // namespace emu

template <class... P, class... A>
void launch(void (*kernel)(P...), dim3 grid, dim3 block, cudaStream_t, A... args) {
  emu::run_grid(grid, block, [&] { kernel(args...); });
}
