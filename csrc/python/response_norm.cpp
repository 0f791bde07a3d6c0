// Binding of cross-map response normalization (response_norm.h) for NumPy arrays and DeviceArrays.
#include <cmath>
#include <limits>
#include <string>

#include "host_device.h"
#include "python/pool_layout.h"
#include "python/view.h"
#include "response_norm.h"

namespace alexnet_ext::binding {

// The op's parameter check (also response_norm_max_pool's); alexnet_ext.ops.response_norm says
// the same with better messages.
ResponseNormParams response_norm_params(int64_t size, double k, double alpha, double beta,
                                        bool alpha_over_size) {
  if (size < 1) throw py::value_error("size: expected an int >= 1, got " + std::to_string(size));
  if (size > kGeometryMax) throw py::value_error("size: expected an int < 2^31");
  if (!(std::isfinite(k) && k >= std::numeric_limits<float>::min()))
    throw py::value_error("k: expected a finite number > 0 (at least the smallest normal float32)");
  if (!(std::isfinite(alpha) && alpha >= 0)) throw py::value_error("alpha: expected a finite number >= 0");
  if (!(std::isfinite(beta) && beta >= 0)) throw py::value_error("beta: expected a finite number >= 0");
  return ResponseNormParams{size, k, alpha_over_size ? alpha / double(size) : alpha, beta};
}

void bind_response_norm(py::module_& m, py::module_* cuda) {
  def_op(m, cuda, "response_norm", [](View x, View y, View denoms, int64_t size, double k,
                                      double alpha, double beta, bool alpha_over_size,
                                      const std::string& layout) {
    const ResponseNormParams p = response_norm_params(size, k, alpha, beta, alpha_over_size);
    const bool nhwc = pool_nhwc(layout);
    expect_ndim_shared(x, 4, "x", nhwc ? "(N, H, W, C)" : "(N, C, H, W)",
                       {{&y, "y"}, {&denoms, "denoms"}});
    const Dims d = layout_dims(x, nhwc);
    Place at({&x, &y, &denoms});
    float* dp = denoms.mut<float>("denoms");  // float32 for either dtype (response_norm.h)
    with_real(at, x, "x", [&](auto t) {
      using T = decltype(t);
      const T* xp = x.data<T>("x");
      ALEXNET_EXT_KERNELS(response_norm)(at, xp, y.mut<T>("y"), dp, d.n, d.c, d.h * d.w, p, nhwc);
    });
  }, py::arg("x"), py::arg("y"), py::arg("denoms"), py::arg("size"), py::arg("k"),
     py::arg("alpha"), py::arg("beta"), py::arg("alpha_over_size"), py::arg("layout") = "NCHW");

  def_op(m, cuda, "response_norm_undo", [](View grad_y, View x, View y, View denoms, View grad_x,
                                           int64_t size, double k, double alpha, double beta,
                                           bool alpha_over_size, const std::string& layout,
                                           bool relu) {
    const ResponseNormParams p = response_norm_params(size, k, alpha, beta, alpha_over_size);
    const bool nhwc = pool_nhwc(layout);
    expect_ndim_shared(grad_y, 4, "grad_y", nhwc ? "(N, H, W, C)" : "(N, C, H, W)",
                       {{&x, "x"}, {&y, "y"}, {&denoms, "denoms"}, {&grad_x, "grad_x"}});
    const Dims d = layout_dims(grad_y, nhwc);
    Place at({&grad_y, &x, &y, &denoms, &grad_x});
    const float* dp = denoms.data<float>("denoms");  // float32 for either dtype (response_norm.h)
    with_real(at, grad_y, "grad_y", [&](auto t) {
      using T = decltype(t);
      const T *gy = grad_y.data<T>("grad_y"), *xp = x.data<T>("x"), *yp = y.data<T>("y");
      ALEXNET_EXT_KERNELS(response_norm_undo)(at, gy, xp, yp, dp, grad_x.mut<T>("grad_x"), d.n,
                                              d.c, d.h * d.w, p, nhwc, relu);
    });
  }, py::arg("grad_y"), py::arg("x"), py::arg("y"), py::arg("denoms"), py::arg("grad_x"),
     py::arg("size"), py::arg("k"), py::arg("alpha"), py::arg("beta"), py::arg("alpha_over_size"),
     py::arg("layout") = "NCHW", py::arg("relu") = false);
}

}  // namespace alexnet_ext::binding
