// alexnet_ext.cuda.DeviceArray: a dense, C-contiguous array in GPU memory (the op bindings take
// it apart as a View, python/view.h). Memory comes from the caching allocator, or belongs to
// another library's array (imported zero-copy through DLPack or the CUDA Array Interface), in
// which case `holder` keeps that owner alive.
#pragma once
#ifdef ALEXNET_EXT_WITH_CUDA
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "cuda/common.cuh"
#include "cuda/stream.h"

namespace alexnet_ext::binding {

namespace py = pybind11;

struct DeviceArray {
  std::shared_ptr<void> holder;  // frees or releases the memory when the last view goes
  uintptr_t ptr = 0;
  std::vector<int64_t> shape;
  py::dtype dtype;
  int device = 0;
  bool readonly = false;

  int64_t size() const { return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<>()); }
  size_t nbytes() const { return static_cast<size_t>(size()) * dtype.itemsize(); }
};

DeviceArray device_empty(const std::vector<int64_t>& shape, const py::dtype& dtype, int device);

// Makes an op's device current for its scope (cuda/common.cuh).
using cuda::DeviceScope;

}  // namespace alexnet_ext::binding
#endif  // ALEXNET_EXT_WITH_CUDA
