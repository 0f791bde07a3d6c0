// Bindings for csrc/cpu/relu.cpp.
#include "relu.h"
#include "python/array.h"
#include "python/same_shape.h"

namespace alexnet_ext::binding {

void bind_relu(py::module_& m) {
  m.def("relu", [](FArray x, FArray out) {
    expect_same_shape(out, x, "out", "x");
    float* o = writable(out, "out");
    const int64_t n = x.size();
    py::gil_scoped_release release;
    cpu::relu(x.data(), o, n);
  }, py::arg("x").noconvert(), py::arg("out").noconvert());

  m.def("relu_undo", [](FArray grad_y, FArray y, FArray out) {
    expect_same_shape(y, grad_y, "y", "grad_y");
    expect_same_shape(out, grad_y, "out", "grad_y");
    float* o = writable(out, "out");
    const int64_t n = grad_y.size();
    py::gil_scoped_release release;
    cpu::relu_undo(grad_y.data(), y.data(), o, n);
  }, py::arg("grad_y").noconvert(), py::arg("y").noconvert(), py::arg("out").noconvert());
}

}  // namespace alexnet_ext::binding
