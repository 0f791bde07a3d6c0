// Binding of the elementwise sum (add.h) for NumPy arrays and DeviceArrays.
#include "add.h"
#include "python/view.h"

namespace alexnet_ext::binding {

void bind_add(py::module_& m, py::module_* cuda) {
  def_op(m, cuda, "add", [](View a, View b, View out) {
    expect_same_shape(b, a, "b", "a");
    expect_same_shape(out, a, "out", "a");
    Place at({&a, &b, &out});
    const float *ap = a.data<float>("a"), *bp = b.data<float>("b");
    float* o = out.mut<float>("out");
    const int64_t n = a.size();
    ALEXNET_EXT_DISPATCH(at, cpu::add(ap, bp, o, n), cuda::add(ap, bp, o, n, stream));
  }, py::arg("a"), py::arg("b"), py::arg("out"));
}

}  // namespace alexnet_ext::binding
