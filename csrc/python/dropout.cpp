// Bindings for csrc/cpu/dropout.cpp, plus the raw Philox-4x32-10 generator (for tests and for
// anyone reproducing a mask outside the package).
#include <cmath>

#include "dropout.h"
#include "philox.h"
#include "python/array.h"
#include "python/same_shape.h"
#ifdef ALEXNET_EXT_WITH_CUDA
#include "python/cuda_array.h"
#endif

namespace alexnet_ext::binding {

namespace {
using MaskArray = Array<uint8_t>;

void check_p(double p) {
  if (!(p >= 0.0 && p < 1.0)) throw py::value_error("p: expected 0 <= p < 1");
}

// (row, stride, start) of x within a larger array; row < 0: x is the whole array.
DropoutLayout layout_of(int64_t n, int64_t row, int64_t stride, int64_t start) {
  if (row < 0) return {n > 0 ? n : 1, n > 0 ? n : 1, 0};
  if (row == 0 || stride < row || start < 0 || start > stride - row || (n > 0 && n % row))
    throw py::value_error("block: expected (row, stride, start) with row >= 1 dividing x's size, "
                          "stride >= row and 0 <= start <= stride - row");
  // The last element's index in the larger array, (n/row - 1)*stride + start + row - 1, is a
  // Philox counter and must not overflow: checked by division.
  constexpr int64_t kMax = int64_t{1} << 62;
  if (stride > kMax || start > kMax - stride || (n / row > 1 && (n / row - 1) > (kMax - stride) / stride))
    throw py::value_error("block: the rows reach past element 2^62 of the larger array");
  return {row, stride, start};
}
}  // namespace

void bind_dropout(py::module_& m) {
  m.def("dropout", [](FArray x, FArray out, MaskArray mask, double p, uint64_t seed,
                      uint64_t offset, int64_t row, int64_t stride, int64_t start) {
    check_p(p);
    const DropoutLayout layout = layout_of(x.size(), row, stride, start);
    expect_same_shape(out, x, "out", "x");
    expect_same_shape(mask, x, "mask", "x");
    float* o = writable(out, "out");
    uint8_t* mk = writable(mask, "mask");
    const int64_t n = x.size();
    const uint32_t threshold = dropout_threshold(p);
    const float scale = dropout_scale(p);
    py::gil_scoped_release release;
    cpu::dropout(x.data(), o, mk, n, threshold, scale, seed, offset, layout);
  }, py::arg("x").noconvert(), py::arg("out").noconvert(), py::arg("mask").noconvert(),
     py::arg("p"), py::arg("seed"), py::arg("offset"), py::arg("row") = -1, py::arg("stride") = -1,
     py::arg("start") = 0);

  m.def("dropout_undo", [](FArray grad_y, MaskArray mask, FArray out, double p) {
    check_p(p);
    expect_same_shape(mask, grad_y, "mask", "grad_y");
    expect_same_shape(out, grad_y, "out", "grad_y");
    float* o = writable(out, "out");
    const int64_t n = grad_y.size();
    const float scale = dropout_scale(p);
    py::gil_scoped_release release;
    cpu::dropout_undo(grad_y.data(), mask.data(), o, n, scale);
  }, py::arg("grad_y").noconvert(), py::arg("mask").noconvert(), py::arg("out").noconvert(),
     py::arg("p"));

  m.def("philox4x32_10", [](uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                            uint32_t k1) {
    const Philox4x32 r = philox4x32_10(c0, c1, c2, c3, k0, k1);
    return py::make_tuple(r.v[0], r.v[1], r.v[2], r.v[3]);
  }, py::arg("c0"), py::arg("c1"), py::arg("c2"), py::arg("c3"), py::arg("k0"), py::arg("k1"));
}

#ifdef ALEXNET_EXT_WITH_CUDA
// The same functions on _core.cuda, for DeviceArrays (cuda/dropout.cu): the same Philox stream,
// so the same masks as the CPU for the same (seed, offset).
void bind_dropout_cuda(py::module_& m) {
  m.def("dropout", [](const DeviceArray& x, const DeviceArray& out, const DeviceArray& mask,
                      double p, uint64_t seed, uint64_t offset, int64_t row, int64_t stride,
                      int64_t start) {
    check_p(p);
    const DropoutLayout layout = layout_of(x.size(), row, stride, start);
    expect_same_dshape(out, x, "out", "x");
    expect_same_dshape(mask, x, "mask", "x");
    const float* xp = dptr<float>(x, "x");
    float* o = dptr_mut<float>(out, "out");
    uint8_t* mk = dptr_mut<uint8_t>(mask, "mask");
    const uint32_t threshold = dropout_threshold(p);
    const float scale = dropout_scale(p);
    DeviceScope scope(common_device({&x, &out, &mask}));
    const cudaStream_t stream = cuda::current_stream();
    py::gil_scoped_release release;
    cuda::dropout(xp, o, mk, x.size(), threshold, scale, seed, offset, layout, stream);
  }, py::arg("x"), py::arg("out"), py::arg("mask"), py::arg("p"), py::arg("seed"),
     py::arg("offset"), py::arg("row") = -1, py::arg("stride") = -1, py::arg("start") = 0);

  m.def("dropout_undo", [](const DeviceArray& grad_y, const DeviceArray& mask,
                           const DeviceArray& out, double p) {
    check_p(p);
    expect_same_dshape(mask, grad_y, "mask", "grad_y");
    expect_same_dshape(out, grad_y, "out", "grad_y");
    const float* gyp = dptr<float>(grad_y, "grad_y");
    const uint8_t* mk = dptr<uint8_t>(mask, "mask");
    float* o = dptr_mut<float>(out, "out");
    const float scale = dropout_scale(p);
    DeviceScope scope(common_device({&grad_y, &mask, &out}));
    const cudaStream_t stream = cuda::current_stream();
    py::gil_scoped_release release;
    cuda::dropout_undo(gyp, mk, o, grad_y.size(), scale, stream);
  }, py::arg("grad_y"), py::arg("mask"), py::arg("out"), py::arg("p"));
}
#endif  // ALEXNET_EXT_WITH_CUDA

}  // namespace alexnet_ext::binding
