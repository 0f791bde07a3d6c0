// What the CUDA runtime says about this machine. Implemented in cuda/device.cu when the package
// is built with CUDA; the binding reports "built without CUDA" otherwise.
#pragma once
#include <string>
#include <vector>

namespace alexnet_ext {

struct CudaDeviceInfo {
  int index;
  std::string name;
  int major, minor;         // compute capability
  int multiprocessors;
  long long total_memory;   // bytes
};

struct CudaStatus {
  bool available;           // at least one usable device
  std::string reason;       // why not, when !available
  int runtime_version;      // CUDART_VERSION the module was built with
  int driver_version;       // 0 when there is no driver
  std::vector<CudaDeviceInfo> devices;
};

#ifdef ALEXNET_EXT_WITH_CUDA
CudaStatus cuda_status();
#endif

}  // namespace alexnet_ext
