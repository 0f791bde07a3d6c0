// Binding of convolution (conv.h): filterActs, imgActs, weightActs and the bias gradient, one
// function each for NumPy arrays (cpu/conv.cpp) and DeviceArrays (cuda/conv.cu).
#include "conv.h"
#include "python/view.h"

namespace alexnet_ext::binding {

namespace {
void check(const ConvGeometry& g) {
  if (const char* err = conv_geometry_error(g)) throw py::value_error(err);
}
// The three array roles of a convolution: images (N, C, H, W), filters (F, C/groups, kh, kw) and
// hidden activations or their gradients (N, F, Ho, Wo).
enum Role { kImages, kFilters, kHidden };
std::vector<int64_t> shape_of(Role r, const ConvGeometry& g) {
  if (r == kImages) return {g.n, g.c, g.h, g.w};
  if (r == kFilters) return {g.f, g.cg(), g.kh, g.kw};
  return {g.n, g.f, g.ho, g.wo};
}
}  // namespace

void bind_conv(py::module_& m, py::module_* cuda) {
  def_op(m, cuda, "filter_acts", [](View images, View filters, std::optional<View> bias, View out,
                                    const ConvGeometry& g, float st, float so) {
    check(g);
    expect_shape(images, shape_of(kImages, g), "images");
    expect_shape(filters, shape_of(kFilters, g), "filters");
    expect_shape(out, shape_of(kHidden, g), "out");
    if (bias) expect_shape(*bias, {g.f}, "bias");
    Place at({&images, &filters, bias ? &*bias : nullptr, &out});
    const float *x = images.data<float>("images"), *w = filters.data<float>("filters");
    const float* b = bias ? bias->data<float>("bias") : nullptr;
    ALEXNET_EXT_KERNELS(filter_acts)(at, x, w, b, out.mut<float>("out"), g, st, so);
  }, py::arg("images"), py::arg("filters"), py::arg("bias"), py::arg("out"), py::arg("geometry"),
     py::arg("scale_targets"), py::arg("scale_output"));

  // img_acts (hid_grads, filters -> images) and weight_acts (images, hid_grads -> filters).
  auto def_undo = [&](const char* op, Role ra, const char* a_name, Role rb, const char* b_name,
                      Role r_out, auto kernels) {
    def_op(m, cuda, op, [=](View a, View b, View out, const ConvGeometry& g, float st, float so) {
      check(g);
      expect_shape(a, shape_of(ra, g), a_name);
      expect_shape(b, shape_of(rb, g), b_name);
      expect_shape(out, shape_of(r_out, g), "out");
      Place at({&a, &b, &out});
      const float *ap = a.data<float>(a_name), *bp = b.data<float>(b_name);
      kernels(at, ap, bp, out.mut<float>("out"), g, st, so);
    }, py::arg(a_name), py::arg(b_name), py::arg("out"), py::arg("geometry"),
       py::arg("scale_targets"), py::arg("scale_output"));
  };
  def_undo("img_acts", kHidden, "hid_grads", kFilters, "filters", kImages, ALEXNET_EXT_KERNELS(img_acts));
  def_undo("weight_acts", kImages, "images", kHidden, "hid_grads", kFilters, ALEXNET_EXT_KERNELS(weight_acts));

  def_op(m, cuda, "conv_bias_grad", [](View hid, View out, float st, float so) {
    expect_ndim(hid, 4, "hid_grads", "(N, F, Ho, Wo)");
    const int64_t n = hid.shape[0], f = hid.shape[1], pixels = hid.shape[2] * hid.shape[3];
    expect_shape(out, {f}, "out");
    Place at({&hid, &out});
    const float* h = hid.data<float>("hid_grads");
    float* o = out.mut<float>("out");
    if (hid.size() == 0) throw py::value_error("hid_grads: expected a non-empty array");
    ALEXNET_EXT_KERNELS(conv_bias_grad)(at, h, o, n, f, pixels, st, so);
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
