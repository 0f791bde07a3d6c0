// Bindings for csrc/cpu/softmax_log_loss.cpp. Labels come as int32 or int64 arrays; every label
// is range-checked here before a kernel indexes with it.
#include <string>

#include "python/array.h"
#include "softmax_log_loss.h"

namespace alexnet_ext::binding {

namespace {

// Calls fn(const L* labels) with the labels' element type, after checking shape and range.
template <class Fn>
void with_labels(const py::object& obj, int64_t n, int64_t k, Fn fn) {
  auto run = [&](auto arr) {
    expect_shape(arr, {n}, "labels");
    const auto* l = arr.data();
    for (int64_t i = 0; i < n; ++i)
      if (l[i] < 0 || l[i] >= k)
        throw py::value_error("labels: labels[" + std::to_string(i) + "] = " +
                              std::to_string(l[i]) + " is outside [0, " + std::to_string(k) + ")");
    fn(l);
  };
  if (Array<int32_t>::check_(obj))
    run(py::reinterpret_borrow<Array<int32_t>>(obj));
  else if (Array<int64_t>::check_(obj))
    run(py::reinterpret_borrow<Array<int64_t>>(obj));
  else
    throw py::type_error("labels: expected a C-contiguous int32 or int64 array");
}

void expect_2d(const FArray& a, const char* name) {
  if (a.ndim() != 2) throw py::value_error(std::string(name) + ": expected 2 dimensions (N, K)");
}

}  // namespace

void bind_softmax_log_loss(py::module_& m) {
  m.def("softmax_log_loss", [](FArray logits, py::object labels, FArray probs) {
    expect_2d(logits, "logits");
    const int64_t n = logits.shape(0), k = logits.shape(1);
    expect_shape(probs, {n, k}, "probs");
    float* p = writable(probs, "probs");
    double total = 0.0;
    with_labels(labels, n, k, [&](const auto* l) {
      py::gil_scoped_release release;
      total = cpu::softmax_log_loss(logits.data(), l, p, n, k);
    });
    return total;
  }, py::arg("logits").noconvert(), py::arg("labels"), py::arg("probs").noconvert(),
     "Fills probs and returns the summed (not averaged) loss.");

  m.def("softmax_log_loss_undo", [](FArray probs, py::object labels, FArray out, float scale) {
    expect_2d(probs, "probs");
    const int64_t n = probs.shape(0), k = probs.shape(1);
    expect_shape(out, {n, k}, "out");
    float* o = writable(out, "out");
    with_labels(labels, n, k, [&](const auto* l) {
      py::gil_scoped_release release;
      cpu::softmax_log_loss_undo(probs.data(), l, o, n, k, scale);
    });
  }, py::arg("probs").noconvert(), py::arg("labels"), py::arg("out").noconvert(),
     py::arg("scale"));

  m.def("label_ranks", [](FArray probs, py::object labels, Array<int64_t> ranks) {
    expect_2d(probs, "probs");
    const int64_t n = probs.shape(0), k = probs.shape(1);
    expect_shape(ranks, {n}, "ranks");
    int64_t* r = writable(ranks, "ranks");
    with_labels(labels, n, k, [&](const auto* l) {
      py::gil_scoped_release release;
      cpu::label_ranks(probs.data(), l, r, n, k);
    });
  }, py::arg("probs").noconvert(), py::arg("labels"), py::arg("ranks").noconvert());
}

}  // namespace alexnet_ext::binding
