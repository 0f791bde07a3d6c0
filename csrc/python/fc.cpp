// Binding of the fully connected layer (fc.h) for NumPy arrays and DeviceArrays. Its GPU GEMMs are
// cuBLAS's: a build without cuBLAS leaves fc_* out of _core.cuda (alexnet_ext.ops says so).
#include "fc.h"
#include "python/view.h"

namespace alexnet_ext::binding {

namespace {
#if defined(ALEXNET_EXT_WITH_CUDA) && defined(ALEXNET_EXT_WITH_CUBLAS)
#define FC_GPU(...) __VA_ARGS__
#else
#define FC_GPU(...) throw std::logic_error("fc: no CUDA kernel in this build")
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
    float* o = out.mut<float>("out");
    ALEXNET_EXT_DISPATCH(at, cpu::fc_forward(xp, wp, b, o, n, d, f, st, so),
                         FC_GPU(cuda::fc_forward(xp, wp, b, o, n, d, f, st, so, stream)));
  }, py::arg("x"), py::arg("w"), py::arg("bias"), py::arg("out"), py::arg("scale_targets"),
     py::arg("scale_output"));

  def_op(m, cuda, "fc_grad_x", [](View gy, View w, View out, float st, float so) {
    expect_ndim(gy, 2, "grad_y", "(N, F)");
    expect_ndim(w, 2, "w", "(F, D)");
    const int64_t n = gy.shape[0], f = gy.shape[1], d = w.shape[1];
    expect_shape(w, {f, d}, "w");
    expect_shape(out, {n, d}, "out");
    Place at({&gy, &w, &out});
    const float *g = gy.data<float>("grad_y"), *wp = w.data<float>("w");
    float* o = out.mut<float>("out");
    ALEXNET_EXT_DISPATCH(at, cpu::fc_grad_x(g, wp, o, n, d, f, st, so),
                         FC_GPU(cuda::fc_grad_x(g, wp, o, n, d, f, st, so, stream)));
  }, py::arg("grad_y"), py::arg("w"), py::arg("out"), py::arg("scale_targets"),
     py::arg("scale_output"));

  def_op(m, cuda, "fc_grad_w", [](View gy, View x, View out, float st, float so) {
    expect_ndim(gy, 2, "grad_y", "(N, F)");
    expect_ndim(x, 2, "x", "(N, D)");
    const int64_t n = gy.shape[0], f = gy.shape[1], d = x.shape[1];
    expect_shape(x, {n, d}, "x");
    expect_shape(out, {f, d}, "out");
    Place at({&gy, &x, &out});
    const float *g = gy.data<float>("grad_y"), *xp = x.data<float>("x");
    float* o = out.mut<float>("out");
    ALEXNET_EXT_DISPATCH(at, cpu::fc_grad_w(g, xp, o, n, d, f, st, so),
                         FC_GPU(cuda::fc_grad_w(g, xp, o, n, d, f, st, so, stream)));
  }, py::arg("grad_y"), py::arg("x"), py::arg("out"), py::arg("scale_targets"),
     py::arg("scale_output"));

  def_op(m, cuda, "fc_grad_b", [](View gy, View out, float st, float so) {
    expect_ndim(gy, 2, "grad_y", "(N, F)");
    const int64_t n = gy.shape[0], f = gy.shape[1];
    expect_shape(out, {f}, "out");
    Place at({&gy, &out});
    const float* g = gy.data<float>("grad_y");
    float* o = out.mut<float>("out");
    ALEXNET_EXT_DISPATCH(at, cpu::fc_grad_b(g, o, n, f, st, so),
                         FC_GPU(cuda::fc_grad_b(g, o, n, f, st, so, stream)));
  }, py::arg("grad_y"), py::arg("out"), py::arg("scale_targets"), py::arg("scale_output"));
}

}  // namespace alexnet_ext::binding
