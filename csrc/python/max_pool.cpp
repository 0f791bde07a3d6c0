// Bindings for csrc/cpu/max_pool.cpp (max pooling with switches, and its gradient).
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "max_pool.h"
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
  // Backstop for direct callers; alexnet_ext.ops.max_pool checks all of this with better messages.
  if (!pool_geometry_ok(g)) throw py::value_error("pool geometry: inconsistent sizes");
  return g;
}

// Calls f with switches as an int32 or int64 array (the kernels are templated on it).
template <class F>
void with_switches(const py::object& obj, const char* name, F&& f) {
  if (Array<int32_t>::check_(obj)) {
    auto a = py::reinterpret_borrow<Array<int32_t>>(obj);
    f(a);
  } else if (Array<int64_t>::check_(obj)) {
    auto a = py::reinterpret_borrow<Array<int64_t>>(obj);
    f(a);
  } else {
    throw py::type_error(std::string(name) + ": expected a C-contiguous int32 or int64 array");
  }
}

std::string bad_switch_message(int64_t value, int64_t bad, int64_t n, int64_t c, int64_t h,
                               int64_t w, int64_t ho, int64_t wo) {
  (void)n;
  const int64_t q = bad % (ho * wo), pl = bad / (ho * wo);
  return "switches: expected flat indices in [0, " + std::to_string(h * w) + ") (H*W of a " +
         std::to_string(h) + "x" + std::to_string(w) + " image), got " + std::to_string(value) +
         " at index (" + std::to_string(pl / c) + ", " + std::to_string(pl % c) + ", " +
         std::to_string(q / wo) + ", " + std::to_string(q % wo) + ")";
}

#ifdef ALEXNET_EXT_WITH_CUDA
// Calls f(I* switches) with the DeviceArray's data as int32 or int64.
template <class F>
void with_device_switches(const DeviceArray& a, bool writable_needed, F&& f) {
  if (a.dtype.is(py::dtype::of<int32_t>()))
    f(writable_needed ? dptr_mut<int32_t>(a, "switches") : dptr<int32_t>(a, "switches"));
  else if (a.dtype.is(py::dtype::of<int64_t>()))
    f(writable_needed ? dptr_mut<int64_t>(a, "switches") : dptr<int64_t>(a, "switches"));
  else
    throw py::type_error("switches: expected an int32 or int64 DeviceArray, got " +
                         py::str(a.dtype).cast<std::string>());
}
#endif

}  // namespace

void bind_max_pool(py::module_& m) {
  m.def("max_pool", [](FArray x, FArray y, py::object switches, py::tuple geo) {
    const PoolGeometry g = geometry(geo);
    expect_shape(x, {g.n, g.c, g.h, g.w}, "x");
    expect_shape(y, {g.n, g.c, g.ho, g.wo}, "y");
    float* yo = writable(y, "y");
    with_switches(switches, "switches", [&](auto& s) {
      using I = typename std::remove_reference_t<decltype(s)>::value_type;
      expect_shape(s, {g.n, g.c, g.ho, g.wo}, "switches");
      if (g.h * g.w - 1 > static_cast<int64_t>(std::numeric_limits<I>::max()))
        throw py::value_error("switches: int32 cannot index a plane of more than 2^31 - 1 pixels");
      I* so = writable(s, "switches");
      py::gil_scoped_release release;
      cpu::max_pool<I>(x.data(), yo, so, g);
    });
  }, py::arg("x").noconvert(), py::arg("y").noconvert(), py::arg("switches"),
     py::arg("geometry"));

  m.def("max_pool_undo", [](FArray grad_y, py::object switches, FArray grad_x) {
    if (grad_y.ndim() != 4) throw py::value_error("grad_y: expected 4 dimensions (N, C, Ho, Wo)");
    if (grad_x.ndim() != 4) throw py::value_error("grad_x: expected 4 dimensions (N, C, H, W)");
    const int64_t n = grad_y.shape(0), c = grad_y.shape(1);
    const int64_t ho = grad_y.shape(2), wo = grad_y.shape(3);
    const int64_t h = grad_x.shape(2), w = grad_x.shape(3);
    expect_shape(grad_x, {n, c, h, w}, "grad_x");
    float* gx = writable(grad_x, "grad_x");
    with_switches(switches, "switches", [&](auto& s) {
      using I = typename std::remove_reference_t<decltype(s)>::value_type;
      expect_shape(s, {n, c, ho, wo}, "switches");
      int64_t bad;
      {
        py::gil_scoped_release release;
        bad = cpu::max_pool_undo<I>(grad_y.data(), s.data(), gx, n * c, h * w, ho * wo);
      }
      if (bad >= 0)
        throw py::value_error(bad_switch_message(static_cast<int64_t>(s.data()[bad]), bad, n, c, h,
                                                 w, ho, wo));
    });
  }, py::arg("grad_y").noconvert(), py::arg("switches"), py::arg("grad_x").noconvert());
}

#ifdef ALEXNET_EXT_WITH_CUDA
// The same functions on _core.cuda, for DeviceArrays (cuda/max_pool.cu). max_pool_undo checks
// the switches on the GPU and reads the verdict back: one stream synchronisation per call.
void bind_max_pool_cuda(py::module_& m) {
  m.def("max_pool", [](const DeviceArray& x, const DeviceArray& y, const DeviceArray& switches,
                       py::tuple geo) {
    const PoolGeometry g = geometry(geo);
    expect_dshape(x, {g.n, g.c, g.h, g.w}, "x");
    expect_dshape(y, {g.n, g.c, g.ho, g.wo}, "y");
    expect_dshape(switches, {g.n, g.c, g.ho, g.wo}, "switches");
    const float* xp = dptr<float>(x, "x");
    float* yp = dptr_mut<float>(y, "y");
    DeviceScope scope(common_device({&x, &y, &switches}));
    const cudaStream_t stream = cuda::current_stream();
    with_device_switches(switches, true, [&](auto* s) {
      using I = std::remove_pointer_t<decltype(s)>;
      if (g.h * g.w - 1 > static_cast<int64_t>(std::numeric_limits<I>::max()))
        throw py::value_error("switches: int32 cannot index a plane of more than 2^31 - 1 pixels");
      py::gil_scoped_release release;
      cuda::max_pool(xp, yp, s, g, stream);
    });
  }, py::arg("x"), py::arg("y"), py::arg("switches"), py::arg("geometry"));

  m.def("max_pool_undo", [](const DeviceArray& grad_y, const DeviceArray& switches,
                            const DeviceArray& grad_x) {
    if (grad_y.shape.size() != 4) throw py::value_error("grad_y: expected 4 dimensions (N, C, Ho, Wo)");
    if (grad_x.shape.size() != 4) throw py::value_error("grad_x: expected 4 dimensions (N, C, H, W)");
    const int64_t n = grad_y.shape[0], c = grad_y.shape[1];
    const int64_t ho = grad_y.shape[2], wo = grad_y.shape[3];
    const int64_t h = grad_x.shape[2], w = grad_x.shape[3];
    expect_dshape(grad_x, {n, c, h, w}, "grad_x");
    expect_dshape(switches, {n, c, ho, wo}, "switches");
    const float* gyp = dptr<float>(grad_y, "grad_y");
    float* gxp = dptr_mut<float>(grad_x, "grad_x");
    const int dev = common_device({&grad_y, &switches, &grad_x});
    DeviceScope scope(dev);
    const cudaStream_t stream = cuda::current_stream();
    with_device_switches(switches, false, [&](auto* s) {
      cuda::BadValues bad{};
      {
        py::gil_scoped_release release;
        cuda::BadValueReport report(dev, stream);
        cuda::max_pool_undo(gyp, s, gxp, n * c, h * w, ho * wo, report.device_ptr(), stream);
        bad = report.read();
      }
      if (bad.count) {
        const auto pos = static_cast<int64_t>(bad.first);
        const auto value = static_cast<int64_t>(cuda::fetch_element(s, pos, stream));
        throw py::value_error(bad_switch_message(value, pos, n, c, h, w, ho, wo));
      }
    });
  }, py::arg("grad_y"), py::arg("switches"), py::arg("grad_x"));
}
#endif  // ALEXNET_EXT_WITH_CUDA

}  // namespace alexnet_ext::binding
