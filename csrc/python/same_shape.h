// Backstop shape check for ops on arrays of any rank (elementwise ops, dropout masks, optimizer
// state): b must have exactly a's shape. Like expect_shape in array.h, it keeps a direct _core call
// from reading or writing past the end of an array; alexnet_ext.ops gives the friendly errors.
#pragma once
#include <string>

#include "python/array.h"
#ifdef ALEXNET_EXT_WITH_CUDA
#include "python/cuda_array.h"
#endif

namespace alexnet_ext::binding {

inline void expect_same_shape(const py::array& b, const py::array& a, const char* b_name,
                              const char* a_name) {
  bool ok = a.ndim() == b.ndim();
  for (py::ssize_t i = 0; ok && i < a.ndim(); ++i) ok = a.shape(i) == b.shape(i);
  if (!ok)
    throw py::value_error(std::string(b_name) + ": expected the shape of " + a_name + " " +
                          shape_str(a) + ", got " + shape_str(b));
}

#ifdef ALEXNET_EXT_WITH_CUDA
inline std::string dshape_str(const DeviceArray& a) {
  std::string s = "(";
  for (size_t i = 0; i < a.shape.size(); ++i) s += (i ? ", " : "") + std::to_string(a.shape[i]);
  return s + (a.shape.size() == 1 ? ",)" : ")");
}

// The same check for DeviceArrays.
inline void expect_same_dshape(const DeviceArray& b, const DeviceArray& a, const char* b_name,
                               const char* a_name) {
  if (b.shape != a.shape)
    throw py::value_error(std::string(b_name) + ": expected the shape of " + a_name + " " +
                          dshape_str(a) + ", got " + dshape_str(b));
}
#endif

}  // namespace alexnet_ext::binding
