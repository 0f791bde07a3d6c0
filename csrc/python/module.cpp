// The compiled module alexnet_ext._core. Kernels live in _core.cpu (and, in a CUDA build,
// _core.cuda); alexnet_ext.ops wraps them with argument checks and docs. One bind_<op>() per file
// in this folder, named after the op's kernel source.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cblas.h>

#include "cpu/parallel.h"
#include "device.h"

namespace py = pybind11;

namespace alexnet_ext::binding {
void bind_conv(py::module_& cpu);
void bind_response_norm(py::module_& cpu);
void bind_max_pool(py::module_& cpu);
void bind_avg_pool(py::module_& cpu);
void bind_relu(py::module_& cpu);
void bind_add(py::module_& cpu);
void bind_dropout(py::module_& cpu);
void bind_fc(py::module_& cpu);
void bind_softmax_log_loss(py::module_& cpu);
void bind_sgd_update(py::module_& cpu);
#ifdef ALEXNET_EXT_WITH_CUDA
void bind_cuda_array(py::module_& cuda);
void bind_conv_cuda(py::module_& cuda);
void bind_response_norm_cuda(py::module_& cuda);
void bind_max_pool_cuda(py::module_& cuda);
void bind_avg_pool_cuda(py::module_& cuda);
void bind_relu_cuda(py::module_& cuda);
void bind_add_cuda(py::module_& cuda);
void bind_dropout_cuda(py::module_& cuda);
void bind_fc_cuda(py::module_& cuda);
void bind_softmax_log_loss_cuda(py::module_& cuda);
void bind_sgd_update_cuda(py::module_& cuda);
#endif
}  // namespace alexnet_ext::binding

namespace {

py::dict cuda_status_dict() {
  py::dict d;
#ifdef ALEXNET_EXT_WITH_CUDA
  const alexnet_ext::CudaStatus s = alexnet_ext::cuda_status();
  d["built_with_cuda"] = true;
#ifdef ALEXNET_EXT_CUDA_EMULATION
  d["emulated"] = true;  // tools/cuda_emu: the "GPU" is the CPU, for testing only
#else
  d["emulated"] = false;
#endif
  d["available"] = s.available;
  d["reason"] = s.reason;
  d["runtime_version"] = s.runtime_version;
  d["driver_version"] = s.driver_version;
  py::list devices;
  for (const auto& dev : s.devices) {
    py::dict x;
    x["index"] = dev.index;
    x["name"] = dev.name;
    x["compute_capability"] = py::make_tuple(dev.major, dev.minor);
    x["multiprocessors"] = dev.multiprocessors;
    x["total_memory"] = dev.total_memory;
    devices.append(x);
  }
  d["devices"] = devices;
#else
  d["built_with_cuda"] = false;
  d["emulated"] = false;
  d["available"] = false;
  d["reason"] = "alexnet_ext was built without CUDA (no CUDA compiler was found at build time, "
                "or ALEXNET_EXT_CUDA=OFF)";
  d["runtime_version"] = 0;
  d["driver_version"] = 0;
  d["devices"] = py::list();
#endif
  return d;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "alexnet_ext compiled kernels; use alexnet_ext.ops";
  // The CPU kernels parallelise with OpenMP and call sgemm inside their loops (see cpu/blas.h).
  scipy_openblas_set_num_threads(1);

  py::module_ cpu = m.def_submodule("cpu", "CPU kernels on NumPy arrays (unchecked: use alexnet_ext.ops)");
  alexnet_ext::binding::bind_conv(cpu);
  alexnet_ext::binding::bind_response_norm(cpu);
  alexnet_ext::binding::bind_max_pool(cpu);
  alexnet_ext::binding::bind_avg_pool(cpu);
  alexnet_ext::binding::bind_relu(cpu);
  alexnet_ext::binding::bind_add(cpu);
  alexnet_ext::binding::bind_dropout(cpu);
  alexnet_ext::binding::bind_fc(cpu);
  alexnet_ext::binding::bind_softmax_log_loss(cpu);
  alexnet_ext::binding::bind_sgd_update(cpu);
#ifdef ALEXNET_EXT_WITH_CUDA
  py::module_ cuda = m.def_submodule("cuda", "CUDA kernels and device arrays (use alexnet_ext.ops / alexnet_ext.cuda)");
  alexnet_ext::binding::bind_cuda_array(cuda);
  alexnet_ext::binding::bind_conv_cuda(cuda);
  alexnet_ext::binding::bind_response_norm_cuda(cuda);
  alexnet_ext::binding::bind_max_pool_cuda(cuda);
  alexnet_ext::binding::bind_avg_pool_cuda(cuda);
  alexnet_ext::binding::bind_relu_cuda(cuda);
  alexnet_ext::binding::bind_add_cuda(cuda);
  alexnet_ext::binding::bind_dropout_cuda(cuda);
  alexnet_ext::binding::bind_fc_cuda(cuda);
  alexnet_ext::binding::bind_softmax_log_loss_cuda(cuda);
  alexnet_ext::binding::bind_sgd_update_cuda(cuda);
#endif

  m.def("cuda_status", &cuda_status_dict, "What the CUDA runtime reports (a dict).");
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("set_num_threads: n must be >= 1, got " + std::to_string(n));
    alexnet_ext::cpu::set_num_threads(n);
  }, py::arg("n"));
  m.def("get_num_threads", &alexnet_ext::cpu::num_threads);
  m.def("blas_config", []() { return std::string(scipy_openblas_get_config()); });
}
