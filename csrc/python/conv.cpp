// Bindings for csrc/cpu/conv.cpp (filterActs, imgActs, weightActs, bias gradient) on _core.cpu
// and, in CUDA builds, csrc/cuda/conv.cu on _core.cuda with the same names and arguments.
#include "conv.h"
#include "python/array.h"
#ifdef ALEXNET_EXT_WITH_CUDA
#include "python/cuda_array.h"
#endif

namespace alexnet_ext::binding {

namespace {

ConvGeometry geometry(const py::tuple& t) {
  if (t.size() != 14) throw py::value_error("conv geometry: expected 14 integers");
  int64_t v[14];
  for (int i = 0; i < 14; ++i) v[i] = t[i].cast<int64_t>();
  ConvGeometry g{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13]};
  // Backstop for direct callers; alexnet_ext.ops.conv checks all of this with better messages.
  if (const char* err = conv_geometry_error(g)) throw py::value_error(err);
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

#ifdef ALEXNET_EXT_WITH_CUDA
// The same four functions on DeviceArrays, queued on the calling thread's current stream (they
// return before the GPU is done; DeviceArray.get() and synchronize() wait). Same backstop checks
// as the CPU bindings; the device of the arrays is made current for the call.
void bind_conv_cuda(py::module_& m) {
  m.def("filter_acts", [](const DeviceArray& images, const DeviceArray& filters, py::object bias,
                          const DeviceArray& out, py::tuple geo, float st, float so) {
    const ConvGeometry g = geometry(geo);
    expect_dshape(images, {g.n, g.c, g.h, g.w}, "images");
    expect_dshape(filters, {g.f, g.cg(), g.kh, g.kw}, "filters");
    expect_dshape(out, {g.n, g.f, g.ho, g.wo}, "out");
    const DeviceArray* b = nullptr;
    if (!bias.is_none()) {
      if (!py::isinstance<DeviceArray>(bias))
        throw py::type_error("bias: expected None or a DeviceArray");
      b = &bias.cast<const DeviceArray&>();
      expect_dshape(*b, {g.f}, "bias");
    }
    const float* x = dptr<float>(images, "images");
    const float* w = dptr<float>(filters, "filters");
    const float* bp = b ? dptr<float>(*b, "bias") : nullptr;
    float* o = dptr_mut<float>(out, "out");
    DeviceScope scope(common_device({&images, &filters, b, &out}));
    const cudaStream_t stream = cuda::current_stream();
    py::gil_scoped_release release;
    cuda::filter_acts(x, w, bp, o, g, st, so, stream);
  }, py::arg("images"), py::arg("filters"), py::arg("bias"), py::arg("out"), py::arg("geometry"),
     py::arg("scale_targets"), py::arg("scale_output"));

  m.def("img_acts", [](const DeviceArray& hid, const DeviceArray& filters, const DeviceArray& out,
                       py::tuple geo, float st, float so) {
    const ConvGeometry g = geometry(geo);
    expect_dshape(hid, {g.n, g.f, g.ho, g.wo}, "hid_grads");
    expect_dshape(filters, {g.f, g.cg(), g.kh, g.kw}, "filters");
    expect_dshape(out, {g.n, g.c, g.h, g.w}, "out");
    const float* h = dptr<float>(hid, "hid_grads");
    const float* w = dptr<float>(filters, "filters");
    float* o = dptr_mut<float>(out, "out");
    DeviceScope scope(common_device({&hid, &filters, &out}));
    const cudaStream_t stream = cuda::current_stream();
    py::gil_scoped_release release;
    cuda::img_acts(h, w, o, g, st, so, stream);
  }, py::arg("hid_grads"), py::arg("filters"), py::arg("out"), py::arg("geometry"),
     py::arg("scale_targets"), py::arg("scale_output"));

  m.def("weight_acts", [](const DeviceArray& images, const DeviceArray& hid, const DeviceArray& out,
                          py::tuple geo, float st, float so) {
    const ConvGeometry g = geometry(geo);
    expect_dshape(images, {g.n, g.c, g.h, g.w}, "images");
    expect_dshape(hid, {g.n, g.f, g.ho, g.wo}, "hid_grads");
    expect_dshape(out, {g.f, g.cg(), g.kh, g.kw}, "out");
    const float* x = dptr<float>(images, "images");
    const float* h = dptr<float>(hid, "hid_grads");
    float* o = dptr_mut<float>(out, "out");
    DeviceScope scope(common_device({&images, &hid, &out}));
    const cudaStream_t stream = cuda::current_stream();
    py::gil_scoped_release release;
    cuda::weight_acts(x, h, o, g, st, so, stream);
  }, py::arg("images"), py::arg("hid_grads"), py::arg("out"), py::arg("geometry"),
     py::arg("scale_targets"), py::arg("scale_output"));

  m.def("conv_bias_grad", [](const DeviceArray& hid, const DeviceArray& out, float st, float so) {
    if (hid.shape.size() != 4) throw py::value_error("hid_grads: expected 4 dimensions");
    const int64_t n = hid.shape[0], f = hid.shape[1], pixels = hid.shape[2] * hid.shape[3];
    if (n < 1 || f < 1 || pixels < 1) throw py::value_error("hid_grads: expected a non-empty array");
    expect_dshape(out, {f}, "out");
    const float* h = dptr<float>(hid, "hid_grads");
    float* o = dptr_mut<float>(out, "out");
    DeviceScope scope(common_device({&hid, &out}));
    const cudaStream_t stream = cuda::current_stream();
    py::gil_scoped_release release;
    cuda::conv_bias_grad(h, o, n, f, pixels, st, so, stream);
  }, py::arg("hid_grads"), py::arg("out"), py::arg("scale_targets"), py::arg("scale_output"));

  m.def("set_conv_kernel", &cuda::set_conv_kernel, py::arg("version"),
        "Select the CUDA convolution kernels: 1 = reference (direct loops), 2 = tiled implicit "
        "GEMM (default). Process-wide.");
  m.def("get_conv_kernel", &cuda::get_conv_kernel,
        "The CUDA convolution kernel version in use (1 = reference, 2 = fast).");
}
#endif  // ALEXNET_EXT_WITH_CUDA

}  // namespace alexnet_ext::binding
