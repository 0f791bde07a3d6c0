// Bindings for csrc/cpu/fc.cpp (forward, grad w.r.t. inputs, weights, bias).
#include "fc.h"
#include "python/array.h"

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

}  // namespace alexnet_ext::binding
