// Binding of the elementwise sum (add.h) for NumPy arrays and DeviceArrays.
#include "add.h"
#include "python/view.h"

namespace alexnet_ext::binding {

void bind_add(py::module_& m, py::module_* cuda) {
  def_elementwise(m, cuda, "add", ALEXNET_EXT_KERNELS(add), "a", "b", "out");
}

}  // namespace alexnet_ext::binding
