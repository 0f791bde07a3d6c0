// Binding of average pooling (avg_pool.h) for NumPy arrays and DeviceArrays.
#include <string>

#include "avg_pool.h"
#include "python/pool_layout.h"
#include "python/view.h"

namespace alexnet_ext::binding {

void check_pool(const PoolGeometry& g);  // max_pool.cpp: the pooling ops' one geometry check
PoolGeometry with_layout(const PoolGeometry& g, const std::string& layout);  // max_pool.cpp

void bind_avg_pool(py::module_& m, py::module_* cuda) {
  // avg_pool reads x (N, C, H, W) and writes y (N, C, Ho, Wo); the undo goes the other way.
  auto def = [&](const char* op, const char* in, const char* out, bool forward, auto kernels) {
    def_op(m, cuda, op, [=](View a, View b, const PoolGeometry& geometry,
                            const std::string& layout) {
      const PoolGeometry g = with_layout(geometry, layout);
      check_pool(g);
      const std::vector<int64_t> image = layout_shape(g.n, g.c, g.h, g.w, g.nhwc),
                                 pooled = layout_shape(g.n, g.c, g.ho, g.wo, g.nhwc);
      expect_shape(a, forward ? image : pooled, in);
      expect_shape(b, forward ? pooled : image, out);
      Place at({&a, &b});
      with_real(at, a, in, [&](auto t) {
        using T = decltype(t);
        const T* ap = a.data<T>(in);
        kernels(at, ap, b.mut<T>(out), g);
      });
    }, py::arg(in), py::arg(out), py::arg("geometry"), py::arg("layout") = "NCHW");
  };
  def("avg_pool", "x", "y", true, ALEXNET_EXT_KERNELS(avg_pool));
  def("avg_pool_undo", "grad_y", "grad_x", false, ALEXNET_EXT_KERNELS(avg_pool_undo));
}

}  // namespace alexnet_ext::binding
