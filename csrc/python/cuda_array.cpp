// _core.cuda: the DeviceArray type, allocation, host<->device copies, zero-copy import/export
// (DLPack, CUDA Array Interface v3), streams and memory statistics. Compiled in CUDA builds only.
#ifdef ALEXNET_EXT_WITH_CUDA
#include <algorithm>
#include <cstring>

#include <pybind11/stl.h>

#include "cuda/device_copy.h"
#include "cuda/memory.h"
#include "python/cuda_array.h"
#include "python/dlpack.h"
#include "python/view.h"

namespace alexnet_ext::binding {
namespace {

using cuda::check;

int current_device() {
  int d = 0;
  check(cudaGetDevice(&d), "cudaGetDevice");
  return d;
}

void check_dtype_supported(const py::dtype& dt, const char* name) {
  if (dtype_from(dt) == Dtype::other)
    throw py::type_error(std::string(name) + ": DeviceArray holds float32, bfloat16, int32, int64 or "
                         "uint8, got " + py::str(dt).cast<std::string>());
}

// The CUDA Array Interface spells bf16 "<V2", as any 2-byte void: neither side can tell them apart.
constexpr const char* kNoBf16Cai = "bfloat16 has no __cuda_array_interface__ typestr ('<V2' is any "
                                   "2-byte void type): share bfloat16 arrays through DLPack";

std::string typestr(const py::dtype& dt) {
  if (dtype_from(dt) == Dtype::bf16) throw py::type_error(kNoBf16Cai);
  return std::string(dt.itemsize() == 1 ? "|" : "<") + dt.kind() + std::to_string(dt.itemsize());
}

// Makes work queued on `consumer` wait for everything queued so far on `producer`.
void order_streams(cudaStream_t producer, cudaStream_t consumer) {
  if (producer == consumer) return;
  cudaEvent_t ev;
  check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate");
  check(cudaEventRecord(ev, producer), "cudaEventRecord");
  check(cudaStreamWaitEvent(consumer, ev, 0), "cudaStreamWaitEvent");
  cudaEventDestroy(ev);  // released once the wait has been satisfied
}

std::vector<int64_t> shape_from(const py::object& shape) {
  std::vector<int64_t> out;
  if (py::isinstance<py::int_>(shape)) {
    out.push_back(shape.cast<int64_t>());
  } else {
    for (auto v : shape) out.push_back(v.cast<int64_t>());
  }
  for (int64_t d : out)
    if (d < 0) throw py::value_error("shape: dimensions must be >= 0");
  return out;
}

py::tuple shape_tuple(const std::vector<int64_t>& s) { return py::tuple(py::cast(s)); }

py::dtype dtype_from_dl(const AxDLDataType& t) {
  if (t.lanes != 1) throw py::type_error("DLPack tensor: vector types are not supported");
  if (t.code == kAxDLFloat && t.bits == 32) return py::dtype::of<float>();
  if (t.code == kAxDLBfloat && t.bits == 16) return bf16_dtype();
  if (t.code == kAxDLInt && t.bits == 32) return py::dtype::of<int32_t>();
  if (t.code == kAxDLInt && t.bits == 64) return py::dtype::of<int64_t>();
  if (t.code == kAxDLUInt && t.bits == 8) return py::dtype::of<uint8_t>();
  throw py::type_error("DLPack tensor: dtype (code " + std::to_string(t.code) + ", " +
                       std::to_string(t.bits) + " bits) is not float32, bfloat16, int32, int64 or uint8");
}

AxDLDataType dl_from_dtype(const py::dtype& dt) {
  const char k = dt.kind();
  const uint8_t bits = static_cast<uint8_t>(dt.itemsize() * 8);
  if (dtype_from(dt) == Dtype::bf16) return {kAxDLBfloat, 16, 1};
  return {static_cast<uint8_t>(k == 'f' ? kAxDLFloat : k == 'u' ? kAxDLUInt : kAxDLInt), bits, 1};
}

// ---------------------------------------------------------------- DLPack export
struct ExportContext {
  std::shared_ptr<void> holder;  // keeps the memory alive while the consumer holds the tensor
  std::vector<int64_t> shape;
};

// The capsule's own destructor: frees the tensor only if no consumer took (renamed) it.
template <class Managed>
void capsule_destructor(PyObject* capsule) {
  const char* name = PyCapsule_GetName(capsule);
  if (!PyCapsule_IsValid(capsule, name) || std::strncmp(name, "used_", 5) == 0) return;
  auto* m = static_cast<Managed*>(PyCapsule_GetPointer(capsule, name));
  if (m && m->deleter) m->deleter(m);
}

// One export path for both capsule kinds (Managed: the v0 or the versioned struct).
template <class Managed>
py::object export_capsule(Managed* m, const char* name, const DeviceArray& a) {
  m->deleter = [](Managed* self) {
    delete static_cast<ExportContext*>(self->manager_ctx);
    delete self;
  };
  m->manager_ctx = new ExportContext{a.holder, a.shape};
  m->dl_tensor.data = reinterpret_cast<void*>(a.ptr);
  m->dl_tensor.device = {kAxDLCUDA, a.device};
  m->dl_tensor.ndim = static_cast<int32_t>(a.shape.size());
  m->dl_tensor.dtype = dl_from_dtype(a.dtype);
  m->dl_tensor.shape = static_cast<ExportContext*>(m->manager_ctx)->shape.data();
  m->dl_tensor.strides = nullptr;  // compact row-major
  m->dl_tensor.byte_offset = 0;
  return py::reinterpret_steal<py::object>(PyCapsule_New(m, name, &capsule_destructor<Managed>));
}

py::object dlpack_export(const DeviceArray& a, py::object stream, py::object max_version,
                         py::object dl_device, py::object copy) {
  if (!dl_device.is_none()) {
    auto dev = dl_device.cast<std::pair<int, int>>();
    if (dev.first != kAxDLCUDA || dev.second != a.device)
      throw py::buffer_error("__dlpack__: this array lives on CUDA device " +
                             std::to_string(a.device) + "; cross-device export needs a copy");
  }
  if (!copy.is_none() && copy.cast<bool>())
    throw py::buffer_error("__dlpack__: copy=True is not supported; copy with DeviceArray.copy()");
  // Stream contract: the consumer names the stream it will use; work we queued so far (on our
  // current stream) must be complete before anything on that stream reads the data.
  long long s = stream.is_none() ? 1 : stream.cast<long long>();
  if (s == 0) throw py::value_error("__dlpack__: stream 0 is ambiguous for CUDA; use 1 or 2");
  if (s != -1) order_streams(cuda::current_stream(), cuda::stream_from_int(s));

  if (!max_version.is_none() && max_version.cast<std::pair<int, int>>().first >= 1) {
    auto* m = new AxDLManagedTensorVersioned{};
    m->version = {1, 0};
    m->flags = a.readonly ? 1u : 0u;
    return export_capsule(m, "dltensor_versioned", a);
  }
  return export_capsule(new AxDLManagedTensor{}, "dltensor", a);
}

// ---------------------------------------------------------------- DLPack import
// Takes over a consumed capsule's tensor: `holder` calls its deleter, also when this throws.
template <class Managed>
DeviceArray adopt(Managed* m, bool readonly) {
  DeviceArray a;
  a.holder = std::shared_ptr<void>(m, [](void* p) {
    auto* mm = static_cast<Managed*>(p);
    if (mm->deleter) mm->deleter(mm);
  });
  const AxDLTensor& t = m->dl_tensor;
  if (t.device.device_type != kAxDLCUDA && t.device.device_type != kAxDLCUDAManaged)
    throw py::type_error("asarray: the DLPack tensor is not in CUDA device memory (device type " +
                         std::to_string(t.device.device_type) + "); use to_device() to copy host data");
  if (t.strides && !row_major(t.ndim, t.shape, t.strides, 1))
    throw py::value_error("asarray: only C-contiguous arrays can be shared without a copy "
                          "(call .contiguous() / ascontiguousarray first)");
  a.dtype = dtype_from_dl(t.dtype);
  a.shape.assign(t.shape, t.shape + t.ndim);
  a.ptr = reinterpret_cast<uintptr_t>(t.data) + t.byte_offset;
  a.device = t.device.device_id;
  a.readonly = readonly;
  return a;
}

DeviceArray from_dlpack(py::object obj) {
  py::object stream = py::int_(cuda::stream_to_int(cuda::current_stream()));
  py::object cap;
  try {
    cap = obj.attr("__dlpack__")(py::arg("stream") = stream, py::arg("max_version") = py::make_tuple(1, 0));
  } catch (py::error_already_set& e) {
    if (!e.matches(PyExc_TypeError)) throw;  // an older producer without max_version
    cap = obj.attr("__dlpack__")(py::arg("stream") = stream);
  }
  PyObject* c = cap.ptr();
  if (PyCapsule_IsValid(c, "dltensor_versioned")) {
    auto* m = static_cast<AxDLManagedTensorVersioned*>(PyCapsule_GetPointer(c, "dltensor_versioned"));
    if (m->version.major != 1) throw py::buffer_error("asarray: unsupported DLPack major version");
    PyCapsule_SetName(c, "used_dltensor_versioned");
    return adopt(m, (m->flags & 1u) != 0);
  }
  if (PyCapsule_IsValid(c, "dltensor")) {
    auto* m = static_cast<AxDLManagedTensor*>(PyCapsule_GetPointer(c, "dltensor"));
    PyCapsule_SetName(c, "used_dltensor");
    return adopt(m, false);
  }
  throw py::type_error("asarray: __dlpack__ did not return a DLPack capsule");
}

// ---------------------------------------------------------------- CUDA Array Interface import
DeviceArray from_cai(py::object obj) {
  py::dict cai = obj.attr("__cuda_array_interface__");
  const int version = cai["version"].cast<int>();
  if (version < 2) throw py::value_error("asarray: __cuda_array_interface__ version < 2");
  DeviceArray a;
  a.shape = shape_from(cai["shape"]);
  a.dtype = py::dtype(cai["typestr"].cast<std::string>());
  if (a.dtype.kind() == 'V' && a.dtype.itemsize() == 2)
    throw py::type_error(std::string("asarray: ") + kNoBf16Cai);
  check_dtype_supported(a.dtype, "asarray");
  auto data = cai["data"].cast<py::tuple>();
  a.ptr = data[0].cast<uintptr_t>();
  a.readonly = data[1].cast<bool>();
  if (cai.contains("strides") && !cai["strides"].is_none()) {
    std::vector<int64_t> st;
    for (auto v : cai["strides"]) st.push_back(v.cast<int64_t>() / static_cast<int64_t>(a.dtype.itemsize()));
    if (!row_major(static_cast<int>(a.shape.size()), a.shape.data(), st.data(), 1))
      throw py::value_error("asarray: only C-contiguous arrays can be shared without a copy");
  }
  a.device = current_device();
  if (a.ptr) {
    cudaPointerAttributes attr{};
    check(cudaPointerGetAttributes(&attr, reinterpret_cast<void*>(a.ptr)), "cudaPointerGetAttributes");
    if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
      throw py::type_error("asarray: __cuda_array_interface__ data is not device memory");
    a.device = attr.device;
  }
  // v3: the producer names the stream its data is valid on; our current stream waits for it.
  if (version >= 3 && cai.contains("stream") && !cai["stream"].is_none()) {
    const long long s = cai["stream"].cast<long long>();
    if (s == 0) throw py::value_error("asarray: __cuda_array_interface__ stream 0 is not allowed");
    order_streams(cuda::stream_from_int(s), cuda::current_stream());
  }
  py::object owner = obj;
  a.holder = std::shared_ptr<void>(new py::object(owner), [](void* p) {
    py::gil_scoped_acquire gil;
    delete static_cast<py::object*>(p);
  });
  return a;
}

// ---------------------------------------------------------------- host <-> device
// host -> dst through a pinned staging buffer on the current stream: a true asynchronous DMA,
// and the host memory is free to change as soon as this returns. (dst's device is current.)
void upload_staged(const DeviceArray& dst, const void* host, size_t n, const char* what) {
  cudaStream_t s = cuda::current_stream();
  void* staging = cuda::pinned_acquire(n);
  std::memcpy(staging, host, n);
  check(cudaMemcpyAsync(reinterpret_cast<void*>(dst.ptr), staging, n, cudaMemcpyHostToDevice, s), what);
  cuda::pinned_release(staging, s);
}

DeviceArray to_device(py::array host, int device) {
  if (device < 0) device = current_device();
  py::array src = py::array::ensure(host, py::array::c_style);
  if (!src) throw py::type_error("to_device: expected a numpy array");
  check_dtype_supported(src.dtype(), "to_device");
  std::vector<int64_t> shape(src.shape(), src.shape() + src.ndim());
  DeviceArray a = device_empty(shape, src.dtype(), device);
  const size_t n = a.nbytes();
  if (n == 0) return a;
  DeviceScope scope(device);
  upload_staged(a, src.data(), n, "to_device: cudaMemcpyAsync");
  return a;
}

py::array to_host(const DeviceArray& a) {
  py::array out(a.dtype, std::vector<py::ssize_t>(a.shape.begin(), a.shape.end()));
  const size_t n = a.nbytes();
  if (n == 0) return out;
  DeviceScope scope(a.device);
  cudaStream_t s = cuda::current_stream();
  void* staging = cuda::pinned_acquire(n);
  check(cudaMemcpyAsync(staging, reinterpret_cast<void*>(a.ptr), n, cudaMemcpyDeviceToHost, s),
        "get: cudaMemcpyAsync");
  {
    py::gil_scoped_release release;
    check(cudaStreamSynchronize(s), "get: cudaStreamSynchronize");
  }
  std::memcpy(out.mutable_data(), staging, n);
  cuda::pinned_release(staging, s);
  raise_deferred(a.device);  // the host waited: a pending range check's verdict is due
  return out;
}

// dst <- src: a host array (staged through pinned memory, like to_device) or a DeviceArray on any
// device (cuda/device_copy.h: same device, peer to peer, or through the host).
void copy_into(const DeviceArray& dst, py::object src, const std::string& route) {
  if (dst.readonly) throw py::value_error("dst: array is read-only");
  cuda::CopyRoute r;
  if (route == "auto") r = cuda::CopyRoute::Auto;
  else if (route == "peer") r = cuda::CopyRoute::Peer;
  else if (route == "host") r = cuda::CopyRoute::Host;
  else throw py::value_error("route: expected 'auto', 'peer' or 'host', got '" + route + "'");
  auto same_layout = [&](const std::vector<int64_t>& shape, const py::dtype& dt) {
    if (shape != dst.shape)
      throw py::value_error("src: shape " + py::repr(shape_tuple(shape)).cast<std::string>() +
                            " does not match dst's " + py::repr(shape_tuple(dst.shape)).cast<std::string>());
    if (!dt.equal(dst.dtype))
      throw py::type_error("src: dtype " + py::str(dt).cast<std::string>() + " does not match dst's " +
                           py::str(dst.dtype).cast<std::string>());
  };
  if (py::isinstance<DeviceArray>(src)) {
    const DeviceArray& a = src.cast<const DeviceArray&>();
    same_layout(a.shape, a.dtype);
    if (a.ptr == dst.ptr && a.device == dst.device) return;
    const size_t n = dst.nbytes();
    py::gil_scoped_release release;
    cuda::copy_between(reinterpret_cast<void*>(dst.ptr), dst.device,
                       reinterpret_cast<const void*>(a.ptr), a.device, n, r);
    return;
  }
  if (!py::isinstance<py::array>(src))
    throw py::type_error("src: expected a DeviceArray or a numpy array, got " +
                         py::str(py::type::of(src).attr("__name__")).cast<std::string>());
  py::array host = py::array::ensure(src, py::array::c_style);
  if (!host) throw py::value_error("src: expected a C-contiguous numpy array");
  same_layout(std::vector<int64_t>(host.shape(), host.shape() + host.ndim()), host.dtype());
  const size_t n = dst.nbytes();
  if (n == 0) return;
  DeviceScope scope(dst.device);
  cudaPointerAttributes attr{};
  check(cudaPointerGetAttributes(&attr, host.data()), "cudaPointerGetAttributes");
  if (attr.type != cudaMemoryTypeHost) {
    upload_staged(dst, host.data(), n, "copy: cudaMemcpyAsync");
    return;
  }
  // Pinned already (cuda.pin_host_memory): one asynchronous DMA, no staging. The caller keeps
  // the host memory unchanged until the copy is done (an event on this stream says when).
  check(cudaMemcpyAsync(reinterpret_cast<void*>(dst.ptr), host.data(), n, cudaMemcpyHostToDevice,
                        cuda::current_stream()),
        "copy: cudaMemcpyAsync");
}

// The host waits (without the GIL) for `sync`, then raises a pending deferred check's verdict.
template <class Sync>
void wait_for(Sync sync, const char* what) {
  {
    py::gil_scoped_release release;
    check(sync(), what);
  }
  raise_deferred(current_device());
}

// Zeroes a on the current stream of its device.
void fill_zero(const DeviceArray& a) {
  if (!a.nbytes()) return;
  DeviceScope scope(a.device);
  check(cudaMemsetAsync(reinterpret_cast<void*>(a.ptr), 0, a.nbytes(), cuda::current_stream()), "zero");
}

}  // namespace

DeviceArray device_empty(const std::vector<int64_t>& shape, const py::dtype& dtype, int device) {
  check_dtype_supported(dtype, "dtype");
  if (device < 0) device = current_device();
  DeviceArray a;
  a.shape = shape;
  a.dtype = dtype;
  a.device = device;
  const size_t n = a.nbytes();
  if (n == 0) return a;
  cudaStream_t s = cuda::current_stream();
  void* p = cuda::device_alloc(n, device, s);
  a.ptr = reinterpret_cast<uintptr_t>(p);
  a.holder = std::shared_ptr<void>(p, [](void* q) { cuda::device_free(q); });
  return a;
}

void bind_cuda_array(py::module_& m) {
  static py::exception<cuda::CudaError> cuda_error(m, "CudaError", PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const cuda::OutOfMemory& e) {
      PyErr_SetString(PyExc_MemoryError, e.what());
    } catch (const cuda::CudaError& e) {
      py::set_error(cuda_error, e.what());
    }
  });

  py::class_<DeviceArray>(m, "DeviceArray", "A dense C-contiguous array in GPU memory.")
      .def_property_readonly("shape", [](const DeviceArray& a) { return shape_tuple(a.shape); })
      .def_property_readonly("dtype", [](const DeviceArray& a) { return a.dtype; })
      .def_property_readonly("ndim", [](const DeviceArray& a) { return a.shape.size(); })
      .def_property_readonly("size", &DeviceArray::size)
      .def_property_readonly("nbytes", &DeviceArray::nbytes)
      .def_property_readonly("device", [](const DeviceArray& a) { return a.device; })
      .def_property_readonly("ptr", [](const DeviceArray& a) { return a.ptr; })
      .def_property_readonly("readonly", [](const DeviceArray& a) { return a.readonly; })
      .def_property_readonly("strides", [](const DeviceArray& a) {
        return shape_tuple(dense_strides(a.shape, a.dtype.itemsize()));
      })
      .def("reshape", [](const DeviceArray& a, py::args args) {
        // reshape((2, 3)) or reshape(2, 3), as NumPy takes both
        const bool packed = args.size() == 1 && !py::isinstance<py::int_>(args[0]);
        auto s = (packed ? py::object(args[0]) : py::object(args)).cast<std::vector<int64_t>>();
        const auto infer = std::find(s.begin(), s.end(), -1);
        // The product of the other dimensions; negative once it overflows (a later 0 makes it the
        // true product, 0, again), so never equal to a size.
        int64_t known = 1;
        for (auto it = s.begin(); it != s.end(); ++it) {
          if (it == infer) continue;
          if (*it < 0) throw py::value_error("reshape: dimensions must be >= 0 (one may be -1)");
          if (__builtin_mul_overflow(known, *it, &known)) known = -1;
        }
        if (infer == s.end() ? known != a.size() : known <= 0 || a.size() % known)
          throw py::value_error("reshape: cannot reshape " + std::to_string(a.size()) +
                                " elements to " + shape_str(s));
        if (infer != s.end()) *infer = a.size() / known;
        DeviceArray b = a;
        b.shape = s;
        return b;
      }, "A view with another shape (same data); reshape(2, 3) or reshape((2, 3)), one -1 allowed.")
      .def("get", &to_host, "Copy to a new numpy array (waits for the current stream).")
      .def("numpy", &to_host, "Same as get().")
      .def_property_readonly("__cuda_array_interface__", [](const DeviceArray& a) {
        py::dict d;
        d["shape"] = shape_tuple(a.shape);
        d["typestr"] = typestr(a.dtype);
        d["data"] = py::make_tuple(a.ptr, a.readonly);
        d["version"] = 3;
        d["strides"] = py::none();
        d["stream"] = cuda::stream_to_int(cuda::current_stream());
        return d;
      })
      .def("__dlpack__", &dlpack_export, py::kw_only(), py::arg("stream") = py::none(),
           py::arg("max_version") = py::none(), py::arg("dl_device") = py::none(),
           py::arg("copy") = py::none())
      .def("__dlpack_device__", [](const DeviceArray& a) { return py::make_tuple(int(kAxDLCUDA), a.device); })
      .def("__len__", [](const DeviceArray& a) {
        if (a.shape.empty()) throw py::type_error("len() of a 0-d array");
        return a.shape[0];
      })
      .def("__repr__", [](const DeviceArray& a) {
        return "DeviceArray(shape=" + py::repr(shape_tuple(a.shape)).cast<std::string>() +
               ", dtype=" + py::str(a.dtype).cast<std::string>() + ", device=" + std::to_string(a.device) + ")";
      });

  m.def("empty", [](py::object shape, py::object dtype, int device) {
    return device_empty(shape_from(shape), py::dtype::from_args(dtype), device);
  }, py::arg("shape"), py::arg("dtype"), py::arg("device") = -1);
  m.def("zeros", [](py::object shape, py::object dtype, int device) {
    DeviceArray a = device_empty(shape_from(shape), py::dtype::from_args(dtype), device);
    fill_zero(a);
    return a;
  }, py::arg("shape"), py::arg("dtype"), py::arg("device") = -1);
  m.def("to_device", &to_device, py::arg("array"), py::arg("device") = -1);
  m.def("copy", &copy_into, py::arg("dst"), py::arg("src"), py::arg("route") = "auto");
  m.def("zero", [](const DeviceArray& a) {
    if (a.readonly) throw py::value_error("a: array is read-only");
    fill_zero(a);
  }, py::arg("a"));
  // Page-locking memory the caller owns (the data loader's shared-memory batch slots), so
  // that copies from it are true asynchronous DMA.
  m.def("host_register", [](uintptr_t ptr, size_t nbytes) {
    check(cudaHostRegister(reinterpret_cast<void*>(ptr), nbytes, cudaHostRegisterDefault),
          "cudaHostRegister");
  }, py::arg("ptr"), py::arg("nbytes"));
  m.def("host_unregister", [](uintptr_t ptr) {
    check(cudaHostUnregister(reinterpret_cast<void*>(ptr)), "cudaHostUnregister");
  }, py::arg("ptr"));
  // Events, for ordering one stream after another without the host waiting.
  m.def("event_create", [](int device) {
    DeviceScope scope(device);
    cudaEvent_t e;
    check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
    return reinterpret_cast<uintptr_t>(e);
  }, py::arg("device"));
  m.def("event_destroy", [](uintptr_t e) { cudaEventDestroy(reinterpret_cast<cudaEvent_t>(e)); });
  m.def("event_record", [](uintptr_t e, int device) {
    DeviceScope scope(device);  // an event is recorded on a stream of its own device
    check(cudaEventRecord(reinterpret_cast<cudaEvent_t>(e), cuda::current_stream()), "cudaEventRecord");
  }, py::arg("event"), py::arg("device"));
  m.def("event_wait", [](uintptr_t e, int device) {
    DeviceScope scope(device);  // the current stream of `device` waits
    check(cudaStreamWaitEvent(cuda::current_stream(), reinterpret_cast<cudaEvent_t>(e), 0),
          "cudaStreamWaitEvent");
  }, py::arg("event"), py::arg("device"));
  m.def("event_synchronize", [](uintptr_t e) {
    py::gil_scoped_release release;
    check(cudaEventSynchronize(reinterpret_cast<cudaEvent_t>(e)), "cudaEventSynchronize");
  }, py::arg("event"));
  m.def("peer_access", [](int device, int peer) {
    int n = 0;
    check(cudaGetDeviceCount(&n), "cudaGetDeviceCount");
    if (device < 0 || device >= n || peer < 0 || peer >= n)
      throw py::value_error("device/peer: expected device numbers below " + std::to_string(n));
    return device != peer && cuda::peer_access(device, peer);
  }, py::arg("device"), py::arg("peer"));
  m.def("from_dlpack", &from_dlpack, py::arg("obj"));
  m.def("from_cuda_array_interface", &from_cai, py::arg("obj"));

  m.def("device_count", []() {
    int n = 0;
    check(cudaGetDeviceCount(&n), "cudaGetDeviceCount");
    return n;
  });
  m.def("get_device", &current_device);
  m.def("set_device", [](int d) { check(cudaSetDevice(d), "cudaSetDevice"); }, py::arg("device"));
  m.def("synchronize", []() { wait_for(cudaDeviceSynchronize, "synchronize"); });
  m.def("stream_create", []() {
    cudaStream_t s;
    check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
    return reinterpret_cast<uintptr_t>(s);
  });
  m.def("stream_destroy", [](uintptr_t s) {
    check(cudaStreamDestroy(reinterpret_cast<cudaStream_t>(s)), "cudaStreamDestroy");
  });
  m.def("stream_synchronize", [](uintptr_t s) {
    wait_for([s] { return cudaStreamSynchronize(reinterpret_cast<cudaStream_t>(s)); },
             "cudaStreamSynchronize");
  });
  bind_deferred(m);
  m.def("get_stream", []() { return reinterpret_cast<uintptr_t>(cuda::current_stream()); });
  m.def("set_stream", [](uintptr_t s) { cuda::set_current_stream(reinterpret_cast<cudaStream_t>(s)); });
  m.def("memory_stats", [](int device) {
    if (device < 0) device = current_device();
    auto s = cuda::memory_stats(device);
    py::dict d;
    d["allocated_bytes"] = s.allocated_bytes;
    d["cached_bytes"] = s.cached_bytes;
    d["peak_bytes"] = s.peak_bytes;
    d["cuda_mallocs"] = s.cuda_mallocs;
    return d;
  }, py::arg("device") = -1);
  m.def("empty_cache", &cuda::empty_cache);
}

}  // namespace alexnet_ext::binding
#endif  // ALEXNET_EXT_WITH_CUDA
