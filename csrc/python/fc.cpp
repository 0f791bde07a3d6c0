// Binding of the fully connected layer (fc.h) for NumPy arrays and DeviceArrays. Its GPU GEMMs are
// cuBLAS's: a build without cuBLAS leaves fc_* out of _core.cuda (alexnet_ext.ops says so).
#include <stdexcept>

#include "fc.h"
#include "python/view.h"

namespace alexnet_ext::binding {

namespace {
#if !defined(ALEXNET_EXT_WITH_CUDA) || defined(ALEXNET_EXT_WITH_CUBLAS)
#define FC_KERNELS(fn) ALEXNET_EXT_KERNELS(fn)
#else
#define FC_KERNELS(fn) Kernels{[](auto... a) { cpu::fn(a...); }, \
    [](auto...) { throw std::logic_error("fc: no CUDA kernel in this build"); }}
#endif
}  // namespace

void bind_fc(py::module_& m, py::module_* cuda) {
#if !defined(ALEXNET_EXT_WITH_CUBLAS)
  cuda = nullptr;  // CPU only
#endif
  def_op(m, cuda, "fc_forward", [](View x, View w, std::optional<View> bias, View out, float st,
                                   float so) {
    expect_ndim(x, 2, "x", "(N, D)");
    expect_ndim(w, 2, "w", "(F, D)");
    const int64_t n = x.shape[0], d = x.shape[1], f = w.shape[0];
    expect_shape(w, {f, d}, "w");
    expect_shape(out, {n, f}, "out");
    if (bias) expect_shape(*bias, {f}, "bias");
    Place at({&x, &w, bias ? &*bias : nullptr, &out});
    const float *xp = x.data<float>("x"), *wp = w.data<float>("w");
    const float* b = bias ? bias->data<float>("bias") : nullptr;
    FC_KERNELS(fc_forward)(at, xp, wp, b, out.mut<float>("out"), n, d, f, st, so);
  }, py::arg("x"), py::arg("w"), py::arg("bias"), py::arg("out"), py::arg("scale_targets"),
     py::arg("scale_output"));

  // fc_grad_x (grad_y with w (F, D) -> (N, D)) and fc_grad_w (grad_y with x (N, D) -> (F, D)):
  // D is the other operand's column count in both.
  auto def_grad = [&](const char* op, const char* other, const char* layout, bool other_is_w,
                      auto kernels) {
    def_op(m, cuda, op, [=](View gy, View b, View out, float st, float so) {
      expect_ndim(gy, 2, "grad_y", "(N, F)");
      expect_ndim(b, 2, other, layout);
      const int64_t n = gy.shape[0], f = gy.shape[1], d = b.shape[1];
      expect_shape(b, {other_is_w ? f : n, d}, other);
      expect_shape(out, {other_is_w ? n : f, d}, "out");
      Place at({&gy, &b, &out});
      const float *g = gy.data<float>("grad_y"), *bp = b.data<float>(other);
      kernels(at, g, bp, out.mut<float>("out"), n, d, f, st, so);
    }, py::arg("grad_y"), py::arg(other), py::arg("out"), py::arg("scale_targets"),
       py::arg("scale_output"));
  };
  def_grad("fc_grad_x", "w", "(F, D)", true, FC_KERNELS(fc_grad_x));
  def_grad("fc_grad_w", "x", "(N, D)", false, FC_KERNELS(fc_grad_w));

  def_op(m, cuda, "fc_grad_b", [](View gy, View out, float st, float so) {
    expect_ndim(gy, 2, "grad_y", "(N, F)");
    const int64_t n = gy.shape[0], f = gy.shape[1];
    expect_shape(out, {f}, "out");
    Place at({&gy, &out});
    const float* g = gy.data<float>("grad_y");
    FC_KERNELS(fc_grad_b)(at, g, out.mut<float>("out"), n, f, st, so);
  }, py::arg("grad_y"), py::arg("out"), py::arg("scale_targets"), py::arg("scale_output"));
}

}  // namespace alexnet_ext::binding
