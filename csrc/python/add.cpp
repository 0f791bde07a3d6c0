// Bindings for csrc/cpu/add.cpp and csrc/cuda/add.cu.
#include "add.h"
#include "python/array.h"
#include "python/same_shape.h"
#ifdef ALEXNET_EXT_WITH_CUDA
#include "python/cuda_array.h"
#endif

namespace alexnet_ext::binding {

void bind_add(py::module_& m) {
  m.def("add", [](FArray a, FArray b, FArray out) {
    expect_same_shape(b, a, "b", "a");
    expect_same_shape(out, a, "out", "a");
    float* o = writable(out, "out");
    const int64_t n = a.size();
    py::gil_scoped_release release;
    cpu::add(a.data(), b.data(), o, n);
  }, py::arg("a").noconvert(), py::arg("b").noconvert(), py::arg("out").noconvert());
}

#ifdef ALEXNET_EXT_WITH_CUDA
void bind_add_cuda(py::module_& m) {
  m.def("add", [](const DeviceArray& a, const DeviceArray& b, const DeviceArray& out) {
    expect_same_dshape(b, a, "b", "a");
    expect_same_dshape(out, a, "out", "a");
    const float* ap = dptr<float>(a, "a");
    const float* bp = dptr<float>(b, "b");
    float* o = dptr_mut<float>(out, "out");
    DeviceScope scope(common_device({&a, &b, &out}));
    const cudaStream_t stream = cuda::current_stream();
    py::gil_scoped_release release;
    cuda::add(ap, bp, o, a.size(), stream);
  }, py::arg("a"), py::arg("b"), py::arg("out"));
}
#endif  // ALEXNET_EXT_WITH_CUDA

}  // namespace alexnet_ext::binding
