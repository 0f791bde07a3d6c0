// Binding of normalize_batch (normalize_batch.h) for NumPy arrays and DeviceArrays. The offsets
// are data: on the host they are checked before anything is written (ValueError at once); on the
// GPU the kernel clamps a bad corner and the verdict is raised at the next synchronisation (a
// deferred check, cuda/report.h), so a training step never waits here.
#include <limits>
#include <string>
#include <type_traits>

#include "normalize_batch.h"
#include "python/view.h"

namespace alexnet_ext::binding {

namespace {
std::string bad_offset_message(int64_t pos, int64_t value, const NormalizeShape& g) {
  const int64_t b = pos / 3, j = pos % 3;
  static const char* what[] = {"crop top", "crop left", "flip flag"};
  const std::string range = j == 0   ? "[0, " + std::to_string(g.h - g.s) + "]"
                            : j == 1 ? "[0, " + std::to_string(g.w - g.t) + "]"
                                     : "{0, 1}";
  return "offsets: offsets[" + std::to_string(b) + ", " + std::to_string(j) + "] (" + what[j] +
         ") = " + std::to_string(value) + " is outside " + range + " (a " + std::to_string(g.s) +
         "x" + std::to_string(g.t) + " crop of a " + std::to_string(g.h) + "x" +
         std::to_string(g.w) + " mean image)";
}
}  // namespace

void bind_normalize_batch(py::module_& m, py::module_* cuda) {
  def_op(m, cuda, "normalize_batch", [](View x, View mean, std::optional<View> offsets,
                                        std::optional<View> shift, float scale, View out) {
    expect_ndim(x, 4, "x", "(B, C, S, T)");
    expect_ndim(mean, 3, "mean", "(C, H, W)");
    NormalizeShape g{x.shape[0], x.shape[1], x.shape[2], x.shape[3], mean.shape[1], mean.shape[2]};
    expect_shape(mean, {g.c, g.h, g.w}, "mean");
    if (g.h < g.s || g.w < g.t)
      throw py::value_error("mean: a " + std::to_string(g.h) + "x" + std::to_string(g.w) +
                            " mean image is smaller than the " + std::to_string(g.s) + "x" +
                            std::to_string(g.t) + " crops");
    if (offsets) expect_shape(*offsets, {g.b, 3}, "offsets");
    if (shift) expect_shape(*shift, {g.b, g.c}, "shift");
    expect_shape(out, {g.b, g.c, g.s, g.t}, "out");
    Place at({&x, &mean, offsets ? &*offsets : nullptr, shift ? &*shift : nullptr, &out});
    const uint8_t* xp = x.data<uint8_t>("x");
    const float* mp = mean.data<float>("mean");
    const int32_t* op = offsets ? offsets->data<int32_t>("offsets") : nullptr;
    const float* sp = shift ? shift->data<float>("shift") : nullptr;
    with_real(at, out, "out", [&](auto t) {  // float32, or bf16 on the GPU
      using O = decltype(t);
      O* o = out.mut<O>("out");
      if (!at.gpu()) {
        if constexpr (std::is_same_v<O, float>) {
          int64_t bad;
          {
            py::gil_scoped_release release;
            bad = cpu::normalize_batch(xp, mp, op, sp, scale, o, g);
          }
          if (bad >= 0) throw py::value_error(bad_offset_message(bad, op[bad], g));
        }
        return;
      }
#ifdef ALEXNET_EXT_WITH_CUDA
      launch_deferred(at, "normalize_batch", op, [g](const cuda::DeferredRecord& r) {
        return bad_offset_message(static_cast<int64_t>(r.bad.first), r.value, g);
      }, [&](auto* bad) { cuda::normalize_batch(xp, mp, op, sp, scale, o, g, bad, at.stream()); });
#endif
    });
  }, py::arg("x"), py::arg("mean"), py::arg("offsets"), py::arg("shift"), py::arg("scale"),
     py::arg("out"));
}

}  // namespace alexnet_ext::binding
