// Bindings for csrc/cpu/softmax_log_loss.cpp. Labels come as int32 or int64 arrays; every label
// is range-checked here before a kernel indexes with it.
#include <string>

#include <pybind11/stl.h>

#include "python/array.h"
#include "softmax_log_loss.h"
#ifdef ALEXNET_EXT_WITH_CUDA
#include <vector>

#include "python/cuda_array.h"
#endif

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

#ifdef ALEXNET_EXT_WITH_CUDA
// Calls fn(const L* labels) with a DeviceArray's labels as int32 or int64 after checking their
// shape; their range is checked by the kernels.
template <class Fn>
void with_device_labels(const DeviceArray& a, int64_t n, Fn fn) {
  expect_dshape(a, {n}, "labels");
  if (a.dtype.is(py::dtype::of<int32_t>()))
    fn(dptr<int32_t>(a, "labels"));
  else if (a.dtype.is(py::dtype::of<int64_t>()))
    fn(dptr<int64_t>(a, "labels"));
  else
    throw py::type_error("labels: expected an int32 or int64 DeviceArray, got " +
                         py::str(a.dtype).cast<std::string>());
}

void expect_d2(const DeviceArray& a, const char* name) {
  if (a.shape.size() != 2) throw py::value_error(std::string(name) + ": expected 2 dimensions (N, K)");
}

// After a kernel that checked the labels: raises what alexnet_ext.ops says for bad labels on
// the CPU (first bad one, and how many).
template <class L>
void raise_if_bad(const cuda::BadValues& bad, const L* labels, int64_t k, cudaStream_t stream) {
  if (!bad.count) return;
  const auto i = static_cast<int64_t>(bad.first);
  const auto v = static_cast<int64_t>(cuda::fetch_element(labels, i, stream));
  throw py::value_error("labels: labels[" + std::to_string(i) + "] = " + std::to_string(v) +
                        " is outside [0, " + std::to_string(k) + ") (" +
                        std::to_string(bad.count) + " bad label" + (bad.count > 1 ? "s" : "") +
                        " in all)");
}
#endif

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

#ifdef ALEXNET_EXT_WITH_CUDA
// The same functions on _core.cuda, for DeviceArrays (cuda/softmax_log_loss.cu). Labels are
// range-checked on the GPU; reading that verdict back synchronises the stream once per call.
// softmax_log_loss returns the loss as a Python float, so it synchronises anyway;
// softmax_log_loss_nosync leaves it on the GPU instead and never waits (see its docstring).
void bind_softmax_log_loss_cuda(py::module_& m) {
  m.def("softmax_log_loss", [](const DeviceArray& logits, const DeviceArray& labels,
                               const DeviceArray& probs) {
    expect_d2(logits, "logits");
    const int64_t n = logits.shape[0], k = logits.shape[1];
    expect_dshape(probs, {n, k}, "probs");
    const float* x = dptr<float>(logits, "logits");
    float* p = dptr_mut<float>(probs, "probs");
    const int dev = common_device({&logits, &labels, &probs});
    DeviceScope scope(dev);
    const cudaStream_t stream = cuda::current_stream();
    double total = 0.0;
    with_device_labels(labels, n, [&](const auto* l) {
      cuda::BadValues bad{};
      {
        py::gil_scoped_release release;
        cuda::BadValueReport report(dev, stream);
        cuda::Scratch scratch(sizeof(double) * (n + 1), dev, stream);  // row losses, then the total
        double* rows = scratch.as<double>();
        cuda::softmax_log_loss(x, l, p, n, k, rows, rows + n, nullptr, report.device_ptr(), stream);
        if (n > 0)
          cuda::check(cudaMemcpyAsync(&total, rows + n, sizeof(double), cudaMemcpyDeviceToHost,
                                      stream), "softmax_log_loss: cudaMemcpyAsync");
        bad = report.read();  // waits for the stream, so total has arrived too
      }
      raise_if_bad(bad, l, k, stream);
    });
    return total;
  }, py::arg("logits"), py::arg("labels"), py::arg("probs"),
     "Fills probs and returns the summed (not averaged) loss. Waits for the GPU.");

  m.def("softmax_log_loss_nosync", [](const DeviceArray& logits, const DeviceArray& labels,
                                      const DeviceArray& probs, const DeviceArray& loss) {
    expect_d2(logits, "logits");
    const int64_t n = logits.shape[0], k = logits.shape[1];
    expect_dshape(probs, {n, k}, "probs");
    expect_dshape(loss, {1}, "loss");
    const float* x = dptr<float>(logits, "logits");
    float* p = dptr_mut<float>(probs, "probs");
    float* lo = dptr_mut<float>(loss, "loss");
    const int dev = common_device({&logits, &labels, &probs, &loss});
    DeviceScope scope(dev);
    const cudaStream_t stream = cuda::current_stream();
    with_device_labels(labels, n, [&](const auto* l) {
      py::gil_scoped_release release;
      if (n == 0) {
        cuda::check(cudaMemsetAsync(lo, 0, sizeof(float), stream), "cudaMemsetAsync");
        return;
      }
      // The label check still runs (nothing is indexed with a bad label), but nobody reads its
      // record: a bad label shows up as a NaN loss instead of an exception.
      cuda::BadValueReport report(dev, stream);
      cuda::Scratch scratch(sizeof(double) * n, dev, stream);
      cuda::softmax_log_loss(x, l, p, n, k, scratch.as<double>(), nullptr, lo,
                             report.device_ptr(), stream);
    });
  }, py::arg("logits"), py::arg("labels"), py::arg("probs"), py::arg("loss"),
     "Fills probs and writes the summed (not averaged) loss, rounded to float32, to loss[0] (a "
     "float32 DeviceArray of shape (1,)) without waiting for the GPU. A label outside [0, K) "
     "raises nothing here: its row's loss, hence loss[0], is NaN.");

  m.def("softmax_log_loss_undo", [](const DeviceArray& probs, const DeviceArray& labels,
                                    const DeviceArray& out, float scale) {
    expect_d2(probs, "probs");
    const int64_t n = probs.shape[0], k = probs.shape[1];
    expect_dshape(out, {n, k}, "out");
    const float* p = dptr<float>(probs, "probs");
    float* o = dptr_mut<float>(out, "out");
    const int dev = common_device({&probs, &labels, &out});
    DeviceScope scope(dev);
    const cudaStream_t stream = cuda::current_stream();
    with_device_labels(labels, n, [&](const auto* l) {
      cuda::BadValues bad{};
      {
        py::gil_scoped_release release;
        cuda::BadValueReport report(dev, stream);
        cuda::softmax_log_loss_undo(p, l, o, n, k, scale, report.device_ptr(), stream);
        bad = report.read();
      }
      raise_if_bad(bad, l, k, stream);
    });
  }, py::arg("probs"), py::arg("labels"), py::arg("out"), py::arg("scale"));

  m.def("label_ranks", [](const DeviceArray& probs, const DeviceArray& labels,
                          const DeviceArray& ranks) {
    expect_d2(probs, "probs");
    const int64_t n = probs.shape[0], k = probs.shape[1];
    expect_dshape(ranks, {n}, "ranks");
    const float* p = dptr<float>(probs, "probs");
    int64_t* r = dptr_mut<int64_t>(ranks, "ranks");
    const int dev = common_device({&probs, &labels, &ranks});
    DeviceScope scope(dev);
    const cudaStream_t stream = cuda::current_stream();
    with_device_labels(labels, n, [&](const auto* l) {
      cuda::BadValues bad{};
      {
        py::gil_scoped_release release;
        cuda::BadValueReport report(dev, stream);
        cuda::label_ranks(p, l, n, k, r, nullptr, nullptr, 0, report.device_ptr(), stream);
        bad = report.read();
      }
      raise_if_bad(bad, l, k, stream);
    });
  }, py::arg("probs"), py::arg("labels"), py::arg("ranks"));

  m.def("top_k_errors", [](const DeviceArray& probs, const DeviceArray& labels,
                           std::vector<int64_t> thresholds) {
    expect_d2(probs, "probs");
    const int64_t n = probs.shape[0], k = probs.shape[1];
    const float* p = dptr<float>(probs, "probs");
    const int dev = common_device({&probs, &labels});
    DeviceScope scope(dev);
    const cudaStream_t stream = cuda::current_stream();
    const auto nt = static_cast<int64_t>(thresholds.size());
    if (nt > (int64_t{1} << 20)) throw py::value_error("thresholds: too many");
    std::vector<unsigned long long> counts(nt, 0);
    with_device_labels(labels, n, [&](const auto* l) {
      cuda::BadValues bad{};
      if (nt > 0) {
        py::gil_scoped_release release;
        cuda::BadValueReport report(dev, stream);
        // [thresholds (nt int64) | counts (nt uint64)], both 8-byte words.
        cuda::Scratch scratch(16 * nt, dev, stream);
        auto* th = scratch.as<int64_t>();
        auto* cnt = reinterpret_cast<unsigned long long*>(th + nt);
        cuda::check(cudaMemcpyAsync(th, thresholds.data(), 8 * nt, cudaMemcpyHostToDevice, stream),
                    "top_k_errors: cudaMemcpyAsync");
        cuda::check(cudaMemsetAsync(cnt, 0, 8 * nt, stream), "top_k_errors: cudaMemsetAsync");
        cuda::label_ranks(p, l, n, k, nullptr, th, cnt, static_cast<int>(nt), report.device_ptr(),
                          stream);
        cuda::check(cudaMemcpyAsync(counts.data(), cnt, 8 * nt, cudaMemcpyDeviceToHost, stream),
                    "top_k_errors: cudaMemcpyAsync");
        bad = report.read();  // waits for the stream: counts have arrived
      }
      raise_if_bad(bad, l, k, stream);
    });
    py::list out;
    for (auto c : counts) out.append(py::int_(static_cast<uint64_t>(c)));
    return out;
  }, py::arg("probs"), py::arg("labels"), py::arg("thresholds"),
     "For each threshold t, how many rows have label rank >= t (counted on the GPU; waits for it).");
}
#endif  // ALEXNET_EXT_WITH_CUDA

}  // namespace alexnet_ext::binding
