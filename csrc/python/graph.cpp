// _core.cuda.Graph: one CUDA graph captured from a stream, then launched (replayed) any number of
// times; alexnet_ext.cuda.Graph (python/alexnet_ext/cuda_graph.py) is the public wrapper.
//
// A capture opens three things on (device, stream) and closes them at its end, error or not:
// the stream capture itself, a private memory pool (cuda/memory.h: what the captured ops allocate
// stays the graph's until reset), and a GraphChecks (cuda/report.h: the captured ops' deferred
// value checks, re-armed after each launch so a bad label or switch in a replay raises at the next
// synchronisation, as in eager mode).
#include <memory>
#include <string>

#include "python/view.h"

#ifdef ALEXNET_EXT_WITH_CUDA
#include "cuda/memory.h"
#include "cuda/report.h"

namespace alexnet_ext::binding {
namespace {

cudaStreamCaptureMode capture_mode(const std::string& mode) {
  if (mode == "global") return cudaStreamCaptureModeGlobal;
  if (mode == "thread_local") return cudaStreamCaptureModeThreadLocal;
  if (mode == "relaxed") return cudaStreamCaptureModeRelaxed;
  throw py::value_error("mode: expected 'global', 'thread_local' or 'relaxed', got '" + mode + "'");
}

class Graph {
 public:
  explicit Graph(int device) { checks_.device = device; }
  ~Graph() {
    try {
      reset();
    } catch (...) {  // a destructor must not throw; reset() raised it when called directly
    }
  }

  void begin(uintptr_t stream, const std::string& mode) {
    const cudaStreamCaptureMode m = capture_mode(mode);
    if (capturing_ || exec_) throw py::value_error("Graph: already captured (reset() first)");
    if (stream == 0 || stream == 1 || stream == 2)
      throw py::value_error("stream: a capture needs a stream of its own, not a default stream");
    stream_ = reinterpret_cast<cudaStream_t>(stream);
    cuda::DeviceScope scope(checks_.device);
    pool_ = cuda::pool_create();
    cuda::pool_begin(pool_, checks_.device, stream_);
    cuda::attach_graph_checks(stream_, &checks_);
    const cudaError_t err = cudaStreamBeginCapture(stream_, m);
    if (err != cudaSuccess) {
      close();
      cudaGetLastError();  // reported here, not by the next launch
      cuda::check(err, "cudaStreamBeginCapture");
    }
    capturing_ = true;
  }

  // Ends the capture; instantiates the graph unless the capture failed (then raises why).
  void end() {
    if (!capturing_) throw py::value_error("Graph: not capturing");
    cuda::DeviceScope scope(checks_.device);
    cudaGraph_t g = nullptr;
    const cudaError_t err = cudaStreamEndCapture(stream_, &g);
    capturing_ = false;
    close();
    if (err != cudaSuccess) {
      const std::string why = std::string("cudaStreamEndCapture: ") + cudaGetErrorName(err) +
                              ": " + cudaGetErrorString(err);
      // Also the thread's last error (as every failed runtime call leaves it), which the next
      // launch check would report against an innocent op: the capture's failure ends here.
      cudaGetLastError();
      reset();
      throw cuda::CudaError(why);
    }
    graph_ = g;
    cudaGraphExec_t exec = nullptr;
    const cudaError_t ierr = cudaGraphInstantiate(&exec, graph_, 0);
    if (ierr != cudaSuccess) {
      reset();
      cuda::check(ierr, "cudaGraphInstantiate");
    }
    exec_ = exec;
  }

  // The capture's body raised: end the capture whatever its state and leave no graph, and no
  // last error (already raised) for the next launch check to report against an innocent op.
  void abort() {
    if (capturing_) {
      cuda::DeviceScope scope(checks_.device);
      cudaGraph_t g = nullptr;
      cudaStreamEndCapture(stream_, &g);
      capturing_ = false;
      close();
      if (g) cudaGraphDestroy(g);
    }
    cudaGetLastError();
    reset();
  }

  void replay(uintptr_t stream) {
    if (!exec_) throw py::value_error("Graph: nothing captured to replay");
    cuda::DeviceScope scope(checks_.device);
    const auto s = reinterpret_cast<cudaStream_t>(stream);
    // Before the launch: a verdict of the previous launch not read yet must be read before this
    // launch clears its record (report.h: arm_graph_checks).
    cuda::arm_graph_checks(checks_, s);
    cuda::check(cudaGraphLaunch(exec_, s), "cudaGraphLaunch");
  }

  // Frees the graph, its checks' records and its memory pool (blocks still held by arrays made
  // during the capture are freed when those arrays go).
  void reset() {
    if (capturing_) throw py::value_error("Graph: reset() inside its own capture");
    cuda::DeviceScope scope(checks_.device);
    if (exec_) cudaGraphExecDestroy(exec_);
    if (graph_) cudaGraphDestroy(graph_);
    exec_ = nullptr;
    graph_ = nullptr;
    cuda::free_graph_checks(checks_);
    if (pool_) cuda::pool_release(pool_);
    pool_ = 0;
  }

  bool captured() const { return exec_ != nullptr; }
  size_t checks() const { return checks_.checks.size(); }

 private:
  void close() {
    cuda::attach_graph_checks(stream_, nullptr);
    cuda::pool_end(checks_.device, stream_);
  }

  cudaStream_t stream_ = nullptr;
  bool capturing_ = false;
  uint64_t pool_ = 0;
  cuda::GraphChecks checks_;
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

}  // namespace

void bind_graph(py::module_& m) {
  py::class_<Graph>(m, "Graph", "A captured CUDA graph (use alexnet_ext.cuda.Graph).")
      .def(py::init<int>(), py::arg("device"))
      .def("begin", &Graph::begin, py::arg("stream"), py::arg("mode"))
      .def("end", &Graph::end)
      .def("abort", &Graph::abort)
      .def("replay", &Graph::replay, py::arg("stream"))
      .def("reset", &Graph::reset)
      .def_property_readonly("captured", &Graph::captured)
      .def_property_readonly("checks", &Graph::checks,
                             "How many deferred value checks the capture recorded.");
  m.def("stream_capturing", [](uintptr_t s) {
    cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
    cuda::check(cudaStreamIsCapturing(reinterpret_cast<cudaStream_t>(s), &st), "cudaStreamIsCapturing");
    return st == cudaStreamCaptureStatusActive     ? std::string("active")
           : st == cudaStreamCaptureStatusNone ? std::string("none")
                                                   : std::string("invalidated");
  }, py::arg("stream"), "'none', 'active' or 'invalidated'.");
}

}  // namespace alexnet_ext::binding
#endif
