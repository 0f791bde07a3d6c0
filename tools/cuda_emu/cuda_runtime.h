// A stand-in for <cuda_runtime.h>: the package's CUDA sources (csrc/cuda/*.cu, the bindings) are
// compiled as plain C++ against it and run on the CPU. Used two ways:
//   - tools/cuda_emu/run.sh: conv*.cu alone, with its own harness (also under ASan/UBSan/TSan);
//   - ALEXNET_EXT_CUDA_EMULATION=ON: the whole package, so `pytest -m cuda` runs on a CPU.
//
// Execution model (emu.cpp):
//   - a kernel's blocks run one after another; the threads of a block run as fibers (or OS threads
//     with -DEMU_OS_THREADS, for ThreadSanitizer), __syncthreads() is a barrier, __shared__
//     variables are statics shared by the block, and warp operations (__shfl_xor_sync,
//     __match_any_sync, __syncwarp) exchange values among the lanes their mask names;
//   - device memory is host memory from an allocation registry that knows each block's device,
//     so a kernel given a pointer of another device (without peer access) or a host pointer
//     fails the launch, as it would fault on a GPU;
//   - streams are queues that run only when something must wait for them (a synchronize, an
//     event, a dependent stream, a blocking copy). Work whose ordering the program forgot
//     (a missing event, a staging buffer reused too early) then runs late and the results show it;
//   - stream capture records a stream's work instead of queuing it, and refuses what CUDA refuses
//     during a capture (emu_graph.cpp, emu_capture.h); a graph launch queues the recording;
//   - several devices (ALEXNET_EXT_EMU_DEVICES, default 2) with peer access between them unless
//     ALEXNET_EXT_EMU_PEER=0, so multi-GPU code paths run on one CPU.
// It says nothing about performance, warp scheduling, cp.async or the GPU memory model.
#pragma once
#include <math.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <type_traits>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define CUDART_VERSION 13000

// ----------------------------------------------------------------------------- vector types
struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(8))) float2 { float x, y; };
struct __attribute__((aligned(8))) int2 { int x, y; };
struct __attribute__((aligned(4))) uchar4 { unsigned char x, y, z, w; };
inline int2 make_int2(int x, int y) { return {x, y}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline uchar4 make_uchar4(unsigned char x, unsigned char y, unsigned char z, unsigned char w) {
  return {x, y, z, w};
}

extern thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

// ----------------------------------------------------------------------------- device functions
template <class T>
inline T __ldg(const T* p) { return *p; }
inline unsigned __umulhi(unsigned a, unsigned b) {
  return static_cast<unsigned>((static_cast<uint64_t>(a) * b) >> 32);
}
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
// IEEE round-to-nearest arithmetic: what plain C++ float/double operations are on x86-64 (SSE,
// no FMA contraction without -mfma).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline float __expf(float a) { return expf(a); }
inline float __logf(float a) { return logf(a); }
inline float __powf(float a, float b) { return powf(a, b); }
inline float rsqrtf(float a) { return 1.f / sqrtf(a); }
inline float __saturatef(float a) { return a < 0.f ? 0.f : (a > 1.f ? 1.f : a); }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
template <class T>
inline T min(T a, T b) { return b < a ? b : a; }
template <class T>
inline T max(T a, T b) { return a < b ? b : a; }

void __syncthreads();

namespace emu {
// Warp operations (those the kernels use: __shfl_xor_sync, __match_any_sync, __syncwarp).
// Every lane named in `mask` deposits `value`; each gets all 32 deposits back in `all` (lanes not
// in the mask: unspecified). Fails on lanes that exited or disagree on the mask (a GPU would hang
// or be undefined).
void warp_exchange(unsigned mask, uint64_t value, uint64_t* all);
int lane_id();
void atomic_lock();
void atomic_unlock();
template <class T>
uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8, "warp operands are at most 8 bytes");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <class T>
T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}
// Reports a fault a GPU would hang or crash on, and aborts (emu_kernels.cpp).
[[noreturn]] void fail(const std::string& what);
void require_lane(unsigned mask, int lane, const char* op);
}  // namespace emu

inline void __syncwarp(unsigned mask = 0xFFFFFFFFu) {
  uint64_t all[32];
  emu::warp_exchange(mask, 0, all);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  uint64_t all[32];
  emu::warp_exchange(mask, emu::to_bits(v), all);
  const int lane = emu::lane_id();
  int src = lane ^ lane_mask;
  if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;  // outside the segment: own value
  emu::require_lane(mask, src, "__shfl_xor_sync");
  return emu::from_bits<T>(all[src]);
}
template <class T>
unsigned __match_any_sync(unsigned mask, T v) {
  uint64_t all[32];
  const uint64_t mine = emu::to_bits(v);
  emu::warp_exchange(mask, mine, all);
  unsigned same = 0;
  for (int l = 0; l < 32; ++l)
    if ((mask >> l & 1u) && all[l] == mine) same |= 1u << l;
  return same;
}

// Atomics (the ones the kernels use): fibers run on one OS thread, but -DEMU_OS_THREADS runs a
// block's threads concurrently, hence the lock.
template <class T, class F>
T atomic_update(T* p, F f) {
  emu::atomic_lock();
  const T old = *p;
  *p = f(old);
  emu::atomic_unlock();
  return old;
}
template <class T>
T atomicAdd(T* p, T v) { return atomic_update(p, [v](T old) { return old + v; }); }
template <class T>
T atomicMin(T* p, T v) { return atomic_update(p, [v](T old) { return v < old ? v : old; }); }

// ----------------------------------------------------------------------------- runtime API
typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;
#define cudaStreamLegacy (reinterpret_cast<cudaStream_t>(0x1))
#define cudaStreamPerThread (reinterpret_cast<cudaStream_t>(0x2))

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorPeerAccessUnsupported = 217,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchFailure = 719,
  cudaErrorPeerAccessAlreadyEnabled = 704,
  cudaErrorPeerAccessNotEnabled = 705,
  // Stream capture (emu_graph.cpp), numbered as in CUDA's driver_types.h.
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureMerge = 902,
  cudaErrorStreamCaptureUnmatched = 903,
  cudaErrorStreamCaptureUnjoined = 904,
  cudaErrorStreamCaptureIsolation = 905,
  cudaErrorStreamCaptureImplicit = 906,
  cudaErrorCapturedEvent = 907,
  cudaErrorStreamCaptureWrongThread = 908,
};
typedef cudaError_t cudaError;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaMemoryType {
  cudaMemoryTypeUnregistered = 0,
  cudaMemoryTypeHost = 1,
  cudaMemoryTypeDevice = 2,
  cudaMemoryTypeManaged = 3,
};
enum cudaDeviceAttr { cudaDevAttrMultiProcessorCount = 16 };
struct cudaPointerAttributes {
  cudaMemoryType type;
  int device;
  void* devicePointer;
  void* hostPointer;
};
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  int maxThreadsPerBlock;
  int multiProcessorCount;
  int major;
  int minor;
};
constexpr unsigned cudaStreamDefault = 0, cudaStreamNonBlocking = 1;
constexpr unsigned cudaEventDefault = 0, cudaEventDisableTiming = 2;
constexpr unsigned cudaHostAllocDefault = 0, cudaHostRegisterDefault = 0;

const char* cudaGetErrorName(cudaError_t err);
const char* cudaGetErrorString(cudaError_t err);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaDriverGetVersion(int* version);
cudaError_t cudaRuntimeGetVersion(int* version);
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaGetDevice(int* device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaDeviceCanAccessPeer(int* can, int device, int peer);
cudaError_t cudaDeviceEnablePeerAccess(int peer, unsigned flags);
cudaError_t cudaDeviceDisablePeerAccess(int peer);
cudaError_t cudaMalloc(void** ptr, size_t bytes);
cudaError_t cudaFree(void* ptr);
cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned flags);
cudaError_t cudaMallocHost(void** ptr, size_t bytes);
cudaError_t cudaFreeHost(void* ptr);
cudaError_t cudaHostRegister(void* ptr, size_t bytes, unsigned flags);
cudaError_t cudaHostUnregister(void* ptr);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attr, const void* ptr);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream = nullptr);
cudaError_t cudaMemcpyPeerAsync(void* dst, int dst_device, const void* src, int src_device,
                                size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch,
                              size_t width, size_t height, cudaMemcpyKind kind,
                              cudaStream_t stream = nullptr);
cudaError_t cudaMemset(void* ptr, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream = nullptr);
cudaError_t cudaStreamCreate(cudaStream_t* stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamQuery(cudaStream_t stream);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags = 0);
cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream = nullptr);
cudaError_t cudaEventQuery(cudaEvent_t event);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);

// Stream capture and graphs (emu_graph.cpp). A graph here is the captured work in the order it
// was queued (one valid schedule of the captured DAG); a launch queues it as one item.
typedef struct CUgraph_st* cudaGraph_t;
typedef struct CUgraphExec_st* cudaGraphExec_t;
typedef struct CUgraphNode_st* cudaGraphNode_t;
struct cudaGraphEdgeData;
enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2,
};
enum cudaStreamCaptureStatus {
  cudaStreamCaptureStatusNone = 0,
  cudaStreamCaptureStatusActive = 1,
  cudaStreamCaptureStatusInvalidated = 2,
};
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status);
// The CUDA 13 signature (edge data); only the first three are filled in here.
cudaError_t cudaStreamGetCaptureInfo(cudaStream_t stream, cudaStreamCaptureStatus* status,
                                     unsigned long long* id = nullptr, cudaGraph_t* graph = nullptr,
                                     const cudaGraphNode_t** deps = nullptr,
                                     const cudaGraphEdgeData** edges = nullptr,
                                     size_t* num_deps = nullptr);
cudaError_t cudaThreadExchangeStreamCaptureMode(cudaStreamCaptureMode* mode);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph,
                                 unsigned long long flags = 0);
cudaError_t cudaGraphInstantiateWithFlags(cudaGraphExec_t* exec, cudaGraph_t graph,
                                          unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);

// ----------------------------------------------------------------------------- launches
namespace emu {
// Runs `body` once per thread of every block of the grid (blocks in order).
void run_grid(dim3 grid, dim3 block, const std::function<void()>& body);
// Launch-time checks a GPU makes (block and grid limits, the stream's device); on failure the
// launch is not queued and cudaGetLastError returns the error.
bool check_launch_config(dim3 grid, dim3 block, cudaStream_t stream);
// A pointer argument must be null or point into memory the current device can read.
bool check_kernel_pointer(const void* p, int index);
// Queues `work` on `stream` (nullptr: the current device's legacy default stream), or records it
// into the stream's capture; an error (capture refused it) is also left as the last error.
cudaError_t enqueue(cudaStream_t stream, std::function<void()> work);

template <class A>
bool check_arg(const A& a, int index) {
  if constexpr (std::is_pointer_v<A>)
    return check_kernel_pointer(static_cast<const void*>(a), index);
  else
    return true;
}
}  // namespace emu

// Replaces kernel<<<grid, block, 0, stream>>>(args...) (csrc/cuda/common.cuh's launch()).
template <class... P, class... A>
void launch(void (*kernel)(P...), dim3 grid, dim3 block, cudaStream_t stream, A... args) {
  if (!emu::check_launch_config(grid, block, stream)) return;
  int index = 0;
  bool ok = true;
  ((ok = ok && emu::check_arg(args, index++)), ...);
  if (!ok) return;
  emu::enqueue(stream, [=] { emu::run_grid(grid, block, [&] { kernel(args...); }); });
}

// Tensor-core warp instructions (mma.sync, ldmatrix) and the tf32/bf16 conversions.
#include "mma_emu.h"
