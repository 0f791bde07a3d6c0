// Bindings for csrc/cpu/fc.cpp (forward, grad w.r.t. inputs, weights, bias).
#include "fc.h"
#include "python/array.h"
#ifdef ALEXNET_EXT_WITH_CUDA
#include "python/cuda_array.h"
#endif

namespace alexnet_ext::binding {

namespace {
void expect_2d(const FArray& a, const char* name) {
  if (a.ndim() != 2) throw py::value_error(std::string(name) + ": expected 2 dimensions");
}
}  // namespace

void bind_fc(py::module_& m) {
  m.def("fc_forward", [](FArray x, FArray w, py::object bias, FArray out, float st, float so) {
    expect_2d(x, "x");
    expect_2d(w, "w");
    const int64_t n = x.shape(0), d = x.shape(1), f = w.shape(0);
    expect_shape(w, {f, d}, "w");
    expect_shape(out, {n, f}, "out");
    const float* b = optional_data(bias, {f}, "bias");
    float* o = writable(out, "out");
    py::gil_scoped_release release;
    cpu::fc_forward(x.data(), w.data(), b, o, n, d, f, st, so);
  }, py::arg("x").noconvert(), py::arg("w").noconvert(), py::arg("bias"),
     py::arg("out").noconvert(), py::arg("scale_targets"), py::arg("scale_output"));

  m.def("fc_grad_x", [](FArray gy, FArray w, FArray out, float st, float so) {
    expect_2d(gy, "grad_y");
    expect_2d(w, "w");
    const int64_t n = gy.shape(0), f = gy.shape(1), d = w.shape(1);
    expect_shape(w, {f, d}, "w");
    expect_shape(out, {n, d}, "out");
    float* o = writable(out, "out");
    py::gil_scoped_release release;
    cpu::fc_grad_x(gy.data(), w.data(), o, n, d, f, st, so);
  }, py::arg("grad_y").noconvert(), py::arg("w").noconvert(), py::arg("out").noconvert(),
     py::arg("scale_targets"), py::arg("scale_output"));

  m.def("fc_grad_w", [](FArray gy, FArray x, FArray out, float st, float so) {
    expect_2d(gy, "grad_y");
    expect_2d(x, "x");
    const int64_t n = gy.shape(0), f = gy.shape(1), d = x.shape(1);
    expect_shape(x, {n, d}, "x");
    expect_shape(out, {f, d}, "out");
    float* o = writable(out, "out");
    py::gil_scoped_release release;
    cpu::fc_grad_w(gy.data(), x.data(), o, n, d, f, st, so);
  }, py::arg("grad_y").noconvert(), py::arg("x").noconvert(), py::arg("out").noconvert(),
     py::arg("scale_targets"), py::arg("scale_output"));

  m.def("fc_grad_b", [](FArray gy, FArray out, float st, float so) {
    expect_2d(gy, "grad_y");
    const int64_t n = gy.shape(0), f = gy.shape(1);
    expect_shape(out, {f}, "out");
    float* o = writable(out, "out");
    py::gil_scoped_release release;
    cpu::fc_grad_b(gy.data(), o, n, f, st, so);
  }, py::arg("grad_y").noconvert(), py::arg("out").noconvert(), py::arg("scale_targets"),
     py::arg("scale_output"));
}

#ifdef ALEXNET_EXT_WITH_CUDA
// The same functions on _core.cuda, for DeviceArrays (cuda/fc.cu). Registered only when the build
// found cuBLAS; without it alexnet_ext.ops.fc on DeviceArrays says the kernel is missing.
void bind_fc_cuda(py::module_& m) {
#ifdef ALEXNET_EXT_WITH_CUBLAS
  auto expect_d2 = [](const DeviceArray& a, const char* name) {
    if (a.shape.size() != 2) throw py::value_error(std::string(name) + ": expected 2 dimensions");
  };

  m.def("fc_forward", [expect_d2](const DeviceArray& x, const DeviceArray& w, py::object bias,
                                  const DeviceArray& out, float st, float so) {
    expect_d2(x, "x");
    expect_d2(w, "w");
    const int64_t n = x.shape[0], d = x.shape[1], f = w.shape[0];
    expect_dshape(w, {f, d}, "w");
    expect_dshape(out, {n, f}, "out");
    const float* b = nullptr;
    DeviceArray bias_arr;
    if (!bias.is_none()) {
      if (!py::isinstance<DeviceArray>(bias))
        throw py::type_error("bias: expected a float32 DeviceArray or None");
      bias_arr = bias.cast<DeviceArray>();
      expect_dshape(bias_arr, {f}, "bias");
      b = dptr<float>(bias_arr, "bias");
    }
    const float* xp = dptr<float>(x, "x");
    const float* wp = dptr<float>(w, "w");
    float* o = dptr_mut<float>(out, "out");
    DeviceScope scope(common_device({&x, &w, &out, b ? &bias_arr : nullptr}));
    const cudaStream_t stream = cuda::current_stream();
    py::gil_scoped_release release;
    cuda::fc_forward(xp, wp, b, o, n, d, f, st, so, stream);
  }, py::arg("x"), py::arg("w"), py::arg("bias"), py::arg("out"), py::arg("scale_targets"),
     py::arg("scale_output"));

  m.def("fc_grad_x", [expect_d2](const DeviceArray& gy, const DeviceArray& w,
                                 const DeviceArray& out, float st, float so) {
    expect_d2(gy, "grad_y");
    expect_d2(w, "w");
    const int64_t n = gy.shape[0], f = gy.shape[1], d = w.shape[1];
    expect_dshape(w, {f, d}, "w");
    expect_dshape(out, {n, d}, "out");
    const float* gyp = dptr<float>(gy, "grad_y");
    const float* wp = dptr<float>(w, "w");
    float* o = dptr_mut<float>(out, "out");
    DeviceScope scope(common_device({&gy, &w, &out}));
    const cudaStream_t stream = cuda::current_stream();
    py::gil_scoped_release release;
    cuda::fc_grad_x(gyp, wp, o, n, d, f, st, so, stream);
  }, py::arg("grad_y"), py::arg("w"), py::arg("out"), py::arg("scale_targets"),
     py::arg("scale_output"));

  m.def("fc_grad_w", [expect_d2](const DeviceArray& gy, const DeviceArray& x,
                                 const DeviceArray& out, float st, float so) {
    expect_d2(gy, "grad_y");
    expect_d2(x, "x");
    const int64_t n = gy.shape[0], f = gy.shape[1], d = x.shape[1];
    expect_dshape(x, {n, d}, "x");
    expect_dshape(out, {f, d}, "out");
    const float* gyp = dptr<float>(gy, "grad_y");
    const float* xp = dptr<float>(x, "x");
    float* o = dptr_mut<float>(out, "out");
    DeviceScope scope(common_device({&gy, &x, &out}));
    const cudaStream_t stream = cuda::current_stream();
    py::gil_scoped_release release;
    cuda::fc_grad_w(gyp, xp, o, n, d, f, st, so, stream);
  }, py::arg("grad_y"), py::arg("x"), py::arg("out"), py::arg("scale_targets"),
     py::arg("scale_output"));

  m.def("fc_grad_b", [expect_d2](const DeviceArray& gy, const DeviceArray& out, float st,
                                 float so) {
    expect_d2(gy, "grad_y");
    const int64_t n = gy.shape[0], f = gy.shape[1];
    expect_dshape(out, {f}, "out");
    const float* gyp = dptr<float>(gy, "grad_y");
    float* o = dptr_mut<float>(out, "out");
    DeviceScope scope(common_device({&gy, &out}));
    const cudaStream_t stream = cuda::current_stream();
    py::gil_scoped_release release;
    cuda::fc_grad_b(gyp, o, n, f, st, so, stream);
  }, py::arg("grad_y"), py::arg("out"), py::arg("scale_targets"), py::arg("scale_output"));
#else
  (void)m;
#endif  // ALEXNET_EXT_WITH_CUBLAS
}
#endif  // ALEXNET_EXT_WITH_CUDA

}  // namespace alexnet_ext::binding
