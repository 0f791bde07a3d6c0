// Binding of inverted dropout (dropout.h) for NumPy arrays and DeviceArrays (the same Philox
// stream, so the same masks for the same seed and offset), plus the raw Philox-4x32-10 generator
// (for tests and for anyone reproducing a mask outside the package).
#include "dropout.h"
#include "philox.h"
#include "python/view.h"

namespace alexnet_ext::binding {

namespace {
void check_p(double p) {
  if (!(p >= 0.0 && p < 1.0)) throw py::value_error("p: expected 0 <= p < 1");
}

// (row, stride, start) of x within a larger array; row < 0: x is the whole array.
// Any start >= 0 is allowed (the kernels index g(i) = (i / row) * stride + start + i % row): a
// rank of a data-parallel job passes its first sample's position in the global batch there,
// beyond stride - row when it also holds one column's block of every sample. The largest index
// must fit in int64.
DropoutLayout layout_of(int64_t n, int64_t row, int64_t stride, int64_t start) {
  if (row < 0) return {n > 0 ? n : 1, n > 0 ? n : 1, 0};
  if (row == 0 || stride < row || start < 0 || (n > 0 && n % row))
    throw py::value_error("block: expected (row, stride, start) with row >= 1 dividing x's size, "
                          "stride >= row and start >= 0");
  // The last element's index in the larger array, (n/row - 1)*stride + start + row - 1, is a
  // Philox counter: bounded by 2^62 (the Python check's bound), checked by division.
  constexpr int64_t kMax = int64_t{1} << 62;
  const int64_t rows = n > 0 ? n / row : 1;
  if (stride > kMax || start > kMax - stride || (rows > 1 && (rows - 1) > (kMax - stride - start) / stride))
    throw py::value_error("block: the rows reach past element 2^62 of the larger array");
  return {row, stride, start};
}
}  // namespace

void bind_dropout(py::module_& m, py::module_* cuda) {
  // seed_table (int64, on x's side) and seed_index: read the seed from that element when the
  // kernel runs (dropout.h: seed in memory); `seed` is then unused.
  def_op(m, cuda, "dropout", [](View x, View out, View mask, double p, uint64_t seed,
                                uint64_t offset, int64_t row, int64_t stride, int64_t start,
                                std::optional<View> seed_table, int64_t seed_index) {
    check_p(p);
    const DropoutLayout layout = layout_of(x.size(), row, stride, start);
    expect_shape_of(x, "x", {{&out, "out"}, {&mask, "mask"}});
    const View* table = seed_table ? &*seed_table : nullptr;
    Place at({&x, &out, &mask, table});
    uint8_t* mk = mask.mut<uint8_t>("mask");
    const uint64_t* seed_at = nullptr;
    if (table) {
      if (!table->dense() || seed_index < 0 || seed_index >= table->size())
        throw py::value_error("seed_table: expected a dense int64 array with element seed_index");
      seed_at = reinterpret_cast<const uint64_t*>(table->data<int64_t>("seed_table") + seed_index);
    }
    with_real(at, x, "x", [&](auto t) {  // bf16: GPU only, the same mask
      using T = decltype(t);
      const T* xp = x.data<T>("x");
      T* o = out.mut<T>("out");
      ALEXNET_EXT_KERNELS(dropout)(at, xp, o, mk, x.size(), dropout_threshold(p),
                                   dropout_scale(p), seed, seed_at, offset, layout);
    });
  }, py::arg("x"), py::arg("out"), py::arg("mask"), py::arg("p"), py::arg("seed"),
     py::arg("offset"), py::arg("row") = -1, py::arg("stride") = -1, py::arg("start") = 0,
     py::arg("seed_table") = py::none(), py::arg("seed_index") = 0);

  // relu_mask (optional, grad_y's shape and dtype): relu_undo folded in (dropout.h).
  def_op(m, cuda, "dropout_undo", [](View grad_y, View mask, View out, double p,
                                     std::optional<View> relu_mask) {
    check_p(p);
    expect_shape_of(grad_y, "grad_y", {{&mask, "mask"}, {&out, "out"}});
    if (relu_mask) expect_same_shape(*relu_mask, grad_y, "relu_mask", "grad_y");
    Place at({&grad_y, &mask, &out, relu_mask ? &*relu_mask : nullptr});
    const uint8_t* mk = mask.data<uint8_t>("mask");
    with_real(at, grad_y, "grad_y", [&](auto t) {
      using T = decltype(t);
      const T* gy = grad_y.data<T>("grad_y");
      const T* rm = relu_mask ? relu_mask->data<T>("relu_mask") : nullptr;
      T* o = out.mut<T>("out");
      ALEXNET_EXT_KERNELS(dropout_undo)(at, gy, mk, rm, o, grad_y.size(), dropout_scale(p));
    });
  }, py::arg("grad_y"), py::arg("mask"), py::arg("out"), py::arg("p"),
     py::arg("relu_mask") = py::none());

  m.def("philox4x32_10", [](uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0,
                            uint32_t k1) {
    const Philox4x32 r = philox4x32_10(c0, c1, c2, c3, k0, k1);
    return py::make_tuple(r.v[0], r.v[1], r.v[2], r.v[3]);
  }, py::arg("c0"), py::arg("c1"), py::arg("c2"), py::arg("c3"), py::arg("k0"), py::arg("k1"));
}

}  // namespace alexnet_ext::binding
