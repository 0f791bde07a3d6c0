// Deferred value checks (cuda/report.h): a per-device table of DeferredRecords in device memory,
// handed out in order, one per op; the host keeps, per slot, the stream it was queued on and how to
// word its error. Nothing here waits except collect_deferred (and defer_check when the table is
// full). Records are cleared by memsets queued before their op on the op's stream, so a slot is
// reusable as soon as the host has read it. Checks captured into a CUDA graph keep their own
// records (report.h: GraphChecks) and become pending again at each launch.
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/report.h"

namespace alexnet_ext::cuda {
namespace {

template <class T>
__global__ void capture_kernel(DeferredRecord* r, const T* base) {
  if (r->bad.count) r->value = static_cast<long long>(base[r->bad.first]);
}

struct Pending {
  cudaStream_t stream;
  DeferredRecord* record;  // a slot of the table, or a graph's record (report.h: GraphChecks)
  DeferredFormat format;
};

struct Table {
  DeferredRecord* slots = nullptr;  // kDeferredSlots records, allocated on first use, kept
  size_t used = 0;                  // slots handed out since the last collect
  std::vector<Pending> pending;
  std::string kept;                 // a verdict read early because the table was full
};

std::map<cudaStream_t, GraphChecks*> attached;  // capturing stream -> its graph's checks

std::mutex table_mutex;
std::vector<Table>& tables() {
  static std::vector<Table> t;
  return t;
}

Table& table(int device) {
  auto& t = tables();
  if (device < 0) throw std::runtime_error("deferred check: bad device");
  if (static_cast<size_t>(device) >= t.size()) t.resize(device + 1);
  return t[device];
}

// Reads and clears t's pending slots (caller holds the mutex, device is current).
std::string collect_locked(Table& t) {
  std::string msg = std::move(t.kept);
  t.kept.clear();
  const size_t n = t.pending.size();
  if (n == 0) return msg;
  std::vector<DeferredRecord> host(n);
  std::vector<cudaStream_t> streams;
  for (size_t i = 0; i < n; ++i) {
    check(cudaMemcpyAsync(&host[i], t.pending[i].record, sizeof(DeferredRecord), cudaMemcpyDeviceToHost,
                          t.pending[i].stream), "deferred check: cudaMemcpyAsync");
    bool seen = false;
    for (auto s : streams) seen = seen || s == t.pending[i].stream;
    if (!seen) streams.push_back(t.pending[i].stream);
  }
  for (auto s : streams) check(cudaStreamSynchronize(s), "deferred check: cudaStreamSynchronize");
  for (size_t i = 0; i < n && msg.empty(); ++i)
    if (host[i].bad.count) msg = t.pending[i].format(host[i]);
  t.pending.clear();
  t.used = 0;
  return msg;
}

template <class T>
void capture_impl(DeferredRecord* r, const T* base, cudaStream_t stream) {
  launch(capture_kernel<T>, 1, 1, stream, r, base);
  check_launch("deferred check (capture)");
}

// Clears a record before its op: first = all ones, count = value = 0, queued on the op's stream.
void clear_record(DeferredRecord* r, cudaStream_t stream) {
  check(cudaMemsetAsync(&r->bad.first, 0xFF, sizeof(r->bad.first), stream), "cudaMemsetAsync");
  check(cudaMemsetAsync(&r->bad.count, 0, sizeof(r->bad.count) + sizeof(r->value), stream),
        "cudaMemsetAsync");
}

}  // namespace

DeferredRecord* defer_check(int device, cudaStream_t stream, DeferredFormat format) {
  std::lock_guard<std::mutex> lock(table_mutex);
  if (auto it = attached.find(stream); it != attached.end()) {
    auto* r = static_cast<DeferredRecord*>(device_alloc(sizeof(DeferredRecord), device, stream));
    clear_record(r, stream);
    it->second->checks.emplace_back(r, std::move(format));
    return r;
  }
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  check(cudaStreamIsCapturing(stream, &capturing), "cudaStreamIsCapturing");
  if (capturing != cudaStreamCaptureStatusNone)
    throw CudaError("a deferred value check inside a stream capture that alexnet_ext.cuda.Graph "
                    "did not start: its verdict would never be read (capture with cuda.Graph)");
  Table& t = table(device);
  if (!t.slots) {
    void* p = nullptr;
    check(cudaMalloc(&p, sizeof(DeferredRecord) * kDeferredSlots), "deferred check: cudaMalloc");
    t.slots = static_cast<DeferredRecord*>(p);
  }
  if (t.used == static_cast<size_t>(kDeferredSlots)) {
    std::string m = collect_locked(t);  // full: the one wait (kept for the next collect)
    t.kept = std::move(m);
  }
  DeferredRecord* r = t.slots + t.used++;
  clear_record(r, stream);
  t.pending.push_back({stream, r, std::move(format)});
  return r;
}

void attach_graph_checks(cudaStream_t stream, GraphChecks* checks) {
  std::lock_guard<std::mutex> lock(table_mutex);
  if (checks)
    attached[stream] = checks;
  else
    attached.erase(stream);
}

// If a record of `g` from an earlier launch is still pending, reads the table now (the verdict
// is kept for the next collect). Caller holds the mutex.
static void collect_if_pending(Table& t, const GraphChecks& g) {
  bool pending = false;
  for (const auto& p : t.pending)
    for (const auto& c : g.checks) pending = pending || p.record == c.first;
  if (!pending) return;
  DeviceScope scope(g.device);
  t.kept = collect_locked(t);
}

void arm_graph_checks(const GraphChecks& g, cudaStream_t stream) {
  if (g.checks.empty()) return;
  std::lock_guard<std::mutex> lock(table_mutex);
  Table& t = table(g.device);
  collect_if_pending(t, g);  // the new launch clears the records
  for (const auto& [record, format] : g.checks) t.pending.push_back({stream, record, format});
}

void free_graph_checks(GraphChecks& g) {
  if (g.checks.empty()) return;
  {
    std::lock_guard<std::mutex> lock(table_mutex);
    collect_if_pending(table(g.device), g);  // the records go: read their last verdicts first
  }
  for (auto& c : g.checks) device_free(c.first);
  g.checks.clear();
}

void capture_bad_value(DeferredRecord* record, const int32_t* base, cudaStream_t stream) {
  capture_impl(record, base, stream);
}
void capture_bad_value(DeferredRecord* record, const int64_t* base, cudaStream_t stream) {
  capture_impl(record, base, stream);
}

std::string collect_deferred(int device) {
  std::lock_guard<std::mutex> lock(table_mutex);
  if (device < 0 || static_cast<size_t>(device) >= tables().size()) return "";
  Table& t = tables()[device];
  if (t.pending.empty() && t.kept.empty()) return "";
  DeviceScope scope(device);
  return collect_locked(t);
}

int deferred_pending(int device) {
  std::lock_guard<std::mutex> lock(table_mutex);
  if (device < 0 || static_cast<size_t>(device) >= tables().size()) return 0;
  return static_cast<int>(tables()[device].pending.size());
}

}  // namespace alexnet_ext::cuda
