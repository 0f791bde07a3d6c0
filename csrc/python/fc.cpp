// Binding of the fully connected layer (fc.h) for NumPy arrays and DeviceArrays. Its GPU GEMMs are
// cuBLAS's: a build without cuBLAS leaves fc_* out of _core.cuda (alexnet_ext.ops says so).
// Operands (x, w, grad_y) are all float32 or all bf16 (GPU only, with_real); y and grad_x are
// float32, or bf16 with bf16 operands (their dtype says which); bias, grad_w, grad_b float32.
#include <stdexcept>
#include <type_traits>

#include "fc.h"
#include "python/view.h"

namespace alexnet_ext::binding {

namespace {
#if !defined(ALEXNET_EXT_WITH_CUDA) || defined(ALEXNET_EXT_WITH_CUBLAS)
#define FC_KERNELS(fn) ALEXNET_EXT_KERNELS(fn)
#else
#define FC_KERNELS(fn) Kernels{ALEXNET_EXT_CPU_KERNEL(fn), \
    [](auto...) { throw std::logic_error("fc: no CUDA kernel in this build"); }}
#endif

// Calls f(o) with o the float32 or (bf16 operands only) bf16 data of `out` (y or grad_x).
template <class T, class F>
void with_out(View& out, const char* name, const char* operand, F&& f) {
  if (out.dtype != Dtype::bf16) return f(out.mut<float>(name));
  if constexpr (std::is_same_v<T, float>)
    throw py::type_error(std::string(name) + ": a bfloat16 output needs bfloat16 operands (" +
                         operand + " is float32)");
  else
    f(out.mut<uint16_t>(name));
}
}  // namespace

void bind_fc(py::module_& m, py::module_* cuda) {
#if !defined(ALEXNET_EXT_WITH_CUBLAS)
  cuda = nullptr;  // CPU only
#endif
  def_op(m, cuda, "fc_forward", [](View x, View w, std::optional<View> bias, View out, float st,
                                   float so) {
    expect_ndim(x, 2, "x", "(N, D)");
    expect_ndim(w, 2, "w", "(F, D)");
    const int64_t n = x.shape[0], d = x.shape[1], f = w.shape[0];
    expect_shape(w, {f, d}, "w");
    expect_shape(out, {n, f}, "out");
    if (bias) expect_shape(*bias, {f}, "bias");
    Place at({&x, &w, bias ? &*bias : nullptr, &out});
    const float* b = bias ? bias->data<float>("bias") : nullptr;
    with_real(at, x, "x", [&](auto t) {
      using T = decltype(t);
      const T *xp = x.data<T>("x"), *wp = w.data<T>("w");
      with_out<T>(out, "out", "x", [&](auto* o) {
        FC_KERNELS(fc_forward)(at, xp, wp, b, o, n, d, f, st, so);
      });
    });
  }, py::arg("x"), py::arg("w"), py::arg("bias"), py::arg("out"), py::arg("scale_targets"),
     py::arg("scale_output"));

  // fc_grad_x (grad_y with w (F, D) -> (N, D)) and fc_grad_w (grad_y with x (N, D) -> (F, D)):
  // D is the other operand's column count in both.
  // is_w: std::true_type for fc_grad_x (a compile-time flag: only grad_x may be bf16).
  auto def_grad = [&](const char* op, const char* other, const char* layout, auto is_w,
                      auto kernels) {
    constexpr bool other_is_w = decltype(is_w)::value;
    def_op(m, cuda, op, [=](View gy, View b, View out, float st, float so) {
      expect_ndim(gy, 2, "grad_y", "(N, F)");
      expect_ndim(b, 2, other, layout);
      const int64_t n = gy.shape[0], f = gy.shape[1], d = b.shape[1];
      expect_shape(b, {other_is_w ? f : n, d}, other);
      expect_shape(out, {other_is_w ? n : f, d}, "out");
      Place at({&gy, &b, &out});
      with_real(at, gy, "grad_y", [&](auto t) {
        using T = decltype(t);
        const T *g = gy.data<T>("grad_y"), *bp = b.data<T>(other);
        if constexpr (other_is_w) {  // grad_x: float32 or bf16
          with_out<T>(out, "out", "grad_y", [&](auto* o) { kernels(at, g, bp, o, n, d, f, st, so); });
        } else {  // grad_w: float32 always
          kernels(at, g, bp, out.mut<float>("out"), n, d, f, st, so);
        }
      });
    }, py::arg("grad_y"), py::arg(other), py::arg("out"), py::arg("scale_targets"),
       py::arg("scale_output"));
  };
  def_grad("fc_grad_x", "w", "(F, D)", std::true_type{}, FC_KERNELS(fc_grad_x));
  def_grad("fc_grad_w", "x", "(N, D)", std::false_type{}, FC_KERNELS(fc_grad_w));

  def_op(m, cuda, "fc_grad_b", [](View gy, View out, float st, float so) {
    expect_ndim(gy, 2, "grad_y", "(N, F)");
    const int64_t n = gy.shape[0], f = gy.shape[1];
    expect_shape(out, {f}, "out");
    Place at({&gy, &out});
    with_real(at, gy, "grad_y", [&](auto t) {
      using T = decltype(t);
      FC_KERNELS(fc_grad_b)(at, gy.data<T>("grad_y"), out.mut<float>("out"), n, f, st, so);
    });
  }, py::arg("grad_y"), py::arg("out"), py::arg("scale_targets"), py::arg("scale_output"));
}

}  // namespace alexnet_ext::binding
