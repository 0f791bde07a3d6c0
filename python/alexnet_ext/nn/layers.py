"""The layers of a :class:`~alexnet_ext.nn.net.Net`: forward and backward over named tensors.

A layer reads input :class:`Tensor` objects and writes one output tensor; it owns its
:class:`Param` blocks (value, gradient, velocity). Every computation is a call into
:mod:`alexnet_ext.ops`. Buffers are kept per batch size, so a training step allocates only what
the ops themselves return.

Gradients: a tensor read by several layers receives a gradient from each. The first writer of a
step writes, later ones add: through the ops' accumulate form (``scale_targets=1``) where the op
has one (img_acts), else into a scratch buffer followed by :func:`~alexnet_ext.nn.device.add_into`.
Layers with several weighted inputs (conv3 and fc6 reading both columns, or a model file's
``input = [a, b]``) sum their inputs' contributions the same way, one weight block per input.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from . import device as D

__all__ = ["Tensor", "Param", "Layer", "Conv", "FC", "ReLU", "LRN", "Pool", "Dropout",
           "Softmax", "Transfer"]


class Tensor:
    """A named activation: per-image ``shape``, the column and device holding it.

    ``value``/``grad`` point at the arrays of the current step (batch first). ``needs_grad``:
    some parameter lies upstream, so backward must produce this tensor's gradient.
    """

    def __init__(self, name: str, shape: tuple, column: int, device: str):
        self.name = name
        self.shape = tuple(shape)
        self.column = column
        self.device = device
        self.value = None
        self.grad = None
        self.grad_ready = False
        self.needs_grad = False
        self.producer = None
        self._buffers = {}

    def buffer(self, kind: str, n: int) -> np.ndarray:
        """A kept (n, *shape) array for ``kind`` ("value", "grad", "scratch"): allocated once."""
        key = (kind, n)
        b = self._buffers.get(key)
        if b is None:
            b = self._buffers[key] = D.empty((n,) + self.shape, self.device)
        return b

    def release(self) -> None:
        self._buffers.clear()
        self.value = self.grad = None

    def __repr__(self):
        return f"Tensor({self.name!r}, {self.shape}, column={self.column}, {self.device})"


class Param:
    """A block of one canonical parameter array, held by one layer on one device.

    ``name`` is the canonical name (``conv3.weight``); ``index`` selects this block from the
    canonical array (a tuple of slices). A layer split into columns holds several blocks of the
    same canonical array; merged, a block is usually the whole array.
    """

    def __init__(self, name: str, index: tuple, shape: tuple, device: str, decay: bool):
        self.name = name
        self.index = index
        self.shape = tuple(shape)
        self.device = device
        self.decay = decay
        self.value = D.zeros(shape, device)
        self.grad = D.zeros(shape, device)
        self.velocity = D.zeros(shape, device)

    def __repr__(self):
        return f"Param({self.name!r}{list(self.index)}, {self.shape})"


class Layer:
    """Base class: ``forward(ctx)`` sets ``output.value``; ``backward(ctx)`` reads ``output.grad``."""

    kind = "layer"

    def __init__(self, name: str, inputs: list[Tensor], output: Tensor):
        self.name = name
        self.inputs = list(inputs)
        self.output = output
        self.params: list[Param] = []
        output.producer = self

    @property
    def needs_backward(self) -> bool:
        return bool(self.params) or any(t.needs_grad for t in self.inputs)

    def forward(self, ctx) -> None:
        raise NotImplementedError

    def backward(self, ctx) -> None:
        raise NotImplementedError

    @staticmethod
    def _emit(t: Tensor, n: int, compute) -> None:
        """Give tensor ``t`` a gradient: ``compute(out)`` writes one into ``out`` (or returns a new
        array, for ops without ``out=``). The first gradient of a step is kept as is, later ones
        are added to it."""
        if not t.grad_ready:
            t.grad = compute(t.buffer("grad", n))
            t.grad_ready = True
        else:
            D.add_into(t.grad, compute(t.buffer("scratch", n)))

    def __repr__(self):
        return (f"{type(self).__name__}({self.name!r}: {', '.join(t.name for t in self.inputs)}"
                f" -> {self.output.name})")


class _Weighted(Layer):
    """conv / fc: one weight block per source tensor, outputs summed, one bias."""

    def __init__(self, name, sources, bias: Param, output: Tensor):
        super().__init__(name, [s[0] for s in sources], output)
        self.sources = sources
        self.bias = bias
        self.params = [s[1] for s in sources] + [bias]


class Conv(_Weighted):
    """Convolution over one or more sources ``(tensor, weight Param, groups)``, plus a bias.

    ``y = sum_i filter_acts(x_i, w_i, groups_i) + b``; the sum uses filter_acts' accumulate form.
    """

    kind = "conv"

    def __init__(self, name, sources, bias, output, *, size, stride, padding):
        super().__init__(name, sources, bias, output)
        self.size, self.stride, self.padding = tuple(size), tuple(stride), tuple(padding)

    def forward(self, ctx):
        y = self.output.buffer("value", ctx.n)
        for i, (t, w, g) in enumerate(self.sources):
            ops.filter_acts(t.value, w.value, bias=self.bias.value if i == 0 else None,
                            stride=self.stride, padding=self.padding, groups=g, out=y,
                            scale_targets=0.0 if i == 0 else 1.0)
        self.output.value = y

    def backward(self, ctx):
        gy = self.output.grad
        ops.conv_bias_grad(gy, out=self.bias.grad)
        for t, w, g in self.sources:
            geo = dict(stride=self.stride, padding=self.padding, groups=g)
            ops.weight_acts(t.value, gy, filter_size=self.size, out=w.grad, **geo)
            if t.needs_grad:
                if t.grad_ready:
                    ops.img_acts(gy, w.value, image_size=t.shape[1:], out=t.grad,
                                 scale_targets=1.0, **geo)
                else:
                    t.grad = ops.img_acts(gy, w.value, image_size=t.shape[1:],
                                          out=t.buffer("grad", ctx.n), **geo)
                    t.grad_ready = True


class FC(_Weighted):
    """Fully connected over one or more sources ``(tensor, weight Param)``: ``y = sum_i x_i w_i^T + b``.

    A (C, H, W) source is read as its flattening (channel-major), so an fc weight's input axis is
    ordered like PyTorch's ``flatten``.
    """

    kind = "fc"

    def __init__(self, name, sources, bias, output):
        super().__init__(name, [(t, w) for t, w in sources], bias, output)

    def forward(self, ctx):
        n = ctx.n
        y = self.output.buffer("value", n)
        for i, (t, w) in enumerate(self.sources):
            ops.fc(t.value.reshape(n, -1), w.value, self.bias.value if i == 0 else None,
                   out=y, scale_targets=0.0 if i == 0 else 1.0)
        self.output.value = y

    def backward(self, ctx):
        n = ctx.n
        gy = self.output.grad
        for i, (t, w) in enumerate(self.sources):
            # Every source but the first computes the (same) bias gradient into scratch.
            gb = self.bias.grad if i == 0 else self._bias_scratch()
            x = t.value.reshape(n, -1)
            if not t.needs_grad:
                ops.fc_undo(gy, x, w.value, need_grad_x=False, grad_w_out=w.grad,
                            grad_b_out=gb)
                continue
            gx = t.buffer("scratch" if t.grad_ready else "grad", n)
            ops.fc_undo(gy, x, w.value, need_grad_x=True, grad_x_out=gx.reshape(n, -1),
                        grad_w_out=w.grad, grad_b_out=gb)
            if t.grad_ready:
                D.add_into(t.grad, gx)
            else:
                t.grad = gx
                t.grad_ready = True

    def _bias_scratch(self):
        s = getattr(self, "_gb_scratch", None)
        if s is None:
            s = self._gb_scratch = D.empty(self.bias.shape, self.output.device)
        return s


class ReLU(Layer):
    kind = "relu"

    def forward(self, ctx):
        self.output.value = ops.relu(self.inputs[0].value, out=self.output.buffer("value", ctx.n))

    def backward(self, ctx):
        y, gy = self.output.value, self.output.grad
        self._emit(self.inputs[0], ctx.n, lambda out: ops.relu_undo(gy, y, out=out))


class LRN(Layer):
    """Response normalisation across maps, within each of ``blocks`` column blocks of maps.

    Merged nets see a column-split tensor as one array: (N, K*Cb, H, W) is viewed as
    (N*K, Cb, H, W) so that no column's maps are normalised with another column's.
    """

    kind = "lrn"

    def __init__(self, name, inputs, output, *, size, k, alpha, beta, alpha_over_size, blocks=1):
        super().__init__(name, inputs, output)
        self.args = dict(size=size, k=k, alpha=alpha, beta=beta, alpha_over_size=alpha_over_size)
        self.blocks = blocks

    def _view(self, a, n):
        c, h, w = self.output.shape
        return a.reshape(n * self.blocks, c // self.blocks, h, w)

    def forward(self, ctx):
        n = ctx.n
        y, self.denoms = ops.response_norm(self._view(self.inputs[0].value, n), **self.args)
        self.output.value = y.reshape((n,) + self.output.shape)

    def backward(self, ctx):
        n = ctx.n
        x, y, gy = self.inputs[0].value, self.output.value, self.output.grad
        self._emit(self.inputs[0], n, lambda out: ops.response_norm_undo(
            self._view(gy, n), self._view(x, n), self._view(y, n), self.denoms,
            **self.args).reshape((n,) + self.inputs[0].shape))


class Pool(Layer):
    kind = "pool"

    def __init__(self, name, inputs, output, *, mode, size, stride, padding, ceil_mode):
        super().__init__(name, inputs, output)
        self.mode = mode
        self.args = dict(size=size, stride=stride, padding=padding, ceil_mode=ceil_mode)

    def forward(self, ctx):
        x = self.inputs[0].value
        if self.mode == "max":
            self.output.value, self.switches = ops.max_pool(x, **self.args)
        else:
            self.output.value = ops.avg_pool(x, **self.args)

    def backward(self, ctx):
        gy = self.output.grad
        hw = self.inputs[0].shape[1:]
        if self.mode == "max":
            self._emit(self.inputs[0], ctx.n,
                       lambda out: ops.max_pool_undo(gy, self.switches, image_size=hw))
        else:
            self._emit(self.inputs[0], ctx.n,
                       lambda out: ops.avg_pool_undo(gy, image_size=hw, **self.args))


class Dropout(Layer):
    """Inverted dropout in training (kept units scaled by 1/(1-p)); the identity at test time.

    The mask's seed derives from (run seed, step, model layer name) (``ctx.seed_for``), so a
    resumed run draws the same masks as an uninterrupted one. In a net split into columns, each
    column's layer passes ``block`` (its block of every image within the merged tensor) and the
    model layer's name, so it drops exactly the units the merged net drops.
    """

    kind = "dropout"

    def __init__(self, name, inputs, output, *, p, seed_name=None, block=None):
        super().__init__(name, inputs, output)
        self.p = p
        self.seed_name = seed_name or name
        self.block = block

    def forward(self, ctx):
        x = self.inputs[0].value
        if not ctx.train or self.p == 0.0:
            self.output.value = x
            self.mask = None
            return
        masks = self.__dict__.setdefault("_masks", {})
        if ctx.n not in masks:
            masks[ctx.n] = D.empty((ctx.n,) + self.output.shape, self.output.device, np.uint8)
        block = self.block
        if ctx.sample_offset:  # [dist] this rank's samples start at sample_offset globally
            per = int(np.prod(self.output.shape))   # this layer's elements of one sample
            row, stride, start = block or (per, per, 0)
            block = (row, stride, start + ctx.sample_offset * stride)
        self.output.value, self.mask = ops.dropout(
            x, p=self.p, seed=ctx.seed_for(self.seed_name), out=self.output.buffer("value", ctx.n),
            mask_out=masks[ctx.n], block=block)

    def backward(self, ctx):
        gy = self.output.grad
        if self.mask is None:
            self._emit(self.inputs[0], ctx.n, lambda out: D.copy_into(out, gy))
        else:
            self._emit(self.inputs[0], ctx.n,
                       lambda out: ops.dropout_undo(gy, self.mask, p=self.p, out=out))


class Softmax(Layer):
    """The cost: softmax over class scores and the mean negative log-probability of the labels."""

    kind = "softmax"

    def forward(self, ctx):
        self.loss, self.probs = ops.softmax_log_loss(self.inputs[0].value, ctx.labels,
                                                     out=self.output.buffer("value", ctx.n),
                                                     wait=ctx.wait)
        ctx.loss = self.loss

    def backward(self, ctx):
        probs, labels = self.probs, ctx.labels
        self._emit(self.inputs[0], ctx.n,
                   lambda out: ops.softmax_log_loss_undo(probs, labels, out=out))


class Transfer(Layer):
    """A copy of a tensor onto another column's device (:func:`alexnet_ext.nn.device.transfer`).

    Backward sends the gradient back to the source column.
    """

    kind = "transfer"

    def forward(self, ctx):
        src = self.inputs[0]
        self.output.value = D.transfer(src.value, src.device, self.output.device,
                                       out=self.output.buffer("value", ctx.n))

    def backward(self, ctx):
        src, gy = self.inputs[0], self.output.grad
        self._emit(src, ctx.n, lambda out: D.transfer(gy, self.output.device, src.device, out=out))
