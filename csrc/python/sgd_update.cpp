// Bindings for csrc/cpu/sgd_update.cpp.
#include "python/array.h"
#include "python/same_shape.h"
#include "sgd_update.h"

namespace alexnet_ext::binding {

void bind_sgd_update(py::module_& m) {
  m.def("sgd_update", [](FArray w, FArray grad, FArray velocity, float lr, float momentum,
                         float decay_lr) {
    expect_same_shape(grad, w, "grad", "w");
    expect_same_shape(velocity, w, "velocity", "w");
    float* wp = writable(w, "w");
    float* vp = writable(velocity, "velocity");
    const int64_t n = w.size();
    py::gil_scoped_release release;
    cpu::sgd_update(wp, grad.data(), vp, n, lr, momentum, decay_lr);
  }, py::arg("w").noconvert(), py::arg("grad").noconvert(), py::arg("velocity").noconvert(),
     py::arg("lr"), py::arg("momentum"), py::arg("decay_lr"),
     "decay_lr is weight_decay * lr, computed by the caller in double.");
}

}  // namespace alexnet_ext::binding
