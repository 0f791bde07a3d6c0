// Bindings for csrc/cpu/sgd_update.cpp.
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "python/array.h"
#include "python/same_shape.h"
#include "sgd_update.h"
#ifdef ALEXNET_EXT_WITH_CUDA
#include "python/cuda_array.h"
#endif

namespace alexnet_ext::binding {

namespace {

// The i-th item of a list argument, named "name[i]" in errors.
std::string item(const char* name, size_t i) { return std::string(name) + "[" + std::to_string(i) + "]"; }

// Per-tensor hyper-parameters: one list per parameter, each as long as ws.
void expect_lengths(size_t count, const std::vector<float>& lrs, const std::vector<float>& moms,
                    const std::vector<float>& decays, size_t grads, size_t vels) {
  if (grads != count || vels != count || lrs.size() != count || moms.size() != count ||
      decays.size() != count)
    throw py::value_error("sgd_update_many: ws, grads, velocities, lrs, momenta and decay_lrs "
                          "must have the same length");
}

// An element of a list that must be a C-contiguous float32 ndarray (never converted: a converted
// copy would take the update instead of the caller's array).
FArray list_farray(const py::list& l, size_t i, const char* name) {
  py::object o = l[i];
  if (!FArray::check_(o))
    throw py::type_error(item(name, i) + ": expected a C-contiguous float32 numpy array");
  return py::reinterpret_borrow<FArray>(o);
}

}  // namespace

void bind_sgd_update(py::module_& m) {
  m.def("sgd_update_many", [](py::list ws, py::list grads, py::list vels, std::vector<float> lrs,
                              std::vector<float> moms, std::vector<float> decays) {
    const size_t count = ws.size();
    expect_lengths(count, lrs, moms, decays, grads.size(), vels.size());
    std::vector<FArray> keep;  // holds the arrays while the GIL is released
    struct T { float* w; const float* g; float* v; int64_t n; };
    std::vector<T> ts;
    for (size_t i = 0; i < count; ++i) {
      FArray w = list_farray(ws, i, "ws"), g = list_farray(grads, i, "grads");
      FArray v = list_farray(vels, i, "velocities");
      const std::string wn = item("ws", i);
      expect_same_shape(g, w, item("grads", i).c_str(), wn.c_str());
      expect_same_shape(v, w, item("velocities", i).c_str(), wn.c_str());
      ts.push_back({writable(w, wn.c_str()), g.data(), writable(v, item("velocities", i).c_str()),
                    static_cast<int64_t>(w.size())});
      keep.push_back(w);
      keep.push_back(g);
      keep.push_back(v);
    }
    py::gil_scoped_release release;
    for (size_t i = 0; i < count; ++i)
      cpu::sgd_update(ts[i].w, ts[i].g, ts[i].v, ts[i].n, lrs[i], moms[i], decays[i]);
  }, py::arg("ws"), py::arg("grads"), py::arg("velocities"), py::arg("lrs"), py::arg("momenta"),
     py::arg("decay_lrs"),
     "sgd_update on each (ws[i], grads[i], velocities[i]) with lrs[i], momenta[i], decay_lrs[i].");

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

#ifdef ALEXNET_EXT_WITH_CUDA
// The same functions on _core.cuda, for DeviceArrays (cuda/sgd_update.cu). sgd_update_many is
// one launch for up to 32 tensors.
void bind_sgd_update_cuda(py::module_& m) {
  m.def("sgd_update", [](const DeviceArray& w, const DeviceArray& grad, const DeviceArray& velocity,
                         float lr, float momentum, float decay_lr) {
    expect_same_dshape(grad, w, "grad", "w");
    expect_same_dshape(velocity, w, "velocity", "w");
    float* wp = dptr_mut<float>(w, "w");
    const float* gp = dptr<float>(grad, "grad");
    float* vp = dptr_mut<float>(velocity, "velocity");
    DeviceScope scope(common_device({&w, &grad, &velocity}));
    const cudaStream_t stream = cuda::current_stream();
    py::gil_scoped_release release;
    cuda::sgd_update(wp, gp, vp, w.size(), lr, momentum, decay_lr, stream);
  }, py::arg("w"), py::arg("grad"), py::arg("velocity"), py::arg("lr"), py::arg("momentum"),
     py::arg("decay_lr"), "decay_lr is weight_decay * lr, computed by the caller in double.");

  m.def("sgd_update_many", [](py::list ws, py::list grads, py::list vels, std::vector<float> lrs,
                              std::vector<float> moms, std::vector<float> decays) {
    const size_t count = ws.size();
    expect_lengths(count, lrs, moms, decays, grads.size(), vels.size());
    std::vector<DeviceArray> arrays;  // w, grad, velocity of each tensor
    arrays.reserve(3 * count);
    auto get = [](const py::list& l, size_t i, const char* name) {
      py::object o = l[i];
      if (!py::isinstance<DeviceArray>(o))
        throw py::type_error(item(name, i) + ": expected a float32 DeviceArray");
      return o.cast<DeviceArray>();
    };
    std::vector<cuda::SgdTensor> ts;
    int dev = -1;
    for (size_t i = 0; i < count; ++i) {
      arrays.push_back(get(ws, i, "ws"));
      arrays.push_back(get(grads, i, "grads"));
      arrays.push_back(get(vels, i, "velocities"));
      const DeviceArray &w = arrays[3 * i], &g = arrays[3 * i + 1], &v = arrays[3 * i + 2];
      const std::string wn = item("ws", i), gn = item("grads", i), vn = item("velocities", i);
      expect_same_dshape(g, w, gn.c_str(), wn.c_str());
      expect_same_dshape(v, w, vn.c_str(), wn.c_str());
      const int d = common_device({&w, &g, &v});
      if (dev >= 0 && d != dev)
        throw py::type_error("sgd_update_many: all tensors must live on one device (" +
                             std::to_string(dev) + " and " + std::to_string(d) + ")");
      dev = d;
      ts.push_back({dptr_mut<float>(w, wn.c_str()), dptr<float>(g, gn.c_str()),
                    dptr_mut<float>(v, vn.c_str()), w.size(), lrs[i], moms[i], decays[i]});
    }
    if (ts.empty()) return;
    DeviceScope scope(dev);
    const cudaStream_t stream = cuda::current_stream();
    py::gil_scoped_release release;
    cuda::sgd_update_many(ts.data(), static_cast<int64_t>(ts.size()), stream);
  }, py::arg("ws"), py::arg("grads"), py::arg("velocities"), py::arg("lrs"), py::arg("momenta"),
     py::arg("decay_lrs"),
     "sgd_update on each (ws[i], grads[i], velocities[i]) with lrs[i], momenta[i], decay_lrs[i], "
     "in one launch per 32 tensors. No tensor may overlap another's w or velocity.");
}
#endif  // ALEXNET_EXT_WITH_CUDA

}  // namespace alexnet_ext::binding
