// The host half of the deferred value checks (cuda/report.h): an op inside a training step
// (max_pool_undo, softmax_log_loss_undo) queues its range check on the GPU and returns without
// waiting; its verdict is read at the next point where the host waits anyway and raised there as
// the op's own ValueError, with a note saying where it was found.
#include <string>

#include "python/view.h"

#ifdef ALEXNET_EXT_WITH_CUDA
#include "cuda/report.h"

namespace alexnet_ext::binding {

void raise_deferred(int device) {
  std::string msg;
  {
    py::gil_scoped_release release;
    msg = cuda::collect_deferred(device);
  }
  if (!msg.empty()) throw py::value_error(msg);
}

void bind_deferred(py::module_& m) {
  m.def("deferred_pending", &cuda::deferred_pending, py::arg("device"),
        "How many range checks of GPU `device` await the next synchronisation.");
  m.def("stream_query", [](uintptr_t s) {
    const cudaError_t e = cudaStreamQuery(reinterpret_cast<cudaStream_t>(s));
    if (e == cudaSuccess) return true;
    if (e == cudaErrorNotReady) {
      cudaGetLastError();  // not an error: clear it
      return false;
    }
    cuda::check(e, "cudaStreamQuery");
    return false;
  }, py::arg("stream"), "True when all work queued on the stream has finished (never waits).");
}

}  // namespace alexnet_ext::binding
#endif
