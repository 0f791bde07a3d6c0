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
void bind_conv(py::module_& cpu, py::module_* cuda);
void bind_response_norm(py::module_& cpu, py::module_* cuda);
void bind_max_pool(py::module_& cpu, py::module_* cuda);
void bind_response_norm_max_pool(py::module_& cpu, py::module_* cuda);
void bind_avg_pool(py::module_& cpu, py::module_* cuda);
void bind_relu(py::module_& cpu, py::module_* cuda);
void bind_add(py::module_& cpu, py::module_* cuda);
void bind_dropout(py::module_& cpu, py::module_* cuda);
void bind_fc(py::module_& cpu, py::module_* cuda);
void bind_softmax_log_loss(py::module_& cpu, py::module_* cuda);
void bind_sgd_update(py::module_& cpu, py::module_* cuda);
void bind_normalize_batch(py::module_& cpu, py::module_* cuda);
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
  for (auto bind : {b::bind_conv, b::bind_response_norm, b::bind_max_pool,
                    b::bind_response_norm_max_pool, b::bind_avg_pool,
                    b::bind_relu, b::bind_add, b::bind_dropout, b::bind_fc,
                    b::bind_softmax_log_loss, b::bind_sgd_update,
                    b::bind_normalize_batch})
    bind(cpu, cuda_ptr);

  m.def("cuda_status", &cuda_status_dict, "What the CUDA runtime reports (a dict).");
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("set_num_threads: n must be >= 1, got " + std::to_string(n));
    alexnet_ext::cpu::set_num_threads(n);
  }, py::arg("n"));
  m.def("get_num_threads", &alexnet_ext::cpu::num_threads);
  m.def("blas_config", []() { return std::string(scipy_openblas_get_config()); });
}
