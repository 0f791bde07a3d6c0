"""CUDA graphs: record a sequence of GPU ops once, replay it with one launch (``alexnet_ext.cuda.Graph``).

A training step is a few hundred kernel launches, each costing ~10-20 us of Python and binding
work on the host; replaying a captured graph costs one launch. Usage::

    g = cuda.Graph()
    # warm-up: run the ops once eagerly, so that lazy set-up (cuBLAS handles, the deferred-check
    # table, cached blocks) happens outside the capture
    y = step(x_static)
    with g.capture():
        y = step(x_static)     # recorded, not run: y's values are not computed yet
    for batch in batches:
        cuda.copy(x_static, batch_on_gpu)   # new inputs into the captured buffers
        g.replay()                          # y now holds step(batch)

What a graph holds is fixed at capture: the kernels, their arguments (array addresses, shapes,
scalars such as a learning rate passed by value) and the order. Inputs change through the memory
the graph reads (copy into its buffers before a replay); anything that should vary per replay
must live in device memory the host rewrites (see ``Net.step_graph``).

Rules, as CUDA enforces them (the emulator of ``tools/cuda_emu`` enforces the same):

* the capture runs on a stream of the graph's own (ordered after the caller's work so far);
  :meth:`replay` queues the graph on the caller's current stream;
* nothing inside the capture may wait for the GPU or read a result on the host
  (``DeviceArray.get``, ``float(loss)``, :func:`synchronize`, ops returning host values), nor
  copy from host memory: the capture fails with :class:`GraphCaptureError` naming the call;
* arrays the captured ops allocate come from a memory pool private to this graph and stay valid
  across replays (each replay rewrites them); they are freed by :meth:`reset` (or when the
  graph is garbage collected) once no array refers to them;
* the captured ops' value checks (labels, max-pool switches) run at every replay and raise at
  the next synchronisation, as in eager mode.
"""
from __future__ import annotations

import contextlib

from . import cuda as C

__all__ = ["Graph", "GraphCaptureError"]

_MODES = ("global", "thread_local", "relaxed")


class GraphCaptureError(RuntimeError):
    """Something inside :meth:`Graph.capture` cannot be captured (the message says what)."""


def _capture_error(exc) -> GraphCaptureError:
    return GraphCaptureError(
        f"Graph.capture: {exc}. An op inside the capture did something a CUDA graph cannot hold "
        "(waited for the GPU, read a result on the host, copied from host memory, or set "
        "something up on first use): move it out of the capture, or run the ops once before "
        "capturing (warm-up)")


class Graph:
    """One CUDA graph on GPU ``device`` (default: the current one); see the module docstring."""

    def __init__(self, device: int | None = None):
        C._require()
        self.device = C._c.get_device() if device is None else C._device(device)
        self._g = C._c.Graph(self.device)
        self._stream = None
        self._capturing = False

    @property
    def captured(self) -> bool:
        return self._g.captured

    @property
    def num_checks(self) -> int:
        """Deferred value checks recorded by the capture (re-armed at each replay)."""
        return self._g.checks

    @contextlib.contextmanager
    def capture(self, *, mode: str = "global"):
        """Record the GPU work queued inside the block instead of running it.

        ``mode``: CUDA's stream capture mode. "global" (default) also refuses unsafe calls from
        other threads during the capture; "thread_local" only this thread's; "relaxed" none.
        """
        if mode not in _MODES:
            raise ValueError(f"mode: expected one of {', '.join(_MODES)}, got {mode!r}")
        if self._capturing:
            raise RuntimeError("Graph.capture: already capturing")
        if self._g.captured:
            raise RuntimeError("Graph.capture: the graph holds a capture already; reset() it first")
        if C._c.get_device() != self.device:
            raise ValueError(f"Graph.capture: the graph is for GPU {self.device}, the current "
                             f"GPU is {C._c.get_device()}")
        if self._stream is None:
            self._stream = C.Stream()
        ready = C.Event(self.device).record()  # the caller's work so far
        with self._stream:
            ready.wait()                       # before the capture: not part of the graph
            self._g.begin(self._stream.handle, mode)
            self._capturing = True
            try:
                yield self
            except BaseException as exc:
                self._capturing = False
                self._g.abort()                # no graph and no CUDA error left behind
                if isinstance(exc, C.CudaError) and "captur" in str(exc).lower():
                    raise _capture_error(exc) from exc
                raise
            self._capturing = False
            try:
                self._g.end()
            except C.CudaError as exc:
                raise _capture_error(exc) from exc

    def replay(self) -> None:
        """Queue the captured work on the current stream (the host does not wait)."""
        if self._capturing:
            raise RuntimeError("Graph.replay: inside its own capture")
        if not self._g.captured:
            raise RuntimeError("Graph.replay: nothing captured yet (use `with graph.capture():`)")
        self._g.replay(C._c.get_stream())

    def reset(self) -> None:
        """Free the graph and its memory pool; the Graph may capture again."""
        self._g.reset()

    def __del__(self):
        # the graph (and its pool) before the stream it was captured on
        with contextlib.suppress(Exception):
            self._g.reset()
            if self._stream is not None:
                self._stream.close()

    def __repr__(self) -> str:
        state = "captured" if self.captured else "empty"
        return f"Graph(device={self.device}, {state})"
