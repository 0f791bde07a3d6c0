// Binding of softmax log-loss (softmax_log_loss.h) for NumPy arrays and DeviceArrays. Every label
// is range-checked before a kernel indexes with it: on the host here, on the GPU by the kernels,
// whose verdict is read back (one stream synchronisation per call) except in
// softmax_log_loss_nosync, which never waits and turns a bad label into a NaN loss, and in
// softmax_log_loss_undo, whose verdict is raised at the next synchronisation (a deferred check,
// cuda/report.h).
#include <string>
#include <type_traits>
#include <vector>

#include "python/view.h"
#include "softmax_log_loss.h"

namespace alexnet_ext::binding {

namespace {

#ifdef ALEXNET_EXT_WITH_CUDA
using BadValues = cuda::BadValues;
#else
struct BadValues {};
#endif

std::string bad_label(int64_t i, int64_t v, int64_t k, uint64_t count) {
  return "labels: labels[" + std::to_string(i) + "] = " + std::to_string(v) + " is outside [0, " +
         std::to_string(k) + ")" + (count ? " (" + std::to_string(count) + " bad label" +
                                    (count > 1 ? "s" : "") + " in all)" : "");
}

// On the host, before a kernel indexes with them.
template <class L>
void check_labels(const L* l, int64_t n, int64_t k) {
  for (int64_t i = 0; i < n; ++i)
    if (l[i] < 0 || l[i] >= k) throw py::value_error(bad_label(i, l[i], k, 0));
}

// (n, k) of a (N, K) probs/logits array and labels of shape (N,).
void expect_rows(const View& a, const View& labels, const char* name, int64_t& n, int64_t& k) {
  expect_ndim(a, 2, name, "(N, K)");
  n = a.shape[0];
  k = a.shape[1];
  expect_shape(labels, {n}, "labels");
}

// Calls run(l) with the labels as int32 or int64; on the host after checking their range, on the
// GPU with run's BadValues* to fill, raising for a bad label afterwards (run waits for it).
template <class Run>
void with_labels(const Place& at, const View& labels, int64_t n, int64_t k, Run run) {
  with_index(labels, "labels", false, [&](const auto* l) {
    if (!at.gpu()) {
      check_labels(l, n, k);
      py::gil_scoped_release release;
      run(l, static_cast<BadValues*>(nullptr));
      return;
    }
#ifdef ALEXNET_EXT_WITH_CUDA
    cuda::BadValues bad{};
    {
      py::gil_scoped_release release;
      cuda::BadValueReport report(at.device(), at.stream());
      run(l, report.device_ptr());
      bad = report.read();
    }
    if (bad.count) {
      const auto i = static_cast<int64_t>(bad.first);
      throw py::value_error(bad_label(i, static_cast<int64_t>(cuda::fetch_element(l, i, at.stream())),
                                      k, bad.count));
    }
#endif
  });
}

}  // namespace

void bind_softmax_log_loss(py::module_& m, py::module_* cuda) {
  def_op(m, cuda, "softmax_log_loss", [](View logits, View labels, View probs) {
    int64_t n, k;
    expect_rows(logits, labels, "logits", n, k);
    expect_shape(probs, {n, k}, "probs");
    Place at({&logits, &labels, &probs});
    float* p = probs.mut<float>("probs");
    double total = 0.0;
    with_real(at, logits, "logits", [&](auto t) {  // bf16 logits: GPU only
      using T = decltype(t);
      const T* x = logits.data<T>("logits");
      with_labels(at, labels, n, k, [&](const auto* l, BadValues* bad) {
        if (!bad) {
          if constexpr (std::is_same_v<T, float>) total = cpu::softmax_log_loss(x, l, p, n, k);
          return;
        }
#ifdef ALEXNET_EXT_WITH_CUDA
        cuda::Scratch scratch(sizeof(double) * (n + 1), at.device(), at.stream());  // rows, total
        double* rows = scratch.as<double>();
        cuda::softmax_log_loss(x, l, p, n, k, rows, rows + n, nullptr, bad, at.stream());
        if (n > 0) cuda::check(cudaMemcpyAsync(&total, rows + n, sizeof(double),
                                               cudaMemcpyDeviceToHost, at.stream()),
                               "softmax_log_loss: cudaMemcpyAsync");
#endif
      });
    });
#ifdef ALEXNET_EXT_WITH_CUDA
    if (at.gpu()) raise_deferred(at.device());  // it waited anyway
#endif
    return total;
  }, py::arg("logits"), py::arg("labels"), py::arg("probs"),
     "Fills probs and returns the summed (not averaged) loss (on the GPU: waits for it).");

  def_op(m, cuda, "softmax_log_loss_undo", [](View probs, View labels, View out, float scale) {
    int64_t n, k;
    expect_rows(probs, labels, "probs", n, k);
    expect_shape(out, {n, k}, "out");
    Place at({&probs, &labels, &out});
    const float* p = probs.data<float>("probs");
    with_real(at, out, "out", [&](auto t) {  // the gradient: float32, or bf16 on the GPU
      using G = decltype(t);
      G* o = out.mut<G>("out");
      with_index(labels, "labels", false, [&](const auto* l) {
        if (!at.gpu()) {
          check_labels(l, n, k);
          py::gil_scoped_release release;
          if constexpr (std::is_same_v<G, float>) cpu::softmax_log_loss_undo(p, l, o, n, k, scale);
          return;
        }
#ifdef ALEXNET_EXT_WITH_CUDA
        // A bad label's row of the gradient becomes NaN; the error is deferred.
        launch_deferred(at, "softmax_log_loss_undo", l, [=](const cuda::DeferredRecord& r) {
          return bad_label(static_cast<int64_t>(r.bad.first), r.value, k, r.bad.count);
        }, [&](auto* bad) { cuda::softmax_log_loss_undo(p, l, o, n, k, scale, bad, at.stream()); });
#endif
      });
    });
  }, py::arg("probs"), py::arg("labels"), py::arg("out"), py::arg("scale"));

  def_op(m, cuda, "label_ranks", [](View probs, View labels, View ranks) {
    int64_t n, k;
    expect_rows(probs, labels, "probs", n, k);
    expect_shape(ranks, {n}, "ranks");
    Place at({&probs, &labels, &ranks});
    const float* p = probs.data<float>("probs");
    int64_t* r = ranks.mut<int64_t>("ranks");
    with_labels(at, labels, n, k, [&](const auto* l, BadValues* bad) {
      if (!bad) return cpu::label_ranks(p, l, r, n, k);
#ifdef ALEXNET_EXT_WITH_CUDA
      cuda::label_ranks(p, l, n, k, r, nullptr, nullptr, 0, bad, at.stream());
#endif
    });
  }, py::arg("probs"), py::arg("labels"), py::arg("ranks"));

#ifdef ALEXNET_EXT_WITH_CUDA
  cuda->def("softmax_log_loss_nosync", [](View logits, View labels, View probs, View loss) {
    int64_t n, k;
    expect_rows(logits, labels, "logits", n, k);
    expect_shape(probs, {n, k}, "probs");
    expect_shape(loss, {1}, "loss");
    Place at({&logits, &labels, &probs, &loss});
    if (!at.gpu()) throw py::type_error("softmax_log_loss_nosync: expected DeviceArrays");
    float *p = probs.mut<float>("probs"), *lo = loss.mut<float>("loss");
    with_real(at, logits, "logits", [&](auto t) {
      using T = decltype(t);
      const T* x = logits.data<T>("logits");
      with_index(labels, "labels", false, [&](const auto* l) {
        py::gil_scoped_release release;
        if (n == 0) {
          cuda::check(cudaMemsetAsync(lo, 0, sizeof(float), at.stream()), "cudaMemsetAsync");
          return;
        }
        // The label check still runs (nothing is indexed with a bad label), but nobody reads its
        // record: a bad label shows up as a NaN loss instead of an exception.
        cuda::BadValueReport report(at.device(), at.stream());
        cuda::Scratch scratch(sizeof(double) * n, at.device(), at.stream());
        cuda::softmax_log_loss(x, l, p, n, k, scratch.as<double>(), nullptr, lo,
                               report.device_ptr(), at.stream());
      });
    });
  }, py::arg("logits"), py::arg("labels"), py::arg("probs"), py::arg("loss"),
     "Fills probs and writes the summed (not averaged) loss, rounded to float32, to loss[0] (a "
     "float32 DeviceArray of shape (1,)) without waiting for the GPU. A label outside [0, K) "
     "raises nothing here: its row's loss, hence loss[0], is NaN.");

  cuda->def("top_k_errors", [](View probs, View labels, std::vector<int64_t> thresholds) {
    int64_t n, k;
    expect_rows(probs, labels, "probs", n, k);
    Place at({&probs, &labels});
    if (!at.gpu()) throw py::type_error("top_k_errors: expected DeviceArrays");
    const float* p = probs.data<float>("probs");
    const auto nt = static_cast<int64_t>(thresholds.size());
    if (nt > (int64_t{1} << 20)) throw py::value_error("thresholds: too many");
    std::vector<unsigned long long> counts(nt, 0);
    if (nt > 0) {
      with_labels(at, labels, n, k, [&](const auto* l, BadValues* bad) {
        // [thresholds (nt int64) | counts (nt uint64)], both 8-byte words.
        cuda::Scratch scratch(16 * nt, at.device(), at.stream());
        auto* th = scratch.as<int64_t>();
        auto* cnt = reinterpret_cast<unsigned long long*>(th + nt);
        cuda::check(cudaMemcpyAsync(th, thresholds.data(), 8 * nt, cudaMemcpyHostToDevice,
                                    at.stream()), "top_k_errors: cudaMemcpyAsync");
        cuda::check(cudaMemsetAsync(cnt, 0, 8 * nt, at.stream()), "top_k_errors: cudaMemsetAsync");
        cuda::label_ranks(p, l, n, k, nullptr, th, cnt, static_cast<int>(nt), bad, at.stream());
        cuda::check(cudaMemcpyAsync(counts.data(), cnt, 8 * nt, cudaMemcpyDeviceToHost,
                                    at.stream()), "top_k_errors: cudaMemcpyAsync");
      });
    }
    py::list out;
    for (auto c : counts) out.append(py::int_(static_cast<uint64_t>(c)));
    return out;
  }, py::arg("probs"), py::arg("labels"), py::arg("thresholds"),
     "For each threshold t, how many rows have label rank >= t (counted on the GPU; waits for it).");
#endif
}

}  // namespace alexnet_ext::binding
