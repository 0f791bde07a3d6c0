// Bindings for csrc/cpu/avg_pool.cpp (average pooling over real pixels, and its gradient).
#include "avg_pool.h"
#include "python/array.h"
#ifdef ALEXNET_EXT_WITH_CUDA
#include "python/cuda_array.h"
#endif

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

#ifdef ALEXNET_EXT_WITH_CUDA
// The same functions on _core.cuda, for DeviceArrays (cuda/avg_pool.cu).
void bind_avg_pool_cuda(py::module_& m) {
  m.def("avg_pool", [](const DeviceArray& x, const DeviceArray& y, py::tuple geo) {
    const PoolGeometry g = geometry(geo);
    expect_dshape(x, {g.n, g.c, g.h, g.w}, "x");
    expect_dshape(y, {g.n, g.c, g.ho, g.wo}, "y");
    const float* xp = dptr<float>(x, "x");
    float* yp = dptr_mut<float>(y, "y");
    DeviceScope scope(common_device({&x, &y}));
    const cudaStream_t stream = cuda::current_stream();
    py::gil_scoped_release release;
    cuda::avg_pool(xp, yp, g, stream);
  }, py::arg("x"), py::arg("y"), py::arg("geometry"));

  m.def("avg_pool_undo", [](const DeviceArray& grad_y, const DeviceArray& grad_x, py::tuple geo) {
    const PoolGeometry g = geometry(geo);
    expect_dshape(grad_y, {g.n, g.c, g.ho, g.wo}, "grad_y");
    expect_dshape(grad_x, {g.n, g.c, g.h, g.w}, "grad_x");
    const float* gyp = dptr<float>(grad_y, "grad_y");
    float* gxp = dptr_mut<float>(grad_x, "grad_x");
    DeviceScope scope(common_device({&grad_y, &grad_x}));
    const cudaStream_t stream = cuda::current_stream();
    py::gil_scoped_release release;
    cuda::avg_pool_undo(gyp, gxp, g, stream);
  }, py::arg("grad_y"), py::arg("grad_x"), py::arg("geometry"));
}
#endif  // ALEXNET_EXT_WITH_CUDA

}  // namespace alexnet_ext::binding
