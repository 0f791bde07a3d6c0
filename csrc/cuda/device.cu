// CUDA runtime query behind alexnet_ext.cuda_available(). The runtime is linked statically, so a
// machine with nvcc but no driver or no GPU still imports the module; the runtime's own error
// string becomes the reason shown to the user.
#include <cuda_runtime.h>

#include "device.h"

namespace alexnet_ext {

CudaStatus cuda_status() {
  CudaStatus s{false, "", CUDART_VERSION, 0, {}};
  cudaDriverGetVersion(&s.driver_version);
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    s.reason = std::string("CUDA runtime: ") + cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return s;
  }
  if (count == 0) {
    s.reason = "CUDA runtime: no CUDA device found";
    return s;
  }
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp p{};
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    s.devices.push_back({i, p.name, p.major, p.minor, p.multiProcessorCount,
                         static_cast<long long>(p.totalGlobalMem)});
  }
  s.available = !s.devices.empty();
  if (!s.available) s.reason = "CUDA runtime: no device could be queried";
  return s;
}

}  // namespace alexnet_ext
