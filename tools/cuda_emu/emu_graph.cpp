// Stream capture and CUDA graphs for the CPU emulator (the rules it enforces: emu_capture.h).
//
// A capture is the list of work queued on its streams in host order: the origin stream (the one
// cudaStreamBeginCapture was called on) and the streams that joined it by waiting on an event
// recorded inside it (a fork). Host order respects every dependency the capture can express, so
// running the list in order is one valid schedule of the captured graph. A forked stream must be
// joined back (the origin waits on an event recorded on it after its last work) before
// cudaStreamEndCapture, else cudaErrorStreamCaptureUnjoined, as in CUDA. A graph is that list; an
// executable graph shares it, and cudaGraphLaunch queues it on a stream as one item (recorded as
// one node when that stream captures in turn).
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "emu_capture.h"

struct CUgraph_st {
  std::vector<std::function<void()>> nodes;
};
struct CUgraphExec_st {
  std::shared_ptr<const std::vector<std::function<void()>>> nodes;
};

namespace emu {
namespace {

struct Capture {
  unsigned long long id;
  cudaStreamCaptureMode mode;
  std::thread::id thread;
  cudaStream_t origin;
  int device;
  std::vector<std::function<void()>> nodes;
  std::map<cudaStream_t, size_t> recorded, joined;  // per member: work recorded / joined back
  std::string invalid;                              // why it was invalidated ("" while valid)
};
struct Mark {  // an event recorded inside a capture: after `count` items of `stream`
  Capture* capture;
  cudaStream_t stream;
  size_t count;
};

std::map<cudaStream_t, Capture*> member_of;  // capturing stream -> its capture
std::vector<std::unique_ptr<Capture>> active;
std::map<cudaEvent_t, Mark> marks;
unsigned long long next_id = 1;
thread_local cudaStreamCaptureMode thread_mode = cudaStreamCaptureModeGlobal;

bool is_legacy(cudaStream_t s) { return s == nullptr || s == cudaStreamLegacy; }

Capture* capture_of(cudaStream_t s) {
  auto it = member_of.find(s);
  return it == member_of.end() ? nullptr : it->second;
}

cudaError_t refuse(Capture* c, cudaError_t err, const std::string& message) {
  if (c && c->invalid.empty()) c->invalid = message;
  return set_error(err, message);
}

// The captures on `device` that hold a blocking stream (the legacy stream would wait for it).
std::vector<Capture*> blocking_captures(int device) {
  std::vector<Capture*> out;
  for (auto& [s, c] : member_of)
    if (c->device == device && stream_flags(s).blocking) out.push_back(c);
  return out;
}

cudaError_t implicit(int device, const char* what) {
  auto cs = blocking_captures(device);
  if (cs.empty()) return cudaSuccess;
  const std::string m = std::string(what) + ": the legacy default stream would depend on a "
                        "blocking stream that is capturing (use a non-blocking stream to capture)";
  for (auto* c : cs) refuse(c, cudaErrorStreamCaptureImplicit, m);
  return cudaErrorStreamCaptureImplicit;
}

void end(Capture* c) {
  for (auto it = member_of.begin(); it != member_of.end();)
    it = it->second == c ? member_of.erase(it) : std::next(it);
  for (auto it = marks.begin(); it != marks.end();)
    it = it->second.capture == c ? marks.erase(it) : std::next(it);
}

}  // namespace

cudaError_t capture_work(cudaStream_t handle, std::function<void()>& work, bool* recorded) {
  *recorded = false;
  const StreamFlags f = stream_flags(handle);
  if (f.legacy) return implicit(f.device, "work queued on the legacy default stream");
  Capture* c = capture_of(handle);
  if (!c) return cudaSuccess;
  if (!c->invalid.empty())
    return set_error(cudaErrorStreamCaptureInvalidated,
                     "work queued on a stream whose capture was invalidated (" + c->invalid + ")");
  c->nodes.push_back(std::move(work));
  ++c->recorded[handle];
  *recorded = true;
  return cudaSuccess;
}

cudaError_t capture_check_wait(cudaStream_t handle, const char* what) {
  const StreamFlags f = stream_flags(handle);
  if (f.legacy) return implicit(f.device, what);
  if (Capture* c = capture_of(handle))
    return refuse(c, cudaErrorStreamCaptureUnsupported,
                  std::string(what) + " of a stream that is capturing: its work is recorded, not "
                  "run, so nothing can wait for it (the capture is now invalid)");
  return cudaSuccess;
}

cudaError_t capture_refuse(cudaStream_t handle, const std::string& message) {
  return refuse(capture_of(handle), cudaErrorStreamCaptureUnsupported, message);
}

cudaError_t capture_check_unsafe(const char* what, int device) {
  std::vector<Capture*> forbid;
  const auto me = std::this_thread::get_id();
  for (auto& c : active) {
    const bool waits_for_it = device >= 0 && c->device == device;
    const bool own = c->thread == me && c->mode != cudaStreamCaptureModeRelaxed;
    const bool other = c->thread != me && c->mode == cudaStreamCaptureModeGlobal;
    const bool prohibited = thread_mode != cudaStreamCaptureModeRelaxed &&
                            (own || (other && thread_mode == cudaStreamCaptureModeGlobal));
    if (waits_for_it || prohibited) forbid.push_back(c.get());
  }
  if (forbid.empty()) return cudaSuccess;
  const std::string m = std::string(what) + " during a stream capture: a potentially unsafe call "
                        "(it waits for the GPU or allocates outside the stream order) is not "
                        "allowed while capturing (the capture is now invalid)";
  for (auto* c : forbid) refuse(c, cudaErrorStreamCaptureUnsupported, m);
  return cudaErrorStreamCaptureUnsupported;
}

cudaError_t capture_event_record(cudaEvent_t e, cudaStream_t s, bool* recorded) {
  *recorded = false;
  Capture* c = capture_of(s);
  if (!c) {
    marks.erase(e);  // recorded outside any capture again
    return cudaSuccess;
  }
  if (!c->invalid.empty())
    return set_error(cudaErrorStreamCaptureInvalidated, "cudaEventRecord: the capture was invalidated");
  marks[e] = {c, s, c->recorded[s]};
  *recorded = true;
  return cudaSuccess;
}

cudaError_t capture_event_wait(cudaStream_t s, cudaEvent_t e, bool* handled) {
  *handled = false;
  Capture* mine = capture_of(s);
  auto it = marks.find(e);
  if (it == marks.end()) {
    if (!mine) return cudaSuccess;
    return refuse(mine, cudaErrorStreamCaptureIsolation,
                  "cudaStreamWaitEvent: a capturing stream waits on an event recorded outside the "
                  "capture (order the stream before cudaStreamBeginCapture instead)");
  }
  const Mark m = it->second;
  if (is_legacy(s)) return refuse(m.capture, cudaErrorStreamCaptureImplicit,
                                  "cudaStreamWaitEvent: the legacy stream waits on a captured event");
  if (mine && mine != m.capture)
    return refuse(mine, cudaErrorStreamCaptureMerge,
                  "cudaStreamWaitEvent: the event belongs to another capture");
  if (!mine) member_of[s] = m.capture;  // a fork: s joins the capture
  auto& j = m.capture->joined[m.stream];
  if (m.count > j) j = m.count;
  *handled = true;
  return cudaSuccess;
}

cudaError_t capture_event_use(cudaEvent_t e, const char* what) {
  if (marks.count(e))
    return set_error(cudaErrorCapturedEvent,
                     std::string(what) + ": the event was last recorded inside a stream capture");
  return cudaSuccess;
}

void capture_event_forget(cudaEvent_t e) { marks.erase(e); }

}  // namespace emu

using namespace emu;

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
  std::lock_guard<std::recursive_mutex> g(runtime_lock());
  if (is_legacy(s) || s == cudaStreamPerThread)
    return set_error(cudaErrorStreamCaptureUnsupported,
                     "cudaStreamBeginCapture: the default streams cannot be captured here (use a "
                     "stream of your own)");
  if (capture_of(s))
    return set_error(cudaErrorInvalidValue, "cudaStreamBeginCapture: the stream already captures");
  active.push_back(std::make_unique<Capture>());
  Capture* c = active.back().get();
  c->id = next_id++;
  c->mode = mode;
  c->thread = std::this_thread::get_id();
  c->origin = s;
  c->device = stream_flags(s).device;
  member_of[s] = c;
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* graph) {
  std::lock_guard<std::recursive_mutex> g(runtime_lock());
  *graph = nullptr;
  Capture* c = capture_of(s);
  if (!c) return set_error(cudaErrorInvalidValue, "cudaStreamEndCapture: the stream is not capturing");
  if (c->origin != s)
    return refuse(c, cudaErrorStreamCaptureUnmatched,
                  "cudaStreamEndCapture: not the stream the capture began on");
  if (c->mode != cudaStreamCaptureModeRelaxed && c->thread != std::this_thread::get_id())
    return refuse(c, cudaErrorStreamCaptureWrongThread,
                  "cudaStreamEndCapture: called from another thread than cudaStreamBeginCapture");
  std::string unjoined;
  for (auto& [m, n] : c->recorded)
    if (m != s && n > c->joined[m]) unjoined = "a forked stream was not joined back to the origin";
  end(c);
  std::unique_ptr<Capture> owned;
  for (auto it = active.begin(); it != active.end(); ++it)
    if (it->get() == c) {
      owned = std::move(*it);
      active.erase(it);
      break;
    }
  if (!c->invalid.empty())
    return set_error(cudaErrorStreamCaptureInvalidated,
                     "cudaStreamEndCapture: the capture was invalidated: " + c->invalid);
  if (!unjoined.empty()) return set_error(cudaErrorStreamCaptureUnjoined, "cudaStreamEndCapture: " + unjoined);
  *graph = new CUgraph_st{std::move(c->nodes)};
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus* status) {
  return cudaStreamGetCaptureInfo(s, status);
}

cudaError_t cudaStreamGetCaptureInfo(cudaStream_t s, cudaStreamCaptureStatus* status,
                                     unsigned long long* id, cudaGraph_t* graph,
                                     const cudaGraphNode_t** deps, const cudaGraphEdgeData** edges,
                                     size_t* num_deps) {
  std::lock_guard<std::recursive_mutex> g(runtime_lock());
  Capture* c = capture_of(s);
  *status = !c ? cudaStreamCaptureStatusNone
               : c->invalid.empty() ? cudaStreamCaptureStatusActive : cudaStreamCaptureStatusInvalidated;
  if (id) *id = c ? c->id : 0;
  if (graph) *graph = nullptr;  // the graph under construction is not exposed here
  if (deps) *deps = nullptr;
  if (edges) *edges = nullptr;
  if (num_deps) *num_deps = 0;
  return cudaSuccess;
}

cudaError_t cudaThreadExchangeStreamCaptureMode(cudaStreamCaptureMode* mode) {
  std::swap(*mode, thread_mode);
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  if (!graph) return set_error(cudaErrorInvalidValue, "cudaGraphInstantiate: null graph");
  *exec = new CUgraphExec_st{
      std::make_shared<const std::vector<std::function<void()>>>(graph->nodes)};
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiateWithFlags(cudaGraphExec_t* exec, cudaGraph_t graph,
                                          unsigned long long flags) {
  return cudaGraphInstantiate(exec, graph, flags);
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
  if (!exec) return set_error(cudaErrorInvalidValue, "cudaGraphLaunch: null executable graph");
  auto nodes = exec->nodes;
  return enqueue(s, [nodes] {
    for (const auto& n : *nodes) n();
  });
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;  // launches still queued hold the work list
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}
