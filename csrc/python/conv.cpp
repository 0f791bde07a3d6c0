// Binding of convolution (conv.h): filterActs, imgActs, weightActs and the bias gradient, one
// function each for NumPy arrays (cpu/conv.cpp) and DeviceArrays (cuda/conv.cu). The three passes
// take a precision: "fp32" (either side), "tf32" (float32 operands) or "bf16" (bfloat16
// operands), the last two on the GPU only (conv.h's version 3); results and bias are float32.
// And a layout: "NCHW" or "NHWC" (conv.h's *_nhwc functions); geometry and shapes are checked
// here in the layout's terms (memory safety), everything else in Python.
// filter_acts and img_acts also take conv.h's ConvEpilogue: relu (filter_acts), relu_mask
// (img_acts: the ReLU output the gradient is undone against, out's shape) and a bfloat16 out
// (GPU only), read off out's dtype.
#include <string>
#include <type_traits>

#include "conv.h"
#include "python/view.h"

namespace alexnet_ext::binding {

namespace {
void check(const ConvGeometry& g) {
  if (const char* err = conv_geometry_error(g)) throw py::value_error(err);
}
bool is_nhwc(const std::string& layout) {
  if (layout != "NCHW" && layout != "NHWC")
    throw py::value_error("layout: expected 'NCHW' or 'NHWC', got '" + layout + "'");
  return layout == "NHWC";
}
// The three array roles of a convolution: images (N, C, H, W), filters (F, C/groups, kh, kw) and
// hidden activations or their gradients (N, F, Ho, Wo); NHWC: (N, H, W, C), (F, kh, kw, C/groups),
// (N, Ho, Wo, F).
enum Role { kImages, kFilters, kHidden };
std::vector<int64_t> shape_of(Role r, const ConvGeometry& g, bool nhwc) {
  using S = std::vector<int64_t>;
  if (r == kImages) return nhwc ? S{g.n, g.h, g.w, g.c} : S{g.n, g.c, g.h, g.w};
  if (r == kFilters) return nhwc ? S{g.f, g.kh, g.kw, g.cg()} : S{g.f, g.cg(), g.kh, g.kw};
  return nhwc ? S{g.n, g.ho, g.wo, g.f} : S{g.n, g.f, g.ho, g.wo};
}

// A pass's kernels by precision: fp32 a Kernels pair, tf32/bf16 cuda:: functions (GPU only).
template <class Fp32, class Tf32, class Bf16>
struct Pass {
  Fp32 fp32;
  Tf32 tf32;
  Bf16 bf16;
};
template <class A, class B, class C> Pass(A, B, C) -> Pass<A, B, C>;
#ifdef ALEXNET_EXT_WITH_CUDA
#define CONV_PASS(fn)                                                           \
  Pass{ALEXNET_EXT_KERNELS(fn), [](auto... a) { cuda::fn##_tf32(a...); }, \
       [](auto... a) { cuda::fn##_bf16(a...); }}
// NHWC: one cuda:: function per pass with the element type as its last argument.
#define CONV_PASS_NHWC(fn)                                                                \
  Pass{ALEXNET_EXT_KERNELS(fn), [](auto... a) { cuda::fn(a..., cuda::ConvElem::tf32); }, \
       [](auto... a) { cuda::fn(a..., cuda::ConvElem::bf16); }}
#else
#define CONV_PASS(fn) Pass{ALEXNET_EXT_KERNELS(fn), nullptr, nullptr}
#define CONV_PASS_NHWC(fn) CONV_PASS(fn)
#endif

// Runs `pass` on operands (a, b) read as the precision's element type; rest: bias (filter_acts
// only), out, geometry, scales.
template <class P, class... Rest>
void run(const P& pass, const std::string& precision, const Place& at, const View& a,
         const char* a_name, const View& b, const char* b_name, Rest... rest) {
  if (precision != "fp32" && precision != "tf32" && precision != "bf16")
    throw py::value_error("precision: expected 'fp32', 'tf32' or 'bf16', got '" + precision + "'");
  if (precision == "fp32") return pass.fp32(at, a.data<float>(a_name), b.data<float>(b_name), rest...);
  if (!at.gpu()) throw py::type_error("precision: '" + precision + "' runs on DeviceArrays only");
#ifdef ALEXNET_EXT_WITH_CUDA
  if (precision == "tf32") {
    const float *ap = a.data<float>(a_name), *bp = b.data<float>(b_name);
    py::gil_scoped_release release;
    return pass.tf32(ap, bp, rest..., at.stream());
  }
  const uint16_t *ap = a.data<uint16_t>(a_name), *bp = b.data<uint16_t>(b_name);
  py::gil_scoped_release release;
  pass.bf16(ap, bp, rest..., at.stream());
#endif
}
// out's data and the epilogue's store: float32 out, or (GPU only; with_real refuses the host)
// bfloat16 out, its uint16_t bits behind the float* (conv.h's ConvEpilogue::out_bf16). The mask,
// if any, must be out-shaped, float32 or bfloat16 (GPU only).
float* epilogue_target(const Place& at, View& out, const std::optional<View>& mask,
                       ConvEpilogue& ep) {
  float* o = nullptr;
  with_real(at, out, "out", [&](auto t) {
    using T = decltype(t);
    ep.out_bf16 = std::is_same_v<T, uint16_t>;
    o = reinterpret_cast<float*>(out.mut<T>("out"));
  });
  if (mask) {
    expect_same_shape(*mask, out, "relu_mask", "out");
    with_real(at, *mask, "relu_mask", [&](auto t) {
      using T = decltype(t);
      ep.mask_bf16 = std::is_same_v<T, uint16_t>;
      ep.relu_mask = mask->data<T>("relu_mask");
    });
  }
  return o;
}
}  // namespace

void bind_conv(py::module_& m, py::module_* cuda) {
  def_op(m, cuda, "filter_acts", [](View images, View filters, std::optional<View> bias, View out,
                                    const ConvGeometry& g, float st, float so,
                                    const std::string& precision, const std::string& layout,
                                    bool relu) {
    check(g);
    const bool nhwc = is_nhwc(layout);
    expect_shape(images, shape_of(kImages, g, nhwc), "images");
    expect_shape(filters, shape_of(kFilters, g, nhwc), "filters");
    expect_shape(out, shape_of(kHidden, g, nhwc), "out");
    if (bias) expect_shape(*bias, {g.f}, "bias");
    Place at({&images, &filters, bias ? &*bias : nullptr, &out});
    const float* b = bias ? bias->data<float>("bias") : nullptr;
    ConvEpilogue ep;
    ep.relu = relu;
    float* o = epilogue_target(at, out, std::nullopt, ep);
    if (nhwc)
      return run(CONV_PASS_NHWC(filter_acts_nhwc), precision, at, images, "images", filters,
                 "filters", b, o, g, st, so, ep);
    run(CONV_PASS(filter_acts), precision, at, images, "images", filters, "filters", b, o, g, st,
        so, ep);
  }, py::arg("images"), py::arg("filters"), py::arg("bias"), py::arg("out"), py::arg("geometry"),
     py::arg("scale_targets"), py::arg("scale_output"), py::arg("precision") = "fp32",
     py::arg("layout") = "NCHW", py::arg("relu") = false);

  // img_acts (hid_grads, filters -> images; with the epilogue's relu_mask and bf16 out) and
  // weight_acts (images, hid_grads -> filters; no epilogue): one checking body, two signatures.
  auto def_undo = [&](const char* op, Role ra, const char* a_name, Role rb, const char* b_name,
                      Role r_out, auto pass, auto pass_nhwc, auto with_epilogue) {
    constexpr bool kEp = decltype(with_epilogue)::value;
    auto body = [=](View a, View b, View out, const ConvGeometry& g, float st, float so,
                    const std::string& precision, const std::string& layout,
                    const std::optional<View>& mask) {
      check(g);
      const bool nhwc = is_nhwc(layout);
      expect_shape(a, shape_of(ra, g, nhwc), a_name);
      expect_shape(b, shape_of(rb, g, nhwc), b_name);
      expect_shape(out, shape_of(r_out, g, nhwc), "out");
      Place at({&a, &b, &out, mask ? &*mask : nullptr});
      if constexpr (kEp) {
        ConvEpilogue ep;
        float* o = epilogue_target(at, out, mask, ep);
        if (nhwc) return run(pass_nhwc, precision, at, a, a_name, b, b_name, o, g, st, so, ep);
        run(pass, precision, at, a, a_name, b, b_name, o, g, st, so, ep);
      } else {
        if (nhwc)
          return run(pass_nhwc, precision, at, a, a_name, b, b_name, out.mut<float>("out"), g,
                     st, so);
        run(pass, precision, at, a, a_name, b, b_name, out.mut<float>("out"), g, st, so);
      }
    };
    const auto args = std::make_tuple(py::arg(a_name), py::arg(b_name), py::arg("out"),
                                      py::arg("geometry"), py::arg("scale_targets"),
                                      py::arg("scale_output"), py::arg("precision") = "fp32",
                                      py::arg("layout") = "NCHW");
    std::apply([&](auto... arg) {
      if constexpr (kEp)
        def_op(m, cuda, op, [=](View a, View b, View out, const ConvGeometry& g, float st,
                                float so, const std::string& precision,
                                const std::string& layout, std::optional<View> relu_mask) {
          body(a, b, out, g, st, so, precision, layout, relu_mask);
        }, arg..., py::arg("relu_mask") = py::none());
      else
        def_op(m, cuda, op, [=](View a, View b, View out, const ConvGeometry& g, float st,
                                float so, const std::string& precision,
                                const std::string& layout) {
          body(a, b, out, g, st, so, precision, layout, std::nullopt);
        }, arg...);
    }, args);
  };
  def_undo("img_acts", kHidden, "hid_grads", kFilters, "filters", kImages, CONV_PASS(img_acts),
           CONV_PASS_NHWC(img_acts_nhwc), std::true_type{});
  def_undo("weight_acts", kImages, "images", kHidden, "hid_grads", kFilters,
           CONV_PASS(weight_acts), CONV_PASS_NHWC(weight_acts_nhwc), std::false_type{});

  // NHWC hid_grads are an (N*Ho*Wo, F) matrix: the NCHW reduction with one pixel per "image".
  def_op(m, cuda, "conv_bias_grad", [](View hid, View out, float st, float so,
                                       const std::string& layout) {
    const bool nhwc = is_nhwc(layout);
    expect_ndim(hid, 4, "hid_grads", nhwc ? "(N, Ho, Wo, F)" : "(N, F, Ho, Wo)");
    const int64_t n = nhwc ? hid.shape[0] * hid.shape[1] * hid.shape[2] : hid.shape[0];
    const int64_t f = hid.shape[nhwc ? 3 : 1];
    const int64_t pixels = nhwc ? 1 : hid.shape[2] * hid.shape[3];
    expect_shape(out, {f}, "out");
    Place at({&hid, &out});
    if (hid.size() == 0) throw py::value_error("hid_grads: expected a non-empty array");
    with_real(at, hid, "hid_grads", [&](auto t) {  // bfloat16: GPU only
      using T = decltype(t);
      const T* h = hid.data<T>("hid_grads");
      float* o = out.mut<float>("out");
      ALEXNET_EXT_KERNELS(conv_bias_grad)(at, h, o, n, f, pixels, st, so);
    });
  }, py::arg("hid_grads"), py::arg("out"), py::arg("scale_targets"), py::arg("scale_output"),
     py::arg("layout") = "NCHW");

#ifdef ALEXNET_EXT_WITH_CUDA
  cuda->def("set_conv_kernel", &cuda::set_conv_kernel, py::arg("version"),
            "Select the CUDA convolution kernels for precision 'fp32': 1 = reference (direct "
            "loops), 2 = tiled implicit GEMM (default), 3 = tensor cores in tf32. Process-wide.");
  cuda->def("get_conv_kernel", &cuda::get_conv_kernel,
            "The CUDA convolution kernel version in use (1, 2 or 3).");
  cuda->def("_conv_path_counts", [] {
    const cuda::ConvPathCounts c = cuda::conv_path_counts();
    return py::dict(py::arg("split_k") = c.split_k, py::arg("s2d") = c.s2d,
                    py::arg("fused") = c.fused);
  }, "For tests: how often the conv dispatcher took split-K, imgActs by space-to-depth, and a "
     "fused epilogue (relu, relu_mask or bf16 out) since the process started.");
#endif
}

}  // namespace alexnet_ext::binding
