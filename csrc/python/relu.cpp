// Binding of ReLU (relu.h) for NumPy arrays and DeviceArrays.
#include "python/view.h"
#include "relu.h"

namespace alexnet_ext::binding {

void bind_relu(py::module_& m, py::module_* cuda) {
  def_op(m, cuda, "relu", [](View x, View out) {
    expect_same_shape(out, x, "out", "x");
    Place at({&x, &out});
    const float* xp = x.data<float>("x");
    float* o = out.mut<float>("out");
    const int64_t n = x.size();
    ALEXNET_EXT_DISPATCH(at, cpu::relu(xp, o, n), cuda::relu(xp, o, n, stream));
  }, py::arg("x"), py::arg("out"));

  def_op(m, cuda, "relu_undo", [](View grad_y, View y, View out) {
    expect_same_shape(y, grad_y, "y", "grad_y");
    expect_same_shape(out, grad_y, "out", "grad_y");
    Place at({&grad_y, &y, &out});
    const float *gy = grad_y.data<float>("grad_y"), *yp = y.data<float>("y");
    float* o = out.mut<float>("out");
    const int64_t n = grad_y.size();
    ALEXNET_EXT_DISPATCH(at, cpu::relu_undo(gy, yp, o, n), cuda::relu_undo(gy, yp, o, n, stream));
  }, py::arg("grad_y"), py::arg("y"), py::arg("out"));
}

}  // namespace alexnet_ext::binding
