// Binding of the float32 <-> bfloat16 cast (cast.h) for NumPy arrays and DeviceArrays; the
// direction follows x's dtype.
#include "cast.h"
#include "python/view.h"

namespace alexnet_ext::binding {

void bind_cast(py::module_& m, py::module_* cuda) {
  def_op(m, cuda, "cast", [](View x, View out) {
    expect_same_shape(out, x, "out", "x");
    Place at({&x, &out});
    if (x.dtype == Dtype::bf16) {
      const uint16_t* xp = x.data<uint16_t>("x");
      ALEXNET_EXT_KERNELS(cast_to_f32)(at, xp, out.mut<float>("out"), x.size());
    } else {
      const float* xp = x.data<float>("x");
      ALEXNET_EXT_KERNELS(cast_to_bf16)(at, xp, out.mut<uint16_t>("out"), x.size());
    }
  }, py::arg("x"), py::arg("out"), "out = x as out's dtype (float32 -> bfloat16 or back).");
}

}  // namespace alexnet_ext::binding
