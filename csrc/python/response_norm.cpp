// Bindings for csrc/cpu/response_norm.cpp (cross-map response normalization and its gradient).
#include <cmath>
#include <limits>
#include <string>

#include "python/array.h"
#include "response_norm.h"

namespace alexnet_ext::binding {

namespace {

// Backstop for direct callers; alexnet_ext.ops.response_norm checks the same with better messages.
ResponseNormParams params(int64_t size, double k, double alpha, double beta, bool alpha_over_size) {
  if (size < 1) throw py::value_error("size: expected an int >= 1, got " + std::to_string(size));
  if (!(std::isfinite(k) && k >= std::numeric_limits<float>::min()))
    throw py::value_error("k: expected a finite number > 0 (at least the smallest normal float32)");
  if (!(std::isfinite(alpha) && alpha >= 0)) throw py::value_error("alpha: expected a finite number >= 0");
  if (!(std::isfinite(beta) && beta >= 0)) throw py::value_error("beta: expected a finite number >= 0");
  return ResponseNormParams{size, k, alpha_over_size ? alpha / double(size) : alpha, beta};
}

void expect_4d(const FArray& a, const char* name) {
  if (a.ndim() != 4) throw py::value_error(std::string(name) + ": expected 4 dimensions (N, C, H, W), got " + shape_str(a));
}

}  // namespace

void bind_response_norm(py::module_& m) {
  m.def("response_norm", [](FArray x, FArray y, FArray denoms, int64_t size, double k,
                            double alpha, double beta, bool alpha_over_size) {
    const ResponseNormParams p = params(size, k, alpha, beta, alpha_over_size);
    expect_4d(x, "x");
    const int64_t n = x.shape(0), c = x.shape(1), h = x.shape(2), w = x.shape(3);
    expect_shape(y, {n, c, h, w}, "y");
    expect_shape(denoms, {n, c, h, w}, "denoms");
    float* yo = writable(y, "y");
    float* d = writable(denoms, "denoms");
    py::gil_scoped_release release;
    cpu::response_norm(x.data(), yo, d, n, c, h * w, p);
  }, py::arg("x").noconvert(), py::arg("y").noconvert(), py::arg("denoms").noconvert(),
     py::arg("size"), py::arg("k"), py::arg("alpha"), py::arg("beta"), py::arg("alpha_over_size"));

  m.def("response_norm_undo", [](FArray grad_y, FArray x, FArray y, FArray denoms, FArray grad_x,
                                 int64_t size, double k, double alpha, double beta,
                                 bool alpha_over_size) {
    const ResponseNormParams p = params(size, k, alpha, beta, alpha_over_size);
    expect_4d(grad_y, "grad_y");
    const int64_t n = grad_y.shape(0), c = grad_y.shape(1), h = grad_y.shape(2), w = grad_y.shape(3);
    expect_shape(x, {n, c, h, w}, "x");
    expect_shape(y, {n, c, h, w}, "y");
    expect_shape(denoms, {n, c, h, w}, "denoms");
    expect_shape(grad_x, {n, c, h, w}, "grad_x");
    float* gx = writable(grad_x, "grad_x");
    py::gil_scoped_release release;
    cpu::response_norm_undo(grad_y.data(), x.data(), y.data(), denoms.data(), gx, n, c, h * w, p);
  }, py::arg("grad_y").noconvert(), py::arg("x").noconvert(), py::arg("y").noconvert(),
     py::arg("denoms").noconvert(), py::arg("grad_x").noconvert(), py::arg("size"), py::arg("k"),
     py::arg("alpha"), py::arg("beta"), py::arg("alpha_over_size"));
}

}  // namespace alexnet_ext::binding
