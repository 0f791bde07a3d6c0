// Binding of average pooling (avg_pool.h) for NumPy arrays and DeviceArrays.
#include "avg_pool.h"
#include "python/view.h"

namespace alexnet_ext::binding {

void check_pool(const PoolGeometry& g);  // max_pool.cpp: the pooling ops' one geometry check

void bind_avg_pool(py::module_& m, py::module_* cuda) {
  def_op(m, cuda, "avg_pool", [](View x, View y, const PoolGeometry& g) {
    check_pool(g);
    expect_shape(x, {g.n, g.c, g.h, g.w}, "x");
    expect_shape(y, {g.n, g.c, g.ho, g.wo}, "y");
    Place at({&x, &y});
    const float* xp = x.data<float>("x");
    float* yp = y.mut<float>("y");
    ALEXNET_EXT_DISPATCH(at, cpu::avg_pool(xp, yp, g), cuda::avg_pool(xp, yp, g, stream));
  }, py::arg("x"), py::arg("y"), py::arg("geometry"));

  def_op(m, cuda, "avg_pool_undo", [](View grad_y, View grad_x, const PoolGeometry& g) {
    check_pool(g);
    expect_shape(grad_y, {g.n, g.c, g.ho, g.wo}, "grad_y");
    expect_shape(grad_x, {g.n, g.c, g.h, g.w}, "grad_x");
    Place at({&grad_y, &grad_x});
    const float* gy = grad_y.data<float>("grad_y");
    float* gx = grad_x.mut<float>("grad_x");
    ALEXNET_EXT_DISPATCH(at, cpu::avg_pool_undo(gy, gx, g), cuda::avg_pool_undo(gy, gx, g, stream));
  }, py::arg("grad_y"), py::arg("grad_x"), py::arg("geometry"));
}

}  // namespace alexnet_ext::binding
