// Bindings for csrc/cpu/conv.cpp (filterActs, imgActs, weightActs, bias gradient).
#include "conv.h"
#include "python/array.h"

namespace alexnet_ext::binding {

namespace {

ConvGeometry geometry(const py::tuple& t) {
  if (t.size() != 14) throw py::value_error("conv geometry: expected 14 integers");
  int64_t v[14];
  for (int i = 0; i < 14; ++i) v[i] = t[i].cast<int64_t>();
  ConvGeometry g{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13]};
  // Backstop for direct callers; alexnet_ext.ops.conv checks all of this with better messages.
  bool ok = g.n >= 1 && g.c >= 1 && g.h >= 1 && g.w >= 1 && g.f >= 1 && g.kh >= 1 && g.kw >= 1 &&
            g.sh >= 1 && g.sw >= 1 && g.ph >= 0 && g.pw >= 0 && g.groups >= 1 &&
            g.c % g.groups == 0 && g.f % g.groups == 0 && g.h + 2 * g.ph >= g.kh &&
            g.w + 2 * g.pw >= g.kw && g.ho >= 1 && g.wo >= 1 &&
            (g.ho == conv_out_size(g.h, g.kh, g.sh, g.ph, false) ||
             g.ho == conv_out_size(g.h, g.kh, g.sh, g.ph, true)) &&
            (g.wo == conv_out_size(g.w, g.kw, g.sw, g.pw, false) ||
             g.wo == conv_out_size(g.w, g.kw, g.sw, g.pw, true));
  if (!ok) throw py::value_error("conv geometry: inconsistent sizes");
  return g;
}

}  // namespace

void bind_conv(py::module_& m) {
  m.def("filter_acts", [](FArray images, FArray filters, py::object bias, FArray out,
                          py::tuple geo, float st, float so) {
    const ConvGeometry g = geometry(geo);
    expect_shape(images, {g.n, g.c, g.h, g.w}, "images");
    expect_shape(filters, {g.f, g.cg(), g.kh, g.kw}, "filters");
    expect_shape(out, {g.n, g.f, g.ho, g.wo}, "out");
    const float* b = optional_data(bias, {g.f}, "bias");
    float* o = writable(out, "out");
    py::gil_scoped_release release;
    cpu::filter_acts(images.data(), filters.data(), b, o, g, st, so);
  }, py::arg("images").noconvert(), py::arg("filters").noconvert(), py::arg("bias"),
     py::arg("out").noconvert(), py::arg("geometry"), py::arg("scale_targets"),
     py::arg("scale_output"));

  m.def("img_acts", [](FArray hid, FArray filters, FArray out, py::tuple geo, float st, float so) {
    const ConvGeometry g = geometry(geo);
    expect_shape(hid, {g.n, g.f, g.ho, g.wo}, "hid_grads");
    expect_shape(filters, {g.f, g.cg(), g.kh, g.kw}, "filters");
    expect_shape(out, {g.n, g.c, g.h, g.w}, "out");
    float* o = writable(out, "out");
    py::gil_scoped_release release;
    cpu::img_acts(hid.data(), filters.data(), o, g, st, so);
  }, py::arg("hid_grads").noconvert(), py::arg("filters").noconvert(), py::arg("out").noconvert(),
     py::arg("geometry"), py::arg("scale_targets"), py::arg("scale_output"));

  m.def("weight_acts", [](FArray images, FArray hid, FArray out, py::tuple geo, float st, float so) {
    const ConvGeometry g = geometry(geo);
    expect_shape(images, {g.n, g.c, g.h, g.w}, "images");
    expect_shape(hid, {g.n, g.f, g.ho, g.wo}, "hid_grads");
    expect_shape(out, {g.f, g.cg(), g.kh, g.kw}, "out");
    float* o = writable(out, "out");
    py::gil_scoped_release release;
    cpu::weight_acts(images.data(), hid.data(), o, g, st, so);
  }, py::arg("images").noconvert(), py::arg("hid_grads").noconvert(), py::arg("out").noconvert(),
     py::arg("geometry"), py::arg("scale_targets"), py::arg("scale_output"));

  m.def("conv_bias_grad", [](FArray hid, FArray out, float st, float so) {
    if (hid.ndim() != 4) throw py::value_error("hid_grads: expected 4 dimensions");
    const int64_t n = hid.shape(0), f = hid.shape(1), pixels = hid.shape(2) * hid.shape(3);
    expect_shape(out, {f}, "out");
    float* o = writable(out, "out");
    py::gil_scoped_release release;
    cpu::conv_bias_grad(hid.data(), o, n, f, pixels, st, so);
  }, py::arg("hid_grads").noconvert(), py::arg("out").noconvert(), py::arg("scale_targets"),
     py::arg("scale_output"));
}

}  // namespace alexnet_ext::binding
