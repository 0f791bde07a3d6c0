// The compiled module alexnet_ext._core. Kernels live in _core.cpu (and, in a CUDA build,
// _core.cuda); alexnet_ext.ops wraps them with argument checks and docs. One bind_<op>() per file
// in this folder, named after the op's kernel source.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cblas.h>

#include "conv.h"
#include "cpu/parallel.h"
#include "device.h"
#include "pool.h"

namespace py = pybind11;

namespace alexnet_ext::binding {
// Every op's bind_<op>(cpu, cuda), declared and called from this one list.
#define ALEXNET_EXT_OPS(X)                                                                      \
  X(conv) X(response_norm) X(max_pool) X(response_norm_max_pool) X(avg_pool) X(relu) X(add)     \
  X(dropout) X(fc) X(softmax_log_loss) X(sgd_update) X(normalize_batch) X(cast)
#define ALEXNET_EXT_DECLARE(op) void bind_##op(py::module_& cpu, py::module_* cuda);
ALEXNET_EXT_OPS(ALEXNET_EXT_DECLARE)
#ifdef ALEXNET_EXT_WITH_CUDA
void bind_cuda_array(py::module_& cuda);
void bind_graph(py::module_& cuda);
#endif

// A geometry struct as a Python class with named int64 fields, built by keyword only
// (ConvGeometry(n=..., c=..., ...)): what crossed the boundary as an anonymous tuple before.
template <class G>
void bind_geometry(py::module_& m, const char* name, const char* doc,
                   std::vector<std::pair<const char*, int64_t G::*>> fields) {
  py::class_<G> cls(m, name, doc);
  cls.def(py::init([fields, name](py::kwargs kw) {
    std::string all;
    for (auto [field, member] : fields) all += (all.empty() ? "" : ", ") + std::string(field);
    if (kw.size() != fields.size())
      throw py::value_error(std::string(name) + ": expected the " + std::to_string(fields.size()) +
                            " fields " + all + " by keyword");
    G g{};
    for (auto [field, member] : fields) {
      if (!kw.contains(field)) throw py::value_error(std::string(name) + ": missing field " + field);
      py::object v = kw[field];
      if (!py::isinstance<py::int_>(v)) throw py::type_error(std::string(name) + "." + field + ": expected an int");
      int overflow = 0;
      g.*member = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
      if (overflow) throw py::value_error(std::string(name) + "." + field + ": out of int64 range");
    }
    return g;
  }));
  for (auto [field, member] : fields) cls.def_readwrite(field, member);
  cls.def("__repr__", [fields, name](const G& g) {
    std::string s = std::string(name) + "(";
    for (size_t i = 0; i < fields.size(); ++i)
      s += (i ? ", " : "") + std::string(fields[i].first) + "=" + std::to_string(g.*fields[i].second);
    return s + ")";
  });
}
}  // namespace alexnet_ext::binding

namespace {

py::dict cuda_status_dict() {
#ifdef ALEXNET_EXT_WITH_CUDA
  const alexnet_ext::CudaStatus s = alexnet_ext::cuda_status();
  py::list devices;
  for (const auto& dev : s.devices)
    devices.append(py::dict(py::arg("index") = dev.index, py::arg("name") = dev.name,
                            py::arg("compute_capability") = py::make_tuple(dev.major, dev.minor),
                            py::arg("multiprocessors") = dev.multiprocessors,
                            py::arg("total_memory") = dev.total_memory));
#ifdef ALEXNET_EXT_CUDA_EMULATION
  const bool emulated = true;  // tools/cuda_emu: the "GPU" is the CPU, for testing only
#else
  const bool emulated = false;
#endif
  return py::dict(py::arg("built_with_cuda") = true, py::arg("emulated") = emulated,
                  py::arg("available") = s.available, py::arg("reason") = s.reason,
                  py::arg("runtime_version") = s.runtime_version,
                  py::arg("driver_version") = s.driver_version, py::arg("devices") = devices);
#else
  return py::dict(py::arg("built_with_cuda") = false, py::arg("emulated") = false,
                  py::arg("available") = false,
                  py::arg("reason") = "alexnet_ext was built without CUDA (no CUDA compiler was "
                                      "found at build time, or ALEXNET_EXT_CUDA=OFF)",
                  py::arg("runtime_version") = 0, py::arg("driver_version") = 0,
                  py::arg("devices") = py::list());
#endif
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "alexnet_ext compiled kernels; use alexnet_ext.ops";
  // The CPU kernels parallelise with OpenMP and call sgemm inside their loops (see cpu/blas.h).
  scipy_openblas_set_num_threads(1);

  namespace b = alexnet_ext::binding;
  using alexnet_ext::ConvGeometry;
  using alexnet_ext::PoolGeometry;
  b::bind_geometry<ConvGeometry>(m, "ConvGeometry", "Convolution geometry (csrc/conv.h).",
      {{"n", &ConvGeometry::n}, {"c", &ConvGeometry::c}, {"h", &ConvGeometry::h},
       {"w", &ConvGeometry::w}, {"f", &ConvGeometry::f}, {"kh", &ConvGeometry::kh},
       {"kw", &ConvGeometry::kw}, {"sh", &ConvGeometry::sh}, {"sw", &ConvGeometry::sw},
       {"ph", &ConvGeometry::ph}, {"pw", &ConvGeometry::pw}, {"groups", &ConvGeometry::groups},
       {"ho", &ConvGeometry::ho}, {"wo", &ConvGeometry::wo}});
  b::bind_geometry<PoolGeometry>(m, "PoolGeometry", "Pooling geometry (csrc/pool.h).",
      {{"n", &PoolGeometry::n}, {"c", &PoolGeometry::c}, {"h", &PoolGeometry::h},
       {"w", &PoolGeometry::w}, {"kh", &PoolGeometry::kh}, {"kw", &PoolGeometry::kw},
       {"sh", &PoolGeometry::sh}, {"sw", &PoolGeometry::sw}, {"ph", &PoolGeometry::ph},
       {"pw", &PoolGeometry::pw}, {"ho", &PoolGeometry::ho}, {"wo", &PoolGeometry::wo}});

  // One function per op, registered in _core.cpu and (same object) in _core.cuda: the arrays
  // passed say where it runs.
  py::module_ cpu = m.def_submodule("cpu", "The ops' kernels (unchecked: use alexnet_ext.ops)");
  py::module_* cuda_ptr = nullptr;
#ifdef ALEXNET_EXT_WITH_CUDA
  py::module_ cuda = m.def_submodule("cuda", "CUDA kernels and device arrays (use alexnet_ext.ops / alexnet_ext.cuda)");
  b::bind_cuda_array(cuda);
  b::bind_graph(cuda);
  cuda_ptr = &cuda;
#endif
#define ALEXNET_EXT_BIND(op) b::bind_##op(cpu, cuda_ptr);
  ALEXNET_EXT_OPS(ALEXNET_EXT_BIND)

  m.def("cuda_status", &cuda_status_dict, "What the CUDA runtime reports (a dict).");
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("set_num_threads: n must be >= 1, got " + std::to_string(n));
    alexnet_ext::cpu::set_num_threads(n);
  }, py::arg("n"));
  m.def("get_num_threads", &alexnet_ext::cpu::num_threads);
  m.def("blas_config", []() { return std::string(scipy_openblas_get_config()); });
}
