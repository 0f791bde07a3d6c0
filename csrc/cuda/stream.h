// The package's current CUDA stream, per host thread. Default: the legacy default stream (handle
// 0), which orders our work with other libraries' default-stream work (PyTorch's, say) without
// any explicit synchronisation. alexnet_ext.cuda.stream(s) selects another one.
#pragma once
#include <cuda_runtime.h>

namespace alexnet_ext::cuda {

inline cudaStream_t& current_stream_slot() {
  thread_local cudaStream_t s = nullptr;
  return s;
}
inline cudaStream_t current_stream() { return current_stream_slot(); }
inline void set_current_stream(cudaStream_t s) { current_stream_slot() = s; }

// Stream handles as the DLPack and CUDA Array Interface specs write them: 1 is the legacy default
// stream, 2 the per-thread default stream, anything else the cudaStream_t pointer value.
inline long long stream_to_int(cudaStream_t s) {
  if (s == nullptr || s == cudaStreamLegacy) return 1;
  if (s == cudaStreamPerThread) return 2;
  return static_cast<long long>(reinterpret_cast<intptr_t>(s));
}
inline cudaStream_t stream_from_int(long long v) {
  if (v == 1) return cudaStreamLegacy;
  if (v == 2) return cudaStreamPerThread;
  return reinterpret_cast<cudaStream_t>(static_cast<intptr_t>(v));
}

}  // namespace alexnet_ext::cuda
