// Internal to the emulator: the hooks between emu.cpp (streams, events, memory) and emu_graph.cpp
// (stream capture and graphs). Every hook is called with runtime_lock() held and returns
// cudaSuccess when the call may go on as without a capture, else the error it must return (also
// left as the last error), as CUDA defines for stream capture:
//   - work queued on a capturing stream is recorded, not run (capture_work);
//   - a potentially unsafe call (cudaMalloc, a synchronous copy or memset, cudaDeviceSynchronize,
//     cudaFree...) is refused with cudaErrorStreamCaptureUnsupported and invalidates the captures
//     that forbid it: the thread's own capture unless begun in relaxed mode, any other thread's
//     global-mode capture; a thread whose mode (cudaThreadExchangeStreamCaptureMode) is relaxed
//     is never refused. A wait for the capturing stream itself conflicts in every mode;
//   - the legacy default stream touched while a blocking stream of its device captures:
//     cudaErrorStreamCaptureImplicit; a capturing stream waiting on an event recorded outside the
//     capture: cudaErrorStreamCaptureIsolation; query/synchronize of an event recorded inside a
//     capture: cudaErrorCapturedEvent.
#pragma once
#include <functional>
#include <mutex>
#include <string>

#include "cuda_runtime.h"

namespace emu {

std::recursive_mutex& runtime_lock();
cudaError_t set_error(cudaError_t err, const std::string& message);  // also prints it
struct StreamFlags {
  int device;
  bool blocking, legacy;
};
StreamFlags stream_flags(cudaStream_t handle);  // emu.cpp

// `work` for `handle`: *recorded = true when the capture took it.
cudaError_t capture_work(cudaStream_t handle, std::function<void()>& work, bool* recorded);
// A call that waits for `handle`'s work (synchronize, query) from the host.
cudaError_t capture_check_wait(cudaStream_t handle, const char* what);
// A call the capture of `handle` cannot record (a copy with pageable memory): invalidates it.
cudaError_t capture_refuse(cudaStream_t handle, const std::string& message);
// A potentially unsafe call; `device` >= 0: it also waits for that device's work.
cudaError_t capture_check_unsafe(const char* what, int device);
// cudaEventRecord(e, s): *recorded = true when s captures (the event then marks a capture point).
cudaError_t capture_event_record(cudaEvent_t e, cudaStream_t s, bool* recorded);
// cudaStreamWaitEvent(s, e): *handled = true when the capture resolved it (same capture, or a
// fork that makes s join it).
cudaError_t capture_event_wait(cudaStream_t s, cudaEvent_t e, bool* handled);
// cudaEventQuery / cudaEventSynchronize / cudaEventDestroy of e.
cudaError_t capture_event_use(cudaEvent_t e, const char* what);
void capture_event_forget(cudaEvent_t e);

}  // namespace emu
