// Binding of convolution (conv.h): filterActs, imgActs, weightActs and the bias gradient, one
// function each for NumPy arrays (cpu/conv.cpp) and DeviceArrays (cuda/conv.cu).
#include "conv.h"
#include "python/view.h"

namespace alexnet_ext::binding {

namespace {
void check(const ConvGeometry& g) {
  if (const char* err = conv_geometry_error(g)) throw py::value_error(err);
}
}  // namespace

void bind_conv(py::module_& m, py::module_* cuda) {
  def_op(m, cuda, "filter_acts", [](View images, View filters, std::optional<View> bias, View out,
                                    const ConvGeometry& g, float st, float so) {
    check(g);
    expect_shape(images, {g.n, g.c, g.h, g.w}, "images");
    expect_shape(filters, {g.f, g.cg(), g.kh, g.kw}, "filters");
    expect_shape(out, {g.n, g.f, g.ho, g.wo}, "out");
    if (bias) expect_shape(*bias, {g.f}, "bias");
    Place at({&images, &filters, bias ? &*bias : nullptr, &out});
    const float *x = images.data<float>("images"), *w = filters.data<float>("filters");
    const float* b = bias ? bias->data<float>("bias") : nullptr;
    float* o = out.mut<float>("out");
    ALEXNET_EXT_DISPATCH(at, cpu::filter_acts(x, w, b, o, g, st, so),
                         cuda::filter_acts(x, w, b, o, g, st, so, stream));
  }, py::arg("images"), py::arg("filters"), py::arg("bias"), py::arg("out"), py::arg("geometry"),
     py::arg("scale_targets"), py::arg("scale_output"));

  def_op(m, cuda, "img_acts", [](View hid, View filters, View out, const ConvGeometry& g, float st,
                                 float so) {
    check(g);
    expect_shape(hid, {g.n, g.f, g.ho, g.wo}, "hid_grads");
    expect_shape(filters, {g.f, g.cg(), g.kh, g.kw}, "filters");
    expect_shape(out, {g.n, g.c, g.h, g.w}, "out");
    Place at({&hid, &filters, &out});
    const float *h = hid.data<float>("hid_grads"), *w = filters.data<float>("filters");
    float* o = out.mut<float>("out");
    ALEXNET_EXT_DISPATCH(at, cpu::img_acts(h, w, o, g, st, so),
                         cuda::img_acts(h, w, o, g, st, so, stream));
  }, py::arg("hid_grads"), py::arg("filters"), py::arg("out"), py::arg("geometry"),
     py::arg("scale_targets"), py::arg("scale_output"));

  def_op(m, cuda, "weight_acts", [](View images, View hid, View out, const ConvGeometry& g,
                                    float st, float so) {
    check(g);
    expect_shape(images, {g.n, g.c, g.h, g.w}, "images");
    expect_shape(hid, {g.n, g.f, g.ho, g.wo}, "hid_grads");
    expect_shape(out, {g.f, g.cg(), g.kh, g.kw}, "out");
    Place at({&images, &hid, &out});
    const float *x = images.data<float>("images"), *h = hid.data<float>("hid_grads");
    float* o = out.mut<float>("out");
    ALEXNET_EXT_DISPATCH(at, cpu::weight_acts(x, h, o, g, st, so),
                         cuda::weight_acts(x, h, o, g, st, so, stream));
  }, py::arg("images"), py::arg("hid_grads"), py::arg("out"), py::arg("geometry"),
     py::arg("scale_targets"), py::arg("scale_output"));

  def_op(m, cuda, "conv_bias_grad", [](View hid, View out, float st, float so) {
    expect_ndim(hid, 4, "hid_grads", "(N, F, Ho, Wo)");
    const int64_t n = hid.shape[0], f = hid.shape[1], pixels = hid.shape[2] * hid.shape[3];
    expect_shape(out, {f}, "out");
    Place at({&hid, &out});
    const float* h = hid.data<float>("hid_grads");
    float* o = out.mut<float>("out");
    if (hid.size() == 0) throw py::value_error("hid_grads: expected a non-empty array");
    ALEXNET_EXT_DISPATCH(at, cpu::conv_bias_grad(h, o, n, f, pixels, st, so),
                         cuda::conv_bias_grad(h, o, n, f, pixels, st, so, stream));
  }, py::arg("hid_grads"), py::arg("out"), py::arg("scale_targets"), py::arg("scale_output"));

#ifdef ALEXNET_EXT_WITH_CUDA
  cuda->def("set_conv_kernel", &cuda::set_conv_kernel, py::arg("version"),
            "Select the CUDA convolution kernels: 1 = reference (direct loops), 2 = tiled "
            "implicit GEMM (default). Process-wide.");
  cuda->def("get_conv_kernel", &cuda::get_conv_kernel,
            "The CUDA convolution kernel version in use (1 = reference, 2 = fast).");
#endif
}

}  // namespace alexnet_ext::binding
