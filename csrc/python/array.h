// Helpers for the pybind11 layer. The Python wrappers in alexnet_ext/ops validate every argument
// and produce the user-facing errors; these checks are the backstop that keeps a direct call into
// _core from reading or writing out of bounds. Arrays are taken with .noconvert(), so pybind11
// never silently copies a non-contiguous or wrongly typed array (which would lose writes to out=).
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

namespace alexnet_ext::binding {

namespace py = pybind11;

template <class T>
using Array = py::array_t<T, py::array::c_style>;
using FArray = Array<float>;

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

inline void expect_shape(const py::array& a, std::initializer_list<int64_t> shape,
                         const char* name) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(shape.size());
  py::ssize_t i = 0;
  for (int64_t d : shape) ok = ok && i < a.ndim() && a.shape(i++) == d;
  if (!ok) {
    std::string want = "(";
    i = 0;
    for (int64_t d : shape) want += (i++ ? ", " : "") + std::to_string(d);
    throw py::value_error(std::string(name) + ": expected shape " + want + "), got " +
                          shape_str(a));
  }
}

template <class T>
T* writable(Array<T>& a, const char* name) {
  if (!a.writeable()) throw py::value_error(std::string(name) + ": array is read-only");
  return a.mutable_data();
}

// Optional float array (None -> nullptr) of an exact shape.
inline const float* optional_data(const py::object& obj, std::initializer_list<int64_t> shape,
                                  const char* name) {
  if (obj.is_none()) return nullptr;
  if (!FArray::check_(obj))
    throw py::type_error(std::string(name) + ": expected a C-contiguous float32 array or None");
  auto a = py::reinterpret_borrow<FArray>(obj);
  expect_shape(a, shape, name);
  return a.data();
}

}  // namespace alexnet_ext::binding
