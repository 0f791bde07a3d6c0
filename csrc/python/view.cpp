// View construction and the checks every op binding shares (see view.h).
#include "python/view.h"

namespace alexnet_ext::binding {

const char* dtype_name(Dtype d) {
  switch (d) {
    case Dtype::f32: return "float32";
    case Dtype::bf16: return "bfloat16";
    case Dtype::i32: return "int32";
    case Dtype::i64: return "int64";
    case Dtype::u8: return "uint8";
    default: return "unsupported";
  }
}

const py::dtype& bf16_dtype() {
  // Leaked on purpose: no Python object may be released after the interpreter has gone.
  static const auto* d =
      new py::dtype(py::dtype::from_args(py::module_::import("ml_dtypes").attr("bfloat16")));
  return *d;
}

Dtype dtype_from(const py::dtype& dt) {
  const char k = dt.kind();
  const auto n = dt.itemsize();
  // native byte order only: '>f4' has the right kind and size but not the right bytes
  if (!dt.attr("isnative").cast<bool>()) return Dtype::other;
  if (k == 'f' && n == 4) return Dtype::f32;
  if (k == 'i' && n == 4) return Dtype::i32;
  if (k == 'i' && n == 8) return Dtype::i64;
  if (k == 'u' && n == 1) return Dtype::u8;
  // ml_dtypes' bfloat16 is a 2-byte 'V' kind, as is a plain void type: compare the dtype itself
  if (k == 'V' && n == 2 && dt.equal(bf16_dtype())) return Dtype::bf16;
  return Dtype::other;
}

View make_view(py::handle obj) {
  View v;
  v.owner = py::reinterpret_borrow<py::object>(obj);
  if (py::isinstance<py::array>(obj)) {
    auto a = py::reinterpret_borrow<py::array>(obj);
    v.ptr = const_cast<void*>(a.data());
    for (py::ssize_t i = 0; i < a.ndim(); ++i) {
      v.shape.push_back(a.shape(i));
      v.strides.push_back(a.strides(i));
    }
    v.dtype = dtype_from(a.dtype());
    v.dtype_str = py::str(a.dtype()).cast<std::string>();
    v.itemsize = a.itemsize();
    v.readonly = !a.writeable();
    return v;
  }
#ifdef ALEXNET_EXT_WITH_CUDA
  if (py::isinstance<DeviceArray>(obj)) {
    const auto& a = obj.cast<const DeviceArray&>();
    v.ptr = reinterpret_cast<void*>(a.ptr);
    v.shape = a.shape;
    v.itemsize = a.dtype.itemsize();
    v.strides = dense_strides(a.shape, v.itemsize);  // DeviceArrays are dense
    v.dtype = dtype_from(a.dtype);
    v.dtype_str = py::str(a.dtype).cast<std::string>();
    v.device = a.device;
    v.readonly = a.readonly;
    return v;
  }
#endif
  throw py::type_error("expected a numpy.ndarray or an alexnet_ext.cuda.DeviceArray");
}

std::vector<int64_t> dense_strides(const std::vector<int64_t>& shape, int64_t unit) {
  std::vector<int64_t> st(shape.size());
  for (size_t i = shape.size(); i-- > 0; unit *= shape[i]) st[i] = unit;
  return st;
}

bool row_major(int ndim, const int64_t* shape, const int64_t* strides, int64_t unit) {
  for (int i = ndim - 1; i >= 0; unit *= shape[i--])
    if (shape[i] != 1 && strides[i] != unit) return false;
  return true;
}

bool View::dense() const {
  return row_major(ndim(), shape.data(), strides.data(), itemsize) &&
         (itemsize == 0 || reinterpret_cast<uintptr_t>(ptr) % itemsize == 0);
}

void View::check(Dtype want, const char* name) const {
  if (dtype != want)
    throw py::type_error(std::string(name) + ": expected dtype " + dtype_name(want) + ", got " +
                         dtype_str);
  if (!dense())
    throw py::value_error(std::string(name) + ": expected a C-contiguous, aligned array");
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

void expect_shape(const View& a, const std::vector<int64_t>& want, const char* name) {
  if (a.shape != want)
    throw py::value_error(std::string(name) + ": expected shape " + shape_str(want) + ", got " +
                          shape_str(a.shape));
}

void expect_same_shape(const View& b, const View& a, const char* b_name, const char* a_name) {
  if (b.shape != a.shape)
    throw py::value_error(std::string(b_name) + ": expected the shape of " + a_name + " " +
                          shape_str(a.shape) + ", got " + shape_str(b.shape));
}

void expect_shape_of(const View& a, const char* a_name,
                     std::initializer_list<std::pair<const View*, const char*>> others) {
  for (auto [b, b_name] : others) expect_same_shape(*b, a, b_name, a_name);
}

void expect_ndim(const View& a, int ndim, const char* name, const char* layout) {
  if (a.ndim() != ndim)
    throw py::value_error(std::string(name) + ": expected " + std::to_string(ndim) +
                          " dimensions " + layout + ", got " + shape_str(a.shape));
}

const std::vector<int64_t>& expect_ndim_shared(
    const View& a, int ndim, const char* name, const char* layout,
    std::initializer_list<std::pair<const View*, const char*>> others) {
  expect_ndim(a, ndim, name, layout);
  for (auto [b, b_name] : others) expect_shape(*b, a.shape, b_name);
  return a.shape;
}

Place::Place(const std::vector<const View*>& arrays) {
  bool host = false;
  for (const View* a : arrays) {
    if (!a) continue;
    if (a->device < 0) {
      host = true;
    } else if (device_ >= 0 && a->device != device_) {
      throw py::type_error("arrays on different devices (" + std::to_string(device_) + " and " +
                           std::to_string(a->device) + "): move them to one device first");
    } else {
      device_ = a->device;
    }
  }
  if (host && device_ >= 0)
    throw py::type_error("arguments mix host (numpy) and device (DeviceArray) arrays");
#ifdef ALEXNET_EXT_WITH_CUDA
  if (device_ >= 0) {
    scope_.emplace(device_);
    stream_ = cuda::current_stream();
  }
#endif
}

}  // namespace alexnet_ext::binding
