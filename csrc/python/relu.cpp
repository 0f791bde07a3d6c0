// Bindings for csrc/cpu/relu.cpp.
#include "relu.h"
#include "python/array.h"
#include "python/same_shape.h"
#ifdef ALEXNET_EXT_WITH_CUDA
#include "python/cuda_array.h"
#endif

namespace alexnet_ext::binding {

void bind_relu(py::module_& m) {
  m.def("relu", [](FArray x, FArray out) {
    expect_same_shape(out, x, "out", "x");
    float* o = writable(out, "out");
    const int64_t n = x.size();
    py::gil_scoped_release release;
    cpu::relu(x.data(), o, n);
  }, py::arg("x").noconvert(), py::arg("out").noconvert());

  m.def("relu_undo", [](FArray grad_y, FArray y, FArray out) {
    expect_same_shape(y, grad_y, "y", "grad_y");
    expect_same_shape(out, grad_y, "out", "grad_y");
    float* o = writable(out, "out");
    const int64_t n = grad_y.size();
    py::gil_scoped_release release;
    cpu::relu_undo(grad_y.data(), y.data(), o, n);
  }, py::arg("grad_y").noconvert(), py::arg("y").noconvert(), py::arg("out").noconvert());
}

#ifdef ALEXNET_EXT_WITH_CUDA
// The same functions on _core.cuda, for DeviceArrays (cuda/relu.cu).
void bind_relu_cuda(py::module_& m) {
  m.def("relu", [](const DeviceArray& x, const DeviceArray& out) {
    expect_same_dshape(out, x, "out", "x");
    const float* xp = dptr<float>(x, "x");
    float* o = dptr_mut<float>(out, "out");
    DeviceScope scope(common_device({&x, &out}));
    const cudaStream_t stream = cuda::current_stream();
    py::gil_scoped_release release;
    cuda::relu(xp, o, x.size(), stream);
  }, py::arg("x"), py::arg("out"));

  m.def("relu_undo", [](const DeviceArray& grad_y, const DeviceArray& y, const DeviceArray& out) {
    expect_same_dshape(y, grad_y, "y", "grad_y");
    expect_same_dshape(out, grad_y, "out", "grad_y");
    const float* gyp = dptr<float>(grad_y, "grad_y");
    const float* yp = dptr<float>(y, "y");
    float* o = dptr_mut<float>(out, "out");
    DeviceScope scope(common_device({&grad_y, &y, &out}));
    const cudaStream_t stream = cuda::current_stream();
    py::gil_scoped_release release;
    cuda::relu_undo(gyp, yp, o, grad_y.size(), stream);
  }, py::arg("grad_y"), py::arg("y"), py::arg("out"));
}
#endif  // ALEXNET_EXT_WITH_CUDA

}  // namespace alexnet_ext::binding
