// The one array type of the op bindings: a View (pointer, shape, strides, dtype, device) of a NumPy
// array or an alexnet_ext.cuda.DeviceArray (a torch tensor is one more constructor here). Each op
// is one lambda (csrc/python/<op>.cpp) taking Views: it checks memory safety once (shapes against
// the op's geometry check in the op's header, dtype, density, writability, one device), then
// DISPATCH calls cpu:: or cuda:: by where the arrays live. The friendly argument checks are
// Python's (alexnet_ext.ops, _validate.py); these only keep a direct _core call in bounds.
// dtype dispatch lives in View::data<T>(): bf16 (ml_dtypes.bfloat16) travels as its uint16_t bits,
// the type the bf16 kernels take; there is no uint16 integer dtype.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <limits>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#ifdef ALEXNET_EXT_WITH_CUDA
#include "cuda/common.cuh"
#include "cuda/report.h"
#include "cuda/stream.h"
#include "python/cuda_array.h"
#endif

namespace alexnet_ext::binding {

namespace py = pybind11;

enum class Dtype { f32, bf16, i32, i64, u8, other };

template <class T> constexpr Dtype dtype_of();
template <> constexpr Dtype dtype_of<float>() { return Dtype::f32; }
template <> constexpr Dtype dtype_of<uint16_t>() { return Dtype::bf16; }
template <> constexpr Dtype dtype_of<int32_t>() { return Dtype::i32; }
template <> constexpr Dtype dtype_of<int64_t>() { return Dtype::i64; }
template <> constexpr Dtype dtype_of<uint8_t>() { return Dtype::u8; }
const char* dtype_name(Dtype d);
Dtype dtype_from(const py::dtype& dt);  // native-order float32, bf16, int32, int64, uint8; else other
const py::dtype& bf16_dtype();          // numpy.dtype(ml_dtypes.bfloat16)

struct View {
  py::object owner;             // keeps the array alive while the kernel runs without the GIL
  void* ptr = nullptr;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides; // in bytes, as NumPy keeps them
  Dtype dtype = Dtype::other;
  std::string dtype_str;        // as Python spells it, for messages
  int64_t itemsize = 0;
  int device = -1;              // -1: host memory; else the CUDA device index
  bool readonly = false;

  int ndim() const { return static_cast<int>(shape.size()); }
  int64_t size() const { return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<>()); }
  bool dense() const;  // C-contiguous and aligned
  // The data as T after checking dtype, density and (mutable) writability; TypeError/ValueError
  // naming `name` otherwise.
  template <class T> const T* data(const char* name) const {
    check(dtype_of<T>(), name);
    return static_cast<const T*>(ptr);
  }
  template <class T> T* mut(const char* name) const {
    check(dtype_of<T>(), name);
    if (readonly) throw py::value_error(std::string(name) + ": array is read-only");
    return static_cast<T*>(ptr);
  }
  void check(Dtype want, const char* name) const;
};

View make_view(py::handle obj);  // TypeError unless a NumPy array or DeviceArray
// Row-major strides of `shape` in units of `unit` (bytes: the itemsize; elements: 1).
std::vector<int64_t> dense_strides(const std::vector<int64_t>& shape, int64_t unit);
// Whether `strides` (in units of `unit`) are row-major for `shape` (size-1 axes: any stride).
bool row_major(int ndim, const int64_t* shape, const int64_t* strides, int64_t unit);
std::string shape_str(const std::vector<int64_t>& s);

// a's shape must be exactly `shape`.
void expect_shape(const View& a, const std::vector<int64_t>& shape, const char* name);
// b's shape must be a's.
void expect_same_shape(const View& b, const View& a, const char* b_name, const char* a_name);
// Each of `others` (array, name) must have a's shape.
void expect_shape_of(const View& a, const char* a_name,
                     std::initializer_list<std::pair<const View*, const char*>> others);
// a must have `ndim` dimensions (layout quoted in the error).
void expect_ndim(const View& a, int ndim, const char* name, const char* layout);
// expect_ndim, then each of `others` must have a's shape exactly (expect_shape); a's shape.
const std::vector<int64_t>& expect_ndim_shared(
    const View& a, int ndim, const char* name, const char* layout,
    std::initializer_list<std::pair<const View*, const char*>> others);

// Where an op runs: all its arrays (nullptr entries skipped) on the host or all on one GPU, which
// is made current for the scope. TypeError for a mix.
class Place {
 public:
  explicit Place(const std::vector<const View*>& arrays);
  bool gpu() const { return device_ >= 0; }
  int device() const { return device_; }
#ifdef ALEXNET_EXT_WITH_CUDA
  cudaStream_t stream() const { return stream_; }
 private:
  std::optional<cuda::DeviceScope> scope_;
  cudaStream_t stream_ = nullptr;
#else
 private:
#endif
  int device_ = -1;
};

#ifdef ALEXNET_EXT_WITH_CUDA
// Deferred value checks (cuda/report.h, csrc/python/deferred.cpp): raises the first pending bad
// verdict of `device` as the op's ValueError. Called where the host waits anyway (the loss read,
// DeviceArray.get, synchronize). bind_deferred binds _core.cuda.deferred_pending and
// stream_query (for tests).
void raise_deferred(int device);
void bind_deferred(py::module_& cuda);

// Queues launch(bad), a kernel that records the bad entries of `values` in `bad`, without
// waiting: message(record) becomes op's ValueError at the next synchronisation, with a note
// saying so. values == nullptr: nothing to check.
template <class T, class Message, class Launch>
void launch_deferred(const Place& at, const char* op, const T* values, Message message,
                     Launch launch) {
  py::gil_scoped_release release;
  cuda::DeferredRecord* record = cuda::defer_check(
      at.device(), at.stream(), [=](const cuda::DeferredRecord& r) {
        const unsigned long long n = r.bad.count;
        return message(r) + " [found on the GPU by " + op + " (" + std::to_string(n) +
               " bad value" + (n == 1 ? "" : "s") + "), raised at the next synchronisation]";
      });
  launch(&record->bad);
  if (values) cuda::capture_bad_value(record, values, at.stream());
}
#endif

// An op's kernel pair, cpu::fn(args...) and (CUDA builds) cuda::fn(args..., stream), as a value:
// kernels(place, args...) runs the one where `place` is, without the GIL. Argument types with no
// CPU kernel (bf16: GPU only) compile to a throw there; with_real refuses them first.
template <class Cpu, class Cuda>
struct Kernels {
  Cpu cpu;
  Cuda cuda;
  template <class... A>
  void operator()(const Place& at, A... args) const {
    py::gil_scoped_release release;
#ifdef ALEXNET_EXT_WITH_CUDA
    if (at.gpu()) return cuda(args..., at.stream());
#endif
    if constexpr (std::is_invocable_v<const Cpu&, A...>)
      cpu(args...);
    else
      throw std::logic_error("no CPU kernel for these argument types");
  }
};
template <class Cpu, class Cuda> Kernels(Cpu, Cuda) -> Kernels<Cpu, Cuda>;
// The CPU lambda names its return type so that is_invocable can ask without instantiating it.
#define ALEXNET_EXT_CPU_KERNEL(fn) [](auto... a) -> decltype(cpu::fn(a...)) { return cpu::fn(a...); }
#ifdef ALEXNET_EXT_WITH_CUDA
#define ALEXNET_EXT_KERNELS(fn) \
  Kernels{ALEXNET_EXT_CPU_KERNEL(fn), [](auto... a) { cuda::fn(a...); }}
#else
#define ALEXNET_EXT_KERNELS(fn) Kernels{ALEXNET_EXT_CPU_KERNEL(fn), nullptr}
#endif

// The element type of an op on float32 or bfloat16 arrays, decided by `a` (named `name`) in this
// one place: calls f(T{}) with T float or uint16_t (bf16 bits, csrc/real.h). bf16 runs on the
// GPU only (TypeError on the host). The other arrays are checked against T by data<T>/mut<T>.
template <class F>
void with_real(const Place& at, const View& a, const char* name, F&& f) {
  if (a.dtype != Dtype::bf16) return f(float{});  // data<float> reports any other dtype
  if (!at.gpu())
    throw py::type_error(std::string(name) + ": bfloat16 arrays run on the GPU only (DeviceArray; "
                         "on the host convert with ops.cast to float32)");
  f(uint16_t{});
}

// Calls f(p) with p the data of an index array (int32 or int64) as its own type.
template <class F>
void with_index(const View& a, const char* name, bool writable, F&& f) {
  if (a.dtype == Dtype::i32)
    f(writable ? a.mut<int32_t>(name) : const_cast<int32_t*>(a.data<int32_t>(name)));
  else if (a.dtype == Dtype::i64)
    f(writable ? a.mut<int64_t>(name) : const_cast<int64_t*>(a.data<int64_t>(name)));
  else
    throw py::type_error(std::string(name) + ": expected dtype int32 or int64, got " + a.dtype_str);
}

// with_index for the written switches of a max pool over planes of `plane` pixels: int32 ones
// must be able to hold every flat index.
template <class F>
void with_switches(const View& switches, int64_t plane, F&& f) {
  with_index(switches, "switches", true, [&](auto* s) {
    using I = std::remove_pointer_t<decltype(s)>;
    if (plane - 1 > static_cast<int64_t>(std::numeric_limits<I>::max()))
      throw py::value_error("switches: int32 cannot index a plane of more than 2^31 - 1 pixels");
    f(s);
  });
}

// Registers an op in _core.cpu and, in CUDA builds, under the same name in _core.cuda (one
// function for both: the arrays say where it runs).
template <class F, class... Extra>
void def_op(py::module_& cpu, py::module_* cuda, const char* name, F&& f, const Extra&... extra) {
  cpu.def(name, std::forward<F>(f), extra...);
  if (cuda) cuda->attr(name) = cpu.attr(name);
}

// The elementwise ops (add, relu, relu_undo): float32 (or, on the GPU, bf16) arrays of one shape
// and dtype, the last written; kernel(inputs..., out, n). One registration for one or two inputs.
template <size_t N, class K>
void run_elementwise(const K& kernels, const std::array<View*, N>& v, const std::array<const char*, N>& names) {
  for (size_t i = 1; i < N; ++i) expect_same_shape(*v[i], *v[0], names[i], names[0]);
  Place at(std::vector<const View*>(v.begin(), v.end()));
  with_real(at, *v[0], names[0], [&](auto t) {
    using T = decltype(t);
    std::array<const T*, N - 1> in;
    for (size_t i = 0; i + 1 < N; ++i) in[i] = v[i]->template data<T>(names[i]);
    T* out = v[N - 1]->template mut<T>(names[N - 1]);
    std::apply([&](auto... p) { kernels(at, p..., out, v[0]->size()); }, in);
  });
}
template <class K>
void def_elementwise(py::module_& m, py::module_* cuda, const char* op, K k, const char* x, const char* out) {
  def_op(m, cuda, op, [=](View a, View o) { run_elementwise<2>(k, {&a, &o}, {x, out}); }, py::arg(x), py::arg(out));
}
template <class K>
void def_elementwise(py::module_& m, py::module_* cuda, const char* op, K k, const char* a, const char* b,
                     const char* out) {
  def_op(m, cuda, op, [=](View x, View y, View o) { run_elementwise<3>(k, {&x, &y, &o}, {a, b, out}); },
         py::arg(a), py::arg(b), py::arg(out));
}

}  // namespace alexnet_ext::binding

namespace pybind11::detail {
// Lets a lambda take `View` (and std::optional<View>, std::vector<View>) arguments directly.
template <>
struct type_caster<alexnet_ext::binding::View> {
  PYBIND11_TYPE_CASTER(alexnet_ext::binding::View, const_name("ndarray | DeviceArray"));
  bool load(handle src, bool) {
    try {
      value = alexnet_ext::binding::make_view(src);
      return true;
    } catch (const type_error&) {
      return false;
    }
  }
};
}  // namespace pybind11::detail
