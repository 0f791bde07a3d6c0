// Binding of max pooling with switches (max_pool.h) for NumPy arrays and DeviceArrays, and the one
// geometry check of both pooling ops. max_pool_undo range-checks the switches in the kernel: on
// the host it raises at once; on the GPU it never waits, the verdict is raised at the next
// synchronisation (a deferred check, cuda/report.h).
#include <array>
#include <optional>
#include <string>
#include <type_traits>

#include "max_pool.h"
#include "python/pool_layout.h"
#include "python/view.h"

namespace alexnet_ext::binding {

void check_pool(const PoolGeometry& g) {
  if (!pool_geometry_ok(g)) throw py::value_error("pool geometry: inconsistent sizes");
}

// The geometry in the layout named by the op's layout argument.
PoolGeometry with_layout(const PoolGeometry& g, const std::string& layout) {
  PoolGeometry out = g;
  out.nhwc = pool_nhwc(layout);
  return out;
}

namespace {
// bad: the flat index in switches (shape `dims`, in its own layout) of a bad value.
std::string bad_switch_message(int64_t value, int64_t bad, std::array<int64_t, 4> dims, int64_t h,
                               int64_t w) {
  std::array<int64_t, 4> at{};
  for (int i = 3; i >= 0; --i) {
    at[i] = bad % dims[i];
    bad /= dims[i];
  }
  return "switches: expected flat indices in [0, " + std::to_string(h * w) + ") (H*W of a " +
         std::to_string(h) + "x" + std::to_string(w) + " image), got " + std::to_string(value) +
         " at index (" + std::to_string(at[0]) + ", " + std::to_string(at[1]) + ", " +
         std::to_string(at[2]) + ", " + std::to_string(at[3]) + ")";
}
}  // namespace

void bind_max_pool(py::module_& m, py::module_* cuda) {
  def_op(m, cuda, "max_pool", [](View x, View y, View switches, const PoolGeometry& geometry,
                                 const std::string& layout) {
    const PoolGeometry g = with_layout(geometry, layout);
    check_pool(g);
    expect_shape(x, layout_shape(g.n, g.c, g.h, g.w, g.nhwc), "x");
    expect_shape(y, layout_shape(g.n, g.c, g.ho, g.wo, g.nhwc), "y");
    expect_shape(switches, layout_shape(g.n, g.c, g.ho, g.wo, g.nhwc), "switches");
    Place at({&x, &y, &switches});
    with_real(at, x, "x", [&](auto t) {
      using T = decltype(t);
      const T* xp = x.data<T>("x");
      T* yp = y.mut<T>("y");
      with_switches(switches, g.h * g.w, [&](auto* s) { ALEXNET_EXT_KERNELS(max_pool)(at, xp, yp, s, g); });
    });
  }, py::arg("x"), py::arg("y"), py::arg("switches"), py::arg("geometry"),
     py::arg("layout") = "NCHW");

  def_op(m, cuda, "max_pool_undo", [](View grad_y, View switches, View grad_x,
                                      std::optional<View> relu_y, const std::string& layout) {
    const bool nhwc = pool_nhwc(layout);
    expect_ndim(grad_y, 4, "grad_y", nhwc ? "(N, Ho, Wo, C)" : "(N, C, Ho, Wo)");
    expect_ndim(grad_x, 4, "grad_x", nhwc ? "(N, H, W, C)" : "(N, C, H, W)");
    const Dims o = layout_dims(grad_y, nhwc), i = layout_dims(grad_x, nhwc);
    const int64_t n = o.n, c = o.c, ho = o.h, wo = o.w, h = i.h, w = i.w;
    expect_shape(grad_x, layout_shape(n, c, h, w, nhwc), "grad_x");
    expect_shape(switches, grad_y.shape, "switches");
    if (relu_y) expect_shape(*relu_y, grad_x.shape, "relu_y");
    // NCHW: N*C planes of one channel; NHWC: N planes of C interleaved channels (max_pool.h).
    const int64_t planes = nhwc ? n : n * c, inner = nhwc ? c : 1;
    const std::array<int64_t, 4> dims{grad_y.shape[0], grad_y.shape[1], grad_y.shape[2],
                                      grad_y.shape[3]};
    Place at({&grad_y, &switches, &grad_x, relu_y ? &*relu_y : nullptr});
    with_real(at, grad_y, "grad_y", [&](auto t) {
      using T = decltype(t);
      const T* gy = grad_y.data<T>("grad_y");
      T* gx = grad_x.mut<T>("grad_x");
      const T* ry = relu_y ? relu_y->data<T>("relu_y") : nullptr;
      with_index(switches, "switches", false, [&](auto* s) {
        int64_t bad = -1, value = 0;
        if (!at.gpu()) {
          if constexpr (std::is_same_v<T, float>) {  // with_real: bf16 never runs on the host
            {
              py::gil_scoped_release release;
              bad = cpu::max_pool_undo(gy, s, gx, planes, h * w, ho * wo, inner, ry);
            }
            if (bad >= 0) value = static_cast<int64_t>(s[bad]);
          }
        }
#ifdef ALEXNET_EXT_WITH_CUDA
        else {
          // The kernel skips a bad switch (nothing written out of bounds) and records it.
          launch_deferred(at, "max_pool_undo", s, [=](const cuda::DeferredRecord& r) {
            return bad_switch_message(r.value, static_cast<int64_t>(r.bad.first), dims, h, w);
          }, [&](auto* bad) {
            cuda::max_pool_undo(gy, s, gx, planes, h * w, ho * wo, bad, at.stream(), inner, ry);
          });
        }
#endif
        if (bad >= 0) throw py::value_error(bad_switch_message(value, bad, dims, h, w));
      });
    });
  }, py::arg("grad_y"), py::arg("switches"), py::arg("grad_x"), py::arg("relu_y") = py::none(),
     py::arg("layout") = "NCHW");
}

}  // namespace alexnet_ext::binding
