// Binding of max pooling with switches (max_pool.h) for NumPy arrays and DeviceArrays, and the one
// geometry check of both pooling ops. max_pool_undo range-checks the switches in the kernel: on
// the host it raises at once; on the GPU it never waits, the verdict is raised at the next
// synchronisation (a deferred check, cuda/report.h).
#include <string>
#include <type_traits>

#include "max_pool.h"
#include "python/view.h"

namespace alexnet_ext::binding {

void check_pool(const PoolGeometry& g) {
  if (!pool_geometry_ok(g)) throw py::value_error("pool geometry: inconsistent sizes");
}

namespace {
std::string bad_switch_message(int64_t value, int64_t bad, int64_t c, int64_t h, int64_t w,
                               int64_t ho, int64_t wo) {
  const int64_t q = bad % (ho * wo), pl = bad / (ho * wo);
  return "switches: expected flat indices in [0, " + std::to_string(h * w) + ") (H*W of a " +
         std::to_string(h) + "x" + std::to_string(w) + " image), got " + std::to_string(value) +
         " at index (" + std::to_string(pl / c) + ", " + std::to_string(pl % c) + ", " +
         std::to_string(q / wo) + ", " + std::to_string(q % wo) + ")";
}
}  // namespace

void bind_max_pool(py::module_& m, py::module_* cuda) {
  def_op(m, cuda, "max_pool", [](View x, View y, View switches, const PoolGeometry& g) {
    check_pool(g);
    expect_shape(x, {g.n, g.c, g.h, g.w}, "x");
    expect_shape(y, {g.n, g.c, g.ho, g.wo}, "y");
    expect_shape(switches, {g.n, g.c, g.ho, g.wo}, "switches");
    Place at({&x, &y, &switches});
    with_real(at, x, "x", [&](auto t) {
      using T = decltype(t);
      const T* xp = x.data<T>("x");
      T* yp = y.mut<T>("y");
      with_switches(switches, g.h * g.w, [&](auto* s) { ALEXNET_EXT_KERNELS(max_pool)(at, xp, yp, s, g); });
    });
  }, py::arg("x"), py::arg("y"), py::arg("switches"), py::arg("geometry"));

  def_op(m, cuda, "max_pool_undo", [](View grad_y, View switches, View grad_x) {
    expect_ndim(grad_y, 4, "grad_y", "(N, C, Ho, Wo)");
    expect_ndim(grad_x, 4, "grad_x", "(N, C, H, W)");
    const int64_t n = grad_y.shape[0], c = grad_y.shape[1], ho = grad_y.shape[2],
                  wo = grad_y.shape[3], h = grad_x.shape[2], w = grad_x.shape[3];
    expect_shape(grad_x, {n, c, h, w}, "grad_x");
    expect_shape(switches, {n, c, ho, wo}, "switches");
    Place at({&grad_y, &switches, &grad_x});
    with_real(at, grad_y, "grad_y", [&](auto t) {
      using T = decltype(t);
      const T* gy = grad_y.data<T>("grad_y");
      T* gx = grad_x.mut<T>("grad_x");
      with_index(switches, "switches", false, [&](auto* s) {
        int64_t bad = -1, value = 0;
        if (!at.gpu()) {
          if constexpr (std::is_same_v<T, float>) {  // with_real: bf16 never runs on the host
            {
              py::gil_scoped_release release;
              bad = cpu::max_pool_undo(gy, s, gx, n * c, h * w, ho * wo);
            }
            if (bad >= 0) value = static_cast<int64_t>(s[bad]);
          }
        }
#ifdef ALEXNET_EXT_WITH_CUDA
        else {
          // The kernel skips a bad switch (nothing written out of bounds) and records it.
          launch_deferred(at, "max_pool_undo", s, [=](const cuda::DeferredRecord& r) {
            return bad_switch_message(r.value, static_cast<int64_t>(r.bad.first), c, h, w, ho, wo);
          }, [&](auto* bad) {
            cuda::max_pool_undo(gy, s, gx, n * c, h * w, ho * wo, bad, at.stream());
          });
        }
#endif
        if (bad >= 0) throw py::value_error(bad_switch_message(value, bad, c, h, w, ho, wo));
      });
    });
  }, py::arg("grad_y"), py::arg("switches"), py::arg("grad_x"));
}

}  // namespace alexnet_ext::binding
