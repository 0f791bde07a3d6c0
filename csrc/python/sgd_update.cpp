// Binding of the paper's SGD step (sgd_update.h) for NumPy arrays and DeviceArrays; on the GPU
// sgd_update_many is one launch for up to 32 tensors.
#include <string>
#include <vector>

#include "python/view.h"
#include "sgd_update.h"

namespace alexnet_ext::binding {

namespace {
std::string item(const char* name, size_t i) { return std::string(name) + "[" + std::to_string(i) + "]"; }

// The optional bf16 copy of w (its shape, bfloat16, writable), or nullptr.
uint16_t* bf16_copy(const std::optional<View>& copy, const View& w, const std::string& name) {
  if (!copy) return nullptr;
  expect_same_shape(*copy, w, name.c_str(), "w");
  return copy->mut<uint16_t>(name.c_str());
}
}  // namespace

void bind_sgd_update(py::module_& m, py::module_* cuda) {
  def_op(m, cuda, "sgd_update", [](View w, View grad, View velocity, float lr, float momentum,
                                   float decay_lr, std::optional<View> copy) {
    expect_shape_of(w, "w", {{&grad, "grad"}, {&velocity, "velocity"}});
    Place at({&w, &grad, &velocity, copy ? &*copy : nullptr});
    float *wp = w.mut<float>("w"), *vp = velocity.mut<float>("velocity");
    const float* gp = grad.data<float>("grad");
    uint16_t* cp = bf16_copy(copy, w, "copy_bf16");
    ALEXNET_EXT_KERNELS(sgd_update)(at, wp, gp, vp, w.size(), lr, momentum, decay_lr, cp);
  }, py::arg("w"), py::arg("grad"), py::arg("velocity"), py::arg("lr"), py::arg("momentum"),
     py::arg("decay_lr"), py::arg("copy_bf16") = py::none(),
     "decay_lr is weight_decay * lr, computed by the caller in double.");

  def_op(m, cuda, "sgd_update_many", [](std::vector<View> ws, std::vector<View> grads,
                                        std::vector<View> vels, std::vector<float> lrs,
                                        std::vector<float> moms, std::vector<float> decays,
                                        std::vector<std::optional<View>> copies) {
    const size_t count = ws.size();
    if (copies.empty()) copies.resize(count);
    if (grads.size() != count || vels.size() != count || lrs.size() != count ||
        moms.size() != count || decays.size() != count || copies.size() != count)
      throw py::value_error("sgd_update_many: ws, grads, velocities, lrs, momenta, decay_lrs "
                            "and copies_bf16 (when given) must have the same length");
    struct T { float* w; const float* g; float* v; int64_t n; uint16_t* c; };
    std::vector<T> ts;
    std::vector<const View*> all;
    for (size_t i = 0; i < count; ++i) {
      const std::string wn = item("ws", i), gn = item("grads", i), vn = item("velocities", i);
      expect_shape_of(ws[i], wn.c_str(), {{&grads[i], gn.c_str()}, {&vels[i], vn.c_str()}});
      ts.push_back({ws[i].mut<float>(wn.c_str()), grads[i].data<float>(gn.c_str()),
                    vels[i].mut<float>(vn.c_str()), ws[i].size(),
                    bf16_copy(copies[i], ws[i], item("copies_bf16", i))});
      Place({&ws[i], &grads[i], &vels[i], all.empty() ? nullptr : all.front(),
             copies[i] ? &*copies[i] : nullptr});  // one device
      all.push_back(&ws[i]);
    }
    if (count == 0) return;
    Place at({all.front()});
    if (!at.gpu()) {
      py::gil_scoped_release release;
      for (size_t i = 0; i < count; ++i)
        cpu::sgd_update(ts[i].w, ts[i].g, ts[i].v, ts[i].n, lrs[i], moms[i], decays[i], ts[i].c);
      return;
    }
#ifdef ALEXNET_EXT_WITH_CUDA
    std::vector<cuda::SgdTensor> cts;
    for (size_t i = 0; i < count; ++i)
      cts.push_back({ts[i].w, ts[i].g, ts[i].v, ts[i].n, lrs[i], moms[i], decays[i], ts[i].c});
    py::gil_scoped_release release;
    cuda::sgd_update_many(cts.data(), static_cast<int64_t>(count), at.stream());
#endif
  }, py::arg("ws"), py::arg("grads"), py::arg("velocities"), py::arg("lrs"), py::arg("momenta"),
     py::arg("decay_lrs"), py::arg("copies_bf16") = py::list(),
     "sgd_update on each (ws[i], grads[i], velocities[i]) with lrs[i], momenta[i], decay_lrs[i]. "
     "No tensor may overlap another's w or velocity.");
}

}  // namespace alexnet_ext::binding
