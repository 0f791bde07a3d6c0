"""A whole training step (forward with dropout, backward, SGD update) as one CUDA graph.

:meth:`Net.step_graph` returns a :class:`StepGraph` for one batch shape. ``run`` has the effect of
``net.forward(x, y, train=True, step=, seed=, wait=False); net.backward(); net.update(lr=...)``
and returns the same :class:`~alexnet_ext.ops.softmax_log_loss.PendingLoss`, with the same bits
(weights, velocities, loss, dropout masks), but after the first calls it queues the step as one
graph launch instead of a few hundred kernel launches from Python:

* call 1 runs eagerly (the warm-up: buffers, cuBLAS handles and the like are set up outside any
  capture); call 2 captures the step and replays it; later calls replay;
* the batch is copied (on the GPU, or from the host through pinned memory) into static input
  and label buffers the graph reads;
* what varies per step is not baked in: the dropout seeds, a function of (run seed, step, layer)
  (:meth:`StepContext.seed_for`), are computed on the host and written to a small int64 table
  before each replay; the dropout kernels read their seed from it when they run
  (``ops.dropout(seed=(table, i))``). The SGD hyper-parameters are kernel arguments: a change
  (the learning-rate schedule) re-captures the step, once per change;
* the value checks of the captured ops (labels, max-pool switches) run at every replay and raise
  at the next synchronisation (the loss read), as in eager mode.

One GPU only (a net split over several GPUs, or data parallelism, runs eagerly). Keep the net's
buffers while the graph lives: ``Net.release_buffers`` or a batch of another shape through
the same net invalidates nothing by itself, but the graph goes on writing the buffers it captured;
call :meth:`StepGraph.reset` after such changes.
"""
from __future__ import annotations

import numpy as np

from .. import cuda as C
from .. import ops
from . import device as D
from .net import derive_seed

__all__ = ["StepGraph"]


class StepGraph:
    """See the module docstring. ``x_shape``: (N, C, H, W) of the batches; ``labels_dtype``:
    int32 or int64, the labels' dtype."""

    def __init__(self, net, x_shape, labels_dtype=np.int64):
        devices = set(net.devices)
        if len(devices) != 1 or not D.is_cuda(next(iter(devices))):
            raise ValueError(f"step_graph: needs a net on one GPU, this one is on {net.devices}")
        x_shape = tuple(int(s) for s in x_shape)
        if len(x_shape) != 4 or x_shape[1:] != tuple(net.data.shape) or x_shape[0] < 1:
            raise ValueError(f"x_shape: expected (N, {', '.join(map(str, net.data.shape))}) with "
                             f"N >= 1, got {x_shape}")
        labels_dtype = np.dtype(labels_dtype)
        if labels_dtype not in (np.int32, np.int64):
            raise TypeError(f"labels_dtype: expected int32 or int64, got {labels_dtype}")
        self.net = net
        self.device = D.gpu_index(net.devices[0])
        self.x_shape = x_shape
        self.x = C.empty(x_shape, net.data.dtype, device=self.device)   # bfloat16 in a bf16 net
        self.labels = C.empty((x_shape[0],), labels_dtype, device=self.device)
        # one seed per dropout layer (split columns share their model layer's): at most one per layer
        self.seeds = C.zeros((max(len(net.layers), 1),), np.int64, device=self.device)
        self.seed_index: dict[str, int] = {}
        self.graph = C.Graph(self.device)
        self.replays = 0
        self._warm = False
        self._key = None
        self._loss = None

    def run(self, x, labels, *, step: int, seed: int, lr: float, momentum: float = 0.9,
            weight_decay: float = 5e-4, bias_decay: float = 0.0):
        """One training step on batch ``(x, labels)`` (NumPy arrays or DeviceArrays of the
        captured shape and dtypes); returns the step's PendingLoss."""
        if tuple(x.shape) != self.x_shape:
            raise ValueError(f"x: the step was captured for shape {self.x_shape}, got {tuple(x.shape)}")
        if tuple(labels.shape) != (self.x_shape[0],) or labels.dtype != self.labels.dtype:
            raise ValueError(f"labels: expected shape ({self.x_shape[0]},) and dtype "
                             f"{self.labels.dtype}, got {tuple(labels.shape)} {labels.dtype}")
        net = self.net
        hyper = dict(lr=float(lr), momentum=float(momentum), weight_decay=float(weight_decay),
                     bias_decay=float(bias_decay))
        if x.dtype == self.x.dtype:
            C.copy(self.x, x)          # device to device, or staged from the host
        else:                          # a float32 batch for a bf16 net: rounded on the GPU
            ops.cast(x if isinstance(x, C.DeviceArray) else C.to_device(x, device=self.device),
                     self.x.dtype, out=self.x)
        C.copy(self.labels, labels)
        if not self._warm:             # warm-up: the first step runs eagerly
            self._warm = True
            loss = net.forward(self.x, self.labels, train=True, step=step, seed=seed, wait=False)
            net.backward()
            net.update(**hyper)
            return loss
        key = tuple(sorted(hyper.items()))
        if key != self._key:
            self._capture(hyper, step, seed)
            self._key = key
        table = np.zeros(self.seeds.shape, np.int64)
        for name, i in self.seed_index.items():
            table[i] = derive_seed(seed, step, name)   # StepContext.seed_for's value
        C.copy(self.seeds, table)
        self.graph.replay()
        self.replays += 1
        # what an eager pass (evaluation, say) pointed elsewhere: the replay's results
        net.labels, net.cost.probs = self.labels, self._probs
        return self._loss

    def _capture(self, hyper, step, seed) -> None:
        net = self.net
        self.graph.reset()
        self.seed_index = {}
        net._seed_table = (self.seeds, self.seed_index)
        try:
            with self.graph.capture():
                loss = net.forward(self.x, self.labels, train=True, step=step, seed=seed, wait=False)
                net.backward()
                net.update(**hyper)
        finally:
            net._seed_table = None
        self._loss, self._probs = loss, net.probs

    def reset(self) -> None:
        """Drop the captured graph: the next run captures again (after its warm-up)."""
        self.graph.reset()
        self._key = None
        self._warm = False
