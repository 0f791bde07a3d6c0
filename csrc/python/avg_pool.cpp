// Bindings for csrc/cpu/avg_pool.cpp (average pooling over real pixels, and its gradient).
#include "avg_pool.h"
#include "python/array.h"

namespace alexnet_ext::binding {

namespace {

PoolGeometry geometry(const py::tuple& t) {
  if (t.size() != 12) throw py::value_error("pool geometry: expected 12 integers");
  int64_t v[12];
  for (int i = 0; i < 12; ++i) v[i] = t[i].cast<int64_t>();
  PoolGeometry g{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11]};
  // Backstop for direct callers; alexnet_ext.ops.avg_pool checks all of this with better messages.
  if (!pool_geometry_ok(g)) throw py::value_error("pool geometry: inconsistent sizes");
  return g;
}

}  // namespace

void bind_avg_pool(py::module_& m) {
  m.def("avg_pool", [](FArray x, FArray y, py::tuple geo) {
    const PoolGeometry g = geometry(geo);
    expect_shape(x, {g.n, g.c, g.h, g.w}, "x");
    expect_shape(y, {g.n, g.c, g.ho, g.wo}, "y");
    float* yo = writable(y, "y");
    py::gil_scoped_release release;
    cpu::avg_pool(x.data(), yo, g);
  }, py::arg("x").noconvert(), py::arg("y").noconvert(), py::arg("geometry"));

  m.def("avg_pool_undo", [](FArray grad_y, FArray grad_x, py::tuple geo) {
    const PoolGeometry g = geometry(geo);
    expect_shape(grad_y, {g.n, g.c, g.ho, g.wo}, "grad_y");
    expect_shape(grad_x, {g.n, g.c, g.h, g.w}, "grad_x");
    float* gx = writable(grad_x, "grad_x");
    py::gil_scoped_release release;
    cpu::avg_pool_undo(grad_y.data(), gx, g);
  }, py::arg("grad_y").noconvert(), py::arg("grad_x").noconvert(), py::arg("geometry"));
}

}  // namespace alexnet_ext::binding
