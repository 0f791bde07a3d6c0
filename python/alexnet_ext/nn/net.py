"""A network built from a :class:`~alexnet_ext.nn.spec.ModelSpec`: forward, backward, SGD.

Two formulations of the same model:

* merged (default): one layer per model-file layer, on one device. Columns are expressed by
  groups and by response norm staying within a column's block of maps.
* split columns (``split_columns=True``): every layer split into columns becomes one layer per
  column, holding its column's block of the weights, on ``devices[column]``. Where a layer reads
  another column (conv3, fc6, fc7, fc8 in AlexNet) it gets one weight block per input column
  and sums their contributions with the accumulate form; the other column's activations arrive
  through a :class:`~alexnet_ext.nn.layers.Transfer` layer (:func:`~alexnet_ext.nn.device.transfer`).

Each model layer's type builds its layers (:meth:`~alexnet_ext.nn.layers.Layer.build`) through
:meth:`Net.new_tensor`, :meth:`Net.add_layer`, :meth:`Net.declare_param` and
:meth:`Net.on_column`; this module knows no layer type by name.

Both hold the same canonical parameters (``conv1.weight`` of shape (F, C/groups, kh, kw),
``fc6.weight`` of shape (F, D), ``*.bias`` (F,)): :meth:`Net.state_dict` assembles them from the
blocks and :meth:`Net.load_state_dict` distributes them, so checkpoints and exported weights do
not depend on the formulation. Initialisation draws each canonical array from its own seed, so
both formulations also start from the same weights.
"""
from __future__ import annotations

import math
import zlib

import numpy as np

from .. import ops
from . import device as D
from .layers import Param, Tensor, Transfer
from .spec import DATA, ModelSpec

__all__ = ["Net", "StepContext", "derive_seed"]


def derive_seed(*parts) -> int:
    """A 32-bit seed from integers and strings (strings via CRC-32): stable across runs/platforms."""
    words = [zlib.crc32(p.encode()) if isinstance(p, str) else int(p) for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1)[0])


PRECISIONS = ("fp32", "tf32", "bf16")


def check_precision(precision, devices) -> str:
    """``precision`` if a net on ``devices`` can train in it, else a ValueError saying why."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "fp32" and not all(D.is_cuda(d) for d in devices):
        raise ValueError(f"precision={precision!r}: the tensor-core kernels and bfloat16 run on "
                         "the GPU only; the CPU kernels compute in fp32 (use precision='fp32')")
    return precision


class StepContext:
    """What one forward/backward pass needs besides the tensors."""

    def __init__(self, n, labels, train, step, seed, wait=True, precision="fp32"):
        self.n = n
        self.precision = precision  # of the convolutions (Net's precision argument)
        self.wait = wait
        self.labels = labels
        self.train = train
        self.step = step
        self.seed = seed
        self.loss = None
        # [dist] position of this batch's first sample in the global batch of a data-parallel
        # step (alexnet_ext.distributed); dropout draws the global batch's masks from there.
        self.sample_offset = 0
        # [graph] (table, {layer: index}) while a StepGraph captures: seeds read at run time
        self.seed_table = None

    def seed_for(self, layer_name: str):
        """Dropout seed of ``layer_name`` at this step: a function of (seed, step, layer). While
        a step is captured (nn/step_graph.py): ``(table, i)``, the element the host writes that
        value to before each replay."""
        if self.seed_table is not None:
            table, index = self.seed_table
            return table, index.setdefault(layer_name, len(index))
        return derive_seed(self.seed, self.step, layer_name)


class Net:
    """A model ready to run. See the module docstring for the two formulations.

    Args:
        spec: from :func:`alexnet_ext.nn.load_model`.
        split_columns: build one subgraph per column (only for models with ``columns > 1``).
        devices: device of each column (cycled when shorter than the column count).
        seed: initialisation seed (weights ~ N(0, init_std), biases = init_bias).
        fuse: run a layer and its only consumer as one layer where the layer's type fuses them
            (:meth:`~alexnet_ext.nn.layers.Layer.fuse`: conv + ReLU, response norm + max pool),
            and fold each ReLU's undo into the backward of the layers reading its output where
            they all can (:meth:`_fold_relus`). The results are the same bits; the intermediate
            tensor is then not kept (:meth:`output` computes it on demand). ``"auto"`` (default): on GPUs, where the fusion saves
            memory traffic; not on the CPU, where recomputing the normalised maps in the
            backward costs more than reading them (docs/PERF.md). True / False: always / never.
        precision: ``"fp32"`` (default), ``"tf32"`` or ``"bf16"``; the last two on GPUs only.
            tf32: the convolutions' three passes on the tensor cores with operands rounded to
            tf32 (10 mantissa bits) and fp32 accumulation, as PyTorch's ``allow_tf32``;
            parameters, activations and every other op stay fp32. bf16: every activation and
            its gradient is bfloat16 (each op computes in fp32 and rounds what it stores once),
            the convolutions and fc layers read bfloat16 copies of the weights (:attr:`Param.half`,
            written by each SGD step), while the parameters, their gradients and momenta, the
            class probabilities and the loss stay float32 (fp32 master weights).
    """

    def __init__(self, spec: ModelSpec, *, split_columns: bool = False, devices=("cpu",),
                 seed: int = 0, fuse="auto", precision: str = "fp32"):
        self.spec = spec
        self.split = bool(split_columns) and spec.columns > 1
        ncols = spec.columns if self.split else 1
        devices = list(devices) or ["cpu"]
        self.devices = [D.check_device(devices[c % len(devices)]) for c in range(ncols)]
        if len({D.is_cuda(d) for d in self.devices}) > 1:
            raise ValueError(f"devices {self.devices}: the columns of a net are either all on the "
                             "CPU or all on GPUs")
        self.precision = check_precision(precision, self.devices)
        self.labels = None
        self.sample_offset = 0    # [dist] see StepContext.sample_offset
        self._seed_table = None   # [graph] see StepContext.seed_table
        self.layers = []
        self.tensors: dict[str, Tensor] = {}
        self._transfers = {}
        self._canonical = {}          # canonical param name -> shape
        self._fused_away = {}         # tensor name -> the fused layer that skips it
        self._build()
        if D.fuses(self.devices[0], fuse):
            self._fuse()
            self._fold_relus()
        self.params: list[Param] = [p for layer in self.layers for p in layer.params]
        if self.precision == "bf16":
            self._to_bf16()
        self._params_by_device = {d: [p for p in self.params if p.device == d]
                                  for d in dict.fromkeys(self.devices)}
        self.init(seed)

    # ---- construction (each layer type builds its own layers: Layer.build) ------------------

    def new_tensor(self, name, shape, column) -> Tensor:
        t = Tensor(name, shape, column, self.devices[column])
        self.tensors[name] = t
        return t

    def add_layer(self, layer) -> None:
        self.layers.append(layer)

    def declare_param(self, name: str, shape: tuple) -> None:
        """A canonical parameter array (what state_dict holds) of the model."""
        self._canonical[name] = tuple(shape)

    def on_column(self, t: Tensor, column: int) -> Tensor:
        """``t`` as seen from ``column``: itself, or the output of a Transfer layer to it."""
        if t.column == column:
            return t
        key = (t.name, column)
        if key not in self._transfers:
            out = self.new_tensor(f"{t.name}->{column}", t.shape, column)
            self.add_layer(Transfer(f"transfer:{t.name}->{column}", [t], out))
            self._transfers[key] = out
        return self._transfers[key]

    def _build(self):
        # parts[name]: the tensors making up a model tensor, in column order (one if whole).
        parts = {DATA: [self.new_tensor(DATA, self.spec.shapes[DATA], 0)]}
        self.data = parts[DATA][0]
        for L in self.spec.layers:
            parts[L.name] = L.layer_type.build(L, self, parts)
        self.cost = self.layers[-1]
        self._parts = parts
        # Backward must produce a tensor's gradient when some parameter lies upstream of it.
        for layer in self.layers:
            layer.output.needs_grad = bool(layer.params) or any(t.needs_grad for t in layer.inputs)

    def _fuse(self):
        """Replace each layer whose output has exactly one reader by the layer its type fuses
        the pair into, if any. The fused layer takes the producer's place: its input is ready
        there, and every reader of its output comes after the consumer's place, so the forward
        order and (reversed) the backward order stay valid."""
        readers = {}
        for layer in self.layers:
            for t in layer.inputs:
                readers.setdefault(t.name, []).append(layer)
        gone, layers = set(), []
        for layer in self.layers:
            if id(layer) in gone:
                continue
            users = readers.get(layer.output.name, [])
            fused = layer.fuse(users[0]) if len(users) == 1 and users[0] is not self.cost else None
            if fused is None:
                layers.append(layer)
                continue
            fused.output.needs_grad = users[0].output.needs_grad
            gone.add(id(users[0]))
            self._fused_away[layer.output.name] = fused
            layers.append(fused)
        self.layers = layers

    def _fold_relus(self):
        """Mark each ReLU output whose readers all fold the ReLU's undo into their backward
        (:meth:`~alexnet_ext.nn.layers.Layer.folds_relu`): the readers then write the gradient
        of the ReLU's input, and the ReLU's own undo (a pass over the gradient and the output)
        disappears."""
        readers = {}
        for layer in self.layers:
            for t in layer.inputs:
                readers.setdefault(t.name, []).append(layer)
        for layer in self.layers:
            relu_out = layer.kind == "relu" or getattr(layer, "relu", False)
            users = readers.get(layer.output.name, [])
            if relu_out and users and all(u.folds_relu(layer.output) for u in users):
                layer.output.relu_folded = True

    def _to_bf16(self):
        """A bf16 net: bfloat16 activations and gradients (the probabilities stay float32)
        and a bfloat16 copy of each weight beside its float32 master."""
        from .. import cuda as C
        for t in self.tensors.values():
            if t is not self.cost.output:
                t.dtype = np.dtype(C.bfloat16)
        for p in self.params:
            if p.decay:                     # weights; the biases are read in float32
                p.half = D.empty(p.shape, p.device, C.bfloat16)

    # ---- parameters --------------------------------------------------------------------------

    @property
    def param_shapes(self) -> dict:
        """Canonical parameter names and shapes, in layer order."""
        return dict(self._canonical)

    @property
    def num_params(self) -> int:
        return sum(math.prod(s) for s in self._canonical.values())

    def init(self, seed: int) -> None:
        """Weights ~ N(0, init_std), biases = init_bias, velocities 0. Each canonical array is
        drawn from its own generator (seed, name), so the formulation does not matter."""
        values = {}
        for layer in self.layers:
            for p in layer.params:
                if p.name in values:
                    continue
                shape = self._canonical[p.name]
                if p.name.endswith(".bias"):
                    values[p.name] = np.full(shape, layer.init_bias, dtype=np.float32)
                else:
                    rng = np.random.default_rng([seed, zlib.crc32(p.name.encode())])
                    w = rng.standard_normal(shape, dtype=np.float32)
                    w *= np.float32(layer.init_std)
                    values[p.name] = w
        self.load_state_dict(values)
        for p in self.params:
            D.fill_zero(p.velocity)

    def state_dict(self, kind: str = "value", names=None) -> dict:
        """Canonical arrays (host copies) of ``kind``: "value", "velocity" or "grad".

        ``names``: only these parameters (default: all).
        """
        if names is not None:
            unknown = [n for n in names if n not in self._canonical]
            if unknown:
                raise ValueError(f"names: no parameter {', '.join(unknown)} in model "
                                 f"'{self.spec.name}'")
        wanted = self._canonical if names is None else {n: self._canonical[n] for n in names}
        out = {name: np.empty(shape, np.float32) for name, shape in wanted.items()}
        for p in self.params:
            if p.name in out:
                out[p.name][p.index] = D.to_host(getattr(p, kind))
        return out

    def load_state_dict(self, arrays: dict, kind: str = "value", strict: bool = True) -> None:
        """Set ``kind`` ("value" or "velocity") from canonical arrays (names and shapes must match)."""
        missing = [n for n in self._canonical if n not in arrays]
        unexpected = [n for n in arrays if n not in self._canonical]
        if strict and (missing or unexpected):
            raise ValueError(f"parameters do not match the model '{self.spec.name}': "
                             + (f"missing {', '.join(missing)}" if missing else "")
                             + ("; " if missing and unexpected else "")
                             + (f"unexpected {', '.join(unexpected)}" if unexpected else ""))
        for name, shape in self._canonical.items():
            if name in arrays and tuple(np.shape(arrays[name])) != tuple(shape):
                raise ValueError(f"{name}: expected shape {tuple(shape)}, got "
                                 f"{tuple(np.shape(arrays[name]))}")
        for p in self.params:
            if p.name in arrays:
                block = np.asarray(arrays[p.name], dtype=np.float32)[p.index]
                D.copy_into(getattr(p, kind), np.ascontiguousarray(block))
                if kind == "value":
                    p.refresh_half()

    # ---- running -----------------------------------------------------------------------------

    def forward(self, x: np.ndarray, labels: np.ndarray | None = None, *, train: bool = False,
                step: int = 0, seed: int = 0, until: str | None = None, wait: bool = True):
        """Run the net on a batch ``x`` (N, C, H, W) float32 (or, for a bf16 net on the GPU,
        bfloat16; a float32 batch is rounded to it there).

        With ``labels`` (N,) int64 the cost runs too and the mean loss is returned (``probs``
        holds the softmax output); without, the pass stops before the cost (returns None).
        ``train`` turns dropout on (seeded by ``seed``, ``step`` and the layer name). ``until``
        stops after the model tensor of that name (see :meth:`output`).

        On a GPU net, ``x`` and ``labels`` may be NumPy arrays (copied to the first column's
        and the cost's device) or DeviceArrays already there; :attr:`labels` holds the labels
        where the cost runs (for :func:`~alexnet_ext.ops.top_k_errors` on :attr:`probs`).
        ``wait=False`` on a GPU net returns a :class:`~alexnet_ext.ops.softmax_log_loss.PendingLoss`
        instead of a float, so the host queues the whole step without waiting for the GPU;
        ``float()`` of it reads the loss (after ``backward`` and ``update``, say).
        """
        if tuple(x.shape[1:]) != self.data.shape:
            raise ValueError(f"x: expected images of shape (N, {', '.join(map(str, self.data.shape))})"
                             f", got {tuple(x.shape)}")
        n = x.shape[0]
        if labels is not None and tuple(labels.shape) != (n,):
            raise ValueError(f"labels: expected shape ({n},), got {tuple(labels.shape)}")
        if isinstance(x, np.ndarray):
            x = D.from_host(x, self.data.device)
        if x.dtype != self.data.dtype:
            x = ops.cast(x, self.data.dtype, out=self.data.buffer("value", n))
        if isinstance(labels, np.ndarray):
            labels = D.from_host(labels, self.cost.output.device)
        self.labels = labels
        self._ctx = ctx = StepContext(n, labels, train, step, seed, wait, self.precision)
        ctx.sample_offset = self.sample_offset  # [dist]
        ctx.seed_table = self._seed_table       # [graph]
        self.data.value = x
        stop = None
        if until is not None:
            if until not in self._parts:
                raise ValueError(f"until: no tensor {until!r} in model '{self.spec.name}'")
            stop = {t.name for t in self._parts[until]}
        for layer in self.layers:
            if layer is self.cost and labels is None:
                break
            parts = getattr(layer, "parts", ())
            if stop is not None and any(p.output.name in stop for p in parts):
                steps = parts        # asked for a fused-away tensor: run the pair unfused
            else:
                steps = (layer,)
            for step_layer in steps:
                step_layer.forward(ctx)
                if stop is not None:
                    stop.discard(step_layer.output.name)
                    if not stop:
                        break
            if stop is not None and not stop:
                break
        return ctx.loss

    @property
    def probs(self):
        """Softmax output (N, classes) of the last forward pass with labels (on the cost's
        device: a NumPy array or a DeviceArray)."""
        return self.cost.probs

    def output(self, name: str) -> np.ndarray:
        """The last forward pass's value of model tensor ``name``, columns concatenated
        (float32: a bf16 net's values widened exactly)."""
        if name not in self._parts:
            raise ValueError(f"no tensor {name!r} in model '{self.spec.name}'")
        for t in self._parts[name]:
            if t.value is None and t.name in self._fused_away and getattr(self, "_ctx", None):
                # skipped by a fused layer: computed now by the first layer of the pair, from
                # its input (kept), as the unfused net would have
                self._fused_away[t.name].parts[0].forward(self._ctx)
        vals = [D.to_host(t.value).astype(np.float32, copy=False) for t in self._parts[name]]
        return vals[0] if len(vals) == 1 else np.concatenate(vals, axis=1)

    def backward(self, on_grads=None) -> None:
        """Gradients of the last training forward pass's mean loss w.r.t. every parameter.

        ``on_grads``: called as ``on_grads(params)`` right after each layer with parameters has
        run its backward, with that layer's :class:`Param` blocks, whose gradients are then final
        (every block is written once per step); data parallelism starts reducing them there.
        """
        ctx = self._ctx
        if ctx.labels is None or ctx.loss is None:
            raise RuntimeError("backward needs a forward pass with labels first")
        for t in self.tensors.values():
            t.grad_ready = False
        for layer in reversed(self.layers):
            if layer.needs_backward:
                layer.backward(ctx)
                if on_grads is not None and layer.params:  # [dist]
                    on_grads(layer.params)

    def update(self, *, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4,
               bias_decay: float = 0.0) -> None:
        """One SGD step on every parameter block, as the paper's equation:
        ``v <- momentum v - decay lr w - lr grad; w <- w + v`` (biases use ``bias_decay``). In a
        bf16 net the same kernel writes each weight's bfloat16 copy for the next step."""
        # One sgd_update_many per device: on a GPU, one launch per 32 tensors.
        for ps in self._params_by_device.values():
            halves = [p.half for p in ps]
            ops.sgd_update_many([p.value for p in ps], [p.grad for p in ps],
                                [p.velocity for p in ps], lr=lr, momentum=momentum,
                                weight_decay=[weight_decay if p.decay else bias_decay for p in ps],
                                copies_bf16=halves if any(h is not None for h in halves) else None)

    def step_graph(self, x_shape, labels_dtype=np.int64):
        """A :class:`~alexnet_ext.nn.step_graph.StepGraph`: forward (train) + backward + update
        for batches of ``x_shape``, replayed as one CUDA graph (single-GPU nets)."""
        from .step_graph import StepGraph
        return StepGraph(self, x_shape, labels_dtype)

    def release_buffers(self) -> None:
        """Free every kept activation/gradient buffer (they are made again on demand)."""
        for t in self.tensors.values():
            t.release()

    def __repr__(self):
        mode = f"split into {len(self.devices)} columns" if self.split else "merged"
        return (f"Net({self.spec.name!r}, {mode}, {len(self.layers)} layers, "
                f"{self.num_params:,} parameters)")
