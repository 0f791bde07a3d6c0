// Binding of ReLU (relu.h) for NumPy arrays and DeviceArrays.
#include "python/view.h"
#include "relu.h"

namespace alexnet_ext::binding {

void bind_relu(py::module_& m, py::module_* cuda) {
  def_elementwise(m, cuda, "relu", ALEXNET_EXT_KERNELS(relu), "x", "out");
  def_elementwise(m, cuda, "relu_undo", ALEXNET_EXT_KERNELS(relu_undo), "grad_y", "y", "out");
}

}  // namespace alexnet_ext::binding
