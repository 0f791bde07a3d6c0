// Bindings for csrc/cpu/response_norm.cpp (cross-map response normalization and its gradient).
#include <cmath>
#include <limits>
#include <string>

#include "python/array.h"
#include "response_norm.h"
#ifdef ALEXNET_EXT_WITH_CUDA
#include "python/cuda_array.h"
#endif

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

#ifdef ALEXNET_EXT_WITH_CUDA
// The same functions on _core.cuda, for DeviceArrays (cuda/response_norm.cu).
void bind_response_norm_cuda(py::module_& m) {
  m.def("response_norm", [](const DeviceArray& x, const DeviceArray& y, const DeviceArray& denoms,
                            int64_t size, double k, double alpha, double beta,
                            bool alpha_over_size) {
    const ResponseNormParams p = params(size, k, alpha, beta, alpha_over_size);
    if (x.shape.size() != 4) throw py::value_error("x: expected 4 dimensions (N, C, H, W)");
    const int64_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3];
    expect_dshape(y, {n, c, h, w}, "y");
    expect_dshape(denoms, {n, c, h, w}, "denoms");
    const float* xp = dptr<float>(x, "x");
    float* yp = dptr_mut<float>(y, "y");
    float* dp = dptr_mut<float>(denoms, "denoms");
    DeviceScope scope(common_device({&x, &y, &denoms}));
    const cudaStream_t stream = cuda::current_stream();
    py::gil_scoped_release release;
    cuda::response_norm(xp, yp, dp, n, c, h * w, p, stream);
  }, py::arg("x"), py::arg("y"), py::arg("denoms"), py::arg("size"), py::arg("k"),
     py::arg("alpha"), py::arg("beta"), py::arg("alpha_over_size"));

  m.def("response_norm_undo", [](const DeviceArray& grad_y, const DeviceArray& x,
                                 const DeviceArray& y, const DeviceArray& denoms,
                                 const DeviceArray& grad_x, int64_t size, double k, double alpha,
                                 double beta, bool alpha_over_size) {
    const ResponseNormParams p = params(size, k, alpha, beta, alpha_over_size);
    if (grad_y.shape.size() != 4) throw py::value_error("grad_y: expected 4 dimensions (N, C, H, W)");
    const int64_t n = grad_y.shape[0], c = grad_y.shape[1], h = grad_y.shape[2], w = grad_y.shape[3];
    expect_dshape(x, {n, c, h, w}, "x");
    expect_dshape(y, {n, c, h, w}, "y");
    expect_dshape(denoms, {n, c, h, w}, "denoms");
    expect_dshape(grad_x, {n, c, h, w}, "grad_x");
    const float* gyp = dptr<float>(grad_y, "grad_y");
    const float* xp = dptr<float>(x, "x");
    const float* yp = dptr<float>(y, "y");
    const float* dp = dptr<float>(denoms, "denoms");
    float* gxp = dptr_mut<float>(grad_x, "grad_x");
    DeviceScope scope(common_device({&grad_y, &x, &y, &denoms, &grad_x}));
    const cudaStream_t stream = cuda::current_stream();
    py::gil_scoped_release release;
    cuda::response_norm_undo(gyp, xp, yp, dp, gxp, n, c, h * w, p, stream);
  }, py::arg("grad_y"), py::arg("x"), py::arg("y"), py::arg("denoms"), py::arg("grad_x"),
     py::arg("size"), py::arg("k"), py::arg("alpha"), py::arg("beta"), py::arg("alpha_over_size"));
}
#endif  // ALEXNET_EXT_WITH_CUDA

}  // namespace alexnet_ext::binding
