"""Tensors, parameters and the layer base class; the registry of layer types.

A layer type is one :class:`Layer` subclass registered with :func:`register`. The class holds
everything about its type, in the order a model goes through them:

* ``type`` and ``keys`` -- its name in model files and the schema of its table
  (:mod:`alexnet_ext.nn.schema`); ``weighted``, ``one_input``, ``is_cost`` ... -- what the
  validation of the graph needs to know;
* :meth:`Layer.infer` and :meth:`Layer.layout` (class methods) -- output shape, parameters,
  FLOPs and column layout of a :class:`~alexnet_ext.nn.spec.LayerSpec`;
* :meth:`Layer.saved_bytes` -- what a training step keeps per image besides values/gradients
  (for the memory estimate of :meth:`~alexnet_ext.nn.spec.ModelSpec.memory`);
* :meth:`Layer.build` (class method) -- the merged or per-column layers of a
  :class:`~alexnet_ext.nn.net.Net`;
* :meth:`Layer.fuse` -- one layer doing this one and its only consumer (response norm + max
  pool), which the net runs instead of the pair;
* ``forward(ctx)`` / ``backward(ctx)`` -- the computation, one op call each way.

The defaults suit a layer that maps one input to an output laid out like it (ReLU): a new type
overrides only what differs. Buffers are kept per batch size, so a training step allocates only
what the ops themselves return.
"""
from __future__ import annotations

import numpy as np

from .. import device as D

__all__ = ["LAYER_TYPES", "register", "Tensor", "Param", "Layer", "Transfer", "emit_grad",
           "need_maps"]

LAYER_TYPES: dict[str, type] = {}      # model-file type name -> Layer subclass, in registration order


def register(cls):
    """Class decorator: ``cls`` handles the model-file layers of ``type = cls.type``."""
    if cls.type in LAYER_TYPES:
        raise ValueError(f"layer type {cls.type!r} is registered twice")
    LAYER_TYPES[cls.type] = cls
    return cls


class Tensor:
    """A named activation: per-image ``shape``, the column and device holding it.

    ``value``/``grad`` point at the arrays of the current step (batch first). ``needs_grad``:
    some parameter lies upstream, so backward must produce this tensor's gradient. ``dtype``:
    of its value and gradient (float32; bfloat16 in a bf16 net). ``relu_folded``: the tensor is
    a ReLU's output and every layer reading it folds the ReLU's undo into its own backward, so
    the gradient they leave in ``grad`` is already the gradient of the ReLU's input (set by
    :meth:`~alexnet_ext.nn.net.Net._fold_relus`).
    """

    def __init__(self, name: str, shape: tuple, column: int, device: str):
        self.name, self.shape, self.column, self.device = name, tuple(shape), column, device
        self.value = self.grad = self.producer = None
        self.grad_ready = self.needs_grad = self.relu_folded = False
        self.dtype = np.dtype(np.float32)
        self._buffers = {}

    def buffer(self, kind: str, n: int, dtype=None) -> np.ndarray:
        """A kept (n, *shape) array for ``kind`` ("value", "grad", "scratch", ...) of ``dtype``
        (default: the tensor's): allocated once."""
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        key = (kind, n, dtype)
        b = self._buffers.get(key)
        if b is None:
            b = self._buffers[key] = D.empty((n,) + self.shape, self.device, dtype)
        return b

    def release(self) -> None:
        self._buffers.clear()
        self.value = self.grad = None

    def __repr__(self):
        return f"Tensor({self.name!r}, {self.shape}, column={self.column}, {self.device})"


def emit_grad(t: Tensor, n: int, write, add=None) -> None:
    """Give tensor ``t`` one gradient contribution: the first of a step writes, later ones add.

    ``write(out)`` computes the contribution into ``out`` and returns it (or a new array, for
    ops without ``out=``). A later contribution is ``add(t.grad)`` where the op has an
    accumulate form (``scale_targets=1``), else ``write`` into scratch and
    :func:`~alexnet_ext.nn.device.add_into`. The one place that rule lives. A bfloat16 gradient
    always takes the second way: each contribution is rounded once, then their sum once.
    """
    if t.dtype != np.float32:
        add = None
    if not t.grad_ready:
        t.grad = write(t.buffer("grad", n))
        t.grad_ready = True
    elif add is not None:
        add(t.grad)
    else:
        D.add_into(t.grad, write(t.buffer("scratch", n)))


class Param:
    """A block of one canonical parameter array, held by one layer on one device.

    ``name`` is the canonical name (``conv3.weight``); ``index`` selects this block from the
    canonical array (a tuple of slices). A layer split into columns holds several blocks of the
    same canonical array; merged, a block is usually the whole array.
    """

    def __init__(self, name: str, index: tuple, shape: tuple, device: str, decay: bool):
        self.name, self.index, self.shape = name, index, tuple(shape)
        self.device, self.decay = device, decay
        self.value = D.zeros(shape, device)
        self.grad = D.zeros(shape, device)
        self.velocity = D.zeros(shape, device)
        self.half = None    # a bf16 net's bfloat16 copy of a weight (Net._to_bf16)

    @property
    def operand(self):
        """What the ops read: the bfloat16 copy in a bf16 net (written by every SGD step and
        by loading weights), else the float32 master."""
        return self.value if self.half is None else self.half

    def refresh_half(self) -> None:
        """The bfloat16 copy from the master (round to nearest even), after loading weights."""
        if self.half is not None:
            from ... import ops
            ops.cast(self.value, self.half.dtype, out=self.half)

    def __repr__(self):
        return f"Param({self.name!r}{list(self.index)}, {self.shape})"


def need_maps(L, fail, why: str) -> None:
    """Every input of model layer ``L`` must be (C, H, W) maps; ``why`` completes the error."""
    for i, s in zip(L.inputs, L.in_shapes):
        if len(s) != 3:
            fail(f"input '{i}' has shape {s}: {why}")


class Layer:
    """Base class: ``forward(ctx)`` sets ``output.value``; ``backward(ctx)`` reads ``output.grad``."""

    kind = "layer"
    # ---- what model files and their validation know of the type (see the module docstring)
    type: str | None = None       # the model-file name; None: no model-file type (Transfer)
    keys: dict = {}               # the schema of its [layers.NAME] table
    weighted = False              # holds weights: its outputs may be split into columns
    one_input = True              # reads exactly one tensor
    is_cost = False               # the loss layer (one per model, the graph's output)
    identity_at_test = False      # passes its input through unchanged at test time
    kernels_are_images = False    # its weights are image filters (plots of the first layer's)

    def __init__(self, name: str, inputs: list[Tensor], output: Tensor):
        self.name = name
        self.inputs = list(inputs)
        self.output = output
        self.params: list[Param] = []
        output.producer = self

    # ---- model files -------------------------------------------------------------------------

    @classmethod
    def infer(cls, L, spec, fail) -> None:
        """Set ``L.out_shape`` (and ``L.params``, ``L.flops``) from ``L.in_shapes`` and
        ``L.attrs``; ``fail(reason)`` raises the model error. Default: the input's shape."""
        L.out_shape = L.in_shapes[0]

    @classmethod
    def layout(cls, L, spec, in_blocks, fail) -> None:
        """Set ``L.blocks`` and ``L.column``. Default: laid out like the input."""
        L.blocks = in_blocks[0]
        L.column = spec.column_of(L.inputs[0])
        if L.blocks > 1 and L.out_shape[0] % L.blocks:
            fail(f"{L.out_shape[0]} channels do not split into {L.blocks} columns")

    @classmethod
    def saved_bytes(cls, L) -> int:
        """Bytes per image a training step keeps besides the output's value and gradient."""
        return 0

    # ---- nets --------------------------------------------------------------------------------

    @classmethod
    def build(cls, L, net, parts) -> list[Tensor]:
        """Add the layers of model layer ``L`` to ``net`` (a :class:`~alexnet_ext.nn.net.Net`
        under construction); ``parts[name]`` are the tensors making up model tensor ``name``, one
        per column block (one when whole). Returns ``L``'s parts.

        Default: one layer per block of the input, on that block's column.
        """
        srcs = parts[L.inputs[0]]
        outs = []
        for c, src in enumerate(srcs):
            name = f"{L.name}@{c}" if len(srcs) > 1 else L.name
            out = net.new_tensor(name, (src.shape[0],) + tuple(L.out_shape[1:]), src.column)
            net.add_layer(cls.from_spec(L, name, src, out, c, len(srcs)))
            outs.append(out)
        return outs

    @classmethod
    def from_spec(cls, L, name, src, out, part: int, parts: int):
        """The layer for block ``part`` of ``parts`` of the input (see :meth:`build`)."""
        return cls(name, [src], out)

    @classmethod
    def fuses_with(cls, reader) -> bool:
        """Whether :meth:`fuse` takes model layer ``reader`` (a
        :class:`~alexnet_ext.nn.spec.LayerSpec`), the only reader of this type's output: the
        model-level view of the net's fusion (:meth:`~alexnet_ext.nn.spec.ModelSpec.memory`).
        Default: never."""
        return False

    def fuse(self, consumer: "Layer") -> "Layer | None":
        """One layer doing this layer and ``consumer``, the only layer that reads its output, or
        None (the default: no fusion). The net builder calls it once the graph is built; the
        fused layer keeps the pair in ``parts`` (see :class:`~.lrn.LRNMaxPool`)."""
        return None

    # ---- running -----------------------------------------------------------------------------

    def folds_relu(self, t: Tensor) -> bool:
        """Whether this layer's backward can multiply the gradient it writes into input ``t``
        by ``t.value > 0`` (the undo of the ReLU that produced ``t``) in the same kernel; it
        does so when ``t.relu_folded``. Default: no."""
        return False

    @property
    def needs_backward(self) -> bool:
        return bool(self.params) or any(t.needs_grad for t in self.inputs)

    def forward(self, ctx) -> None:
        raise NotImplementedError

    def backward(self, ctx) -> None:
        raise NotImplementedError

    def __repr__(self):
        return (f"{type(self).__name__}({self.name!r}: {', '.join(t.name for t in self.inputs)}"
                f" -> {self.output.name})")


class Transfer(Layer):
    """A copy of a tensor onto another column's device (:func:`alexnet_ext.nn.device.transfer`).

    Backward sends the gradient back to the source column. Made by the net where a layer reads
    another column's tensor; not a model-file type.
    """

    kind = "transfer"

    def forward(self, ctx):
        src = self.inputs[0]
        self.output.value = D.transfer(src.value, src.device, self.output.device,
                                       out=self.output.buffer("value", ctx.n))

    def backward(self, ctx):
        src, gy = self.inputs[0], self.output.grad
        emit_grad(src, ctx.n, lambda out: D.transfer(gy, self.output.device, src.device, out=out))
