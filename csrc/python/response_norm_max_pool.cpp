// Binding of response norm + max pool (response_norm_max_pool.h) for NumPy arrays and
// DeviceArrays: the fused forward, and the LRN half of its undo (response_norm_undo recomputing
// y from x and denoms; the pool half is max_pool_undo). Checks: the pooling ops' geometry check
// and the response norm parameter check, shared with those ops' bindings.
#include <string>

#include "python/pool_layout.h"
#include "python/view.h"
#include "response_norm_max_pool.h"

namespace alexnet_ext::binding {

void check_pool(const PoolGeometry& g);  // python/max_pool.cpp
PoolGeometry with_layout(const PoolGeometry& g, const std::string& layout);  // python/max_pool.cpp
ResponseNormParams response_norm_params(int64_t size, double k, double alpha, double beta,
                                        bool alpha_over_size);  // python/response_norm.cpp

void bind_response_norm_max_pool(py::module_& m, py::module_* cuda) {
  def_op(m, cuda, "response_norm_max_pool", [](View x, View pooled, View switches, View denoms,
                                               const PoolGeometry& geometry, int64_t size,
                                               double k, double alpha, double beta,
                                               bool alpha_over_size, const std::string& layout) {
    const ResponseNormParams p = response_norm_params(size, k, alpha, beta, alpha_over_size);
    const PoolGeometry g = with_layout(geometry, layout);
    check_pool(g);
    const auto image = layout_shape(g.n, g.c, g.h, g.w, g.nhwc);
    const auto out = layout_shape(g.n, g.c, g.ho, g.wo, g.nhwc);
    expect_shape(x, image, "x");
    expect_shape(denoms, image, "denoms");
    expect_shape(pooled, out, "pooled");
    expect_shape(switches, out, "switches");
    Place at({&x, &pooled, &switches, &denoms});
    float* dp = denoms.mut<float>("denoms");  // float32 for either dtype
    with_real(at, x, "x", [&](auto t) {
      using T = decltype(t);
      const T* xp = x.data<T>("x");
      T* yp = pooled.mut<T>("pooled");
      with_switches(switches, g.h * g.w, [&](auto* s) {
        ALEXNET_EXT_KERNELS(response_norm_max_pool)(at, xp, yp, s, dp, g, p);
      });
    });
  }, py::arg("x"), py::arg("pooled"), py::arg("switches"), py::arg("denoms"), py::arg("geometry"),
     py::arg("size"), py::arg("k"), py::arg("alpha"), py::arg("beta"), py::arg("alpha_over_size"),
     py::arg("layout") = "NCHW");

  // grad_norm: the gradient w.r.t. the (unstored) LRN output, max_pool_undo's result.
  def_op(m, cuda, "response_norm_max_pool_undo", [](View grad_norm, View x, View denoms,
                                                    View grad_x, int64_t size, double k,
                                                    double alpha, double beta,
                                                    bool alpha_over_size,
                                                    const std::string& layout, bool relu) {
    const ResponseNormParams p = response_norm_params(size, k, alpha, beta, alpha_over_size);
    const bool nhwc = pool_nhwc(layout);
    expect_ndim_shared(x, 4, "x", nhwc ? "(N, H, W, C)" : "(N, C, H, W)",
                       {{&grad_norm, "grad_norm"}, {&denoms, "denoms"}, {&grad_x, "grad_x"}});
    const Dims d = layout_dims(x, nhwc);
    const int64_t n = d.n, c = d.c, hw = d.h * d.w;
    Place at({&grad_norm, &x, &denoms, &grad_x});
    const float* dp = denoms.data<float>("denoms");  // float32 for either dtype
    with_real(at, grad_norm, "grad_norm", [&](auto t) {
      using T = decltype(t);
      const T *gy = grad_norm.data<T>("grad_norm"), *xp = x.data<T>("x");
      ALEXNET_EXT_KERNELS(response_norm_undo)(at, gy, xp, static_cast<const T*>(nullptr), dp,
                                              grad_x.mut<T>("grad_x"), n, c, hw, p, nhwc, relu);
    });
  }, py::arg("grad_norm"), py::arg("x"), py::arg("denoms"), py::arg("grad_x"), py::arg("size"),
     py::arg("k"), py::arg("alpha"), py::arg("beta"), py::arg("alpha_over_size"),
     py::arg("layout") = "NCHW", py::arg("relu") = false);
}

}  // namespace alexnet_ext::binding
