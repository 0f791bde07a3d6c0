// alexnet_ext.cuda.DeviceArray: a dense, C-contiguous array in GPU memory, and the helpers the
// CUDA op bindings use to take one apart. Memory comes from the caching allocator, or belongs to
// another library's array (imported zero-copy through DLPack or the CUDA Array Interface), in
// which case `holder` keeps that owner alive.
#pragma once
#ifdef ALEXNET_EXT_WITH_CUDA
#include <cstdint>
#include <initializer_list>
#include <memory>
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

  int64_t size() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  size_t nbytes() const { return static_cast<size_t>(size()) * dtype.itemsize(); }
};

DeviceArray device_empty(const std::vector<int64_t>& shape, const py::dtype& dtype, int device);

// The data pointer of `a` as T*, after checking that its dtype is T.
template <class T>
T* dptr(const DeviceArray& a, const char* name) {
  if (!a.dtype.is(py::dtype::of<T>()))
    throw py::type_error(std::string(name) + ": expected dtype " +
                         py::str(py::dtype::of<T>()).cast<std::string>() + ", got " +
                         py::str(a.dtype).cast<std::string>());
  return reinterpret_cast<T*>(a.ptr);
}

template <class T>
T* dptr_mut(const DeviceArray& a, const char* name) {
  if (a.readonly) throw py::value_error(std::string(name) + ": array is read-only");
  return dptr<T>(a, name);
}

inline void expect_dshape(const DeviceArray& a, std::initializer_list<int64_t> shape, const char* name) {
  bool ok = a.shape.size() == shape.size();
  size_t i = 0;
  for (int64_t d : shape) ok = ok && a.shape[i++] == d;
  if (!ok) throw py::value_error(std::string(name) + ": shape does not match the other arguments");
}

// Makes an op's device current for its scope (cuda/common.cuh).
using cuda::DeviceScope;

// All arrays of one op live on one device; returns it.
int common_device(std::initializer_list<const DeviceArray*> arrays);

}  // namespace alexnet_ext::binding
#endif  // ALEXNET_EXT_WITH_CUDA
