"""lrn: response normalisation across maps (the paper's section 3.3).

Within each column: a merged net sees a column-split tensor as one array, (N, K*Cb, H, W), and
views it as (N*K, Cb, H, W) so that no column's maps enter another column's windows.

When a response norm's only consumer is a max pool (the paper's norm1 -> pool1, norm2 -> pool2),
the net runs both as one :class:`LRNMaxPool` layer (:meth:`LRN.fuse`): one pass of
:func:`~alexnet_ext.ops.response_norm_max_pool` forward, whose backward recomputes the normalised
maps instead of keeping them.
"""
from __future__ import annotations

from ... import ops
from .. import schema as S
from .base import Layer, emit_grad, need_maps, register
from .pool import Pool

__all__ = ["LRN", "LRNMaxPool"]


@register
class LRN(Layer):
    """Response normalisation across maps, within each of ``blocks`` column blocks of maps."""

    kind = type = "lrn"
    keys = {"size": S.integer(5, 1), "k": S.number(2.0), "alpha": S.number(1e-4, 0.0),
            "beta": S.number(0.75, 0.0), "alpha_over_size": S.flag(False)}

    def __init__(self, name, inputs, output, *, size, k, alpha, beta, alpha_over_size, blocks=1):
        super().__init__(name, inputs, output)
        self.args = dict(size=size, k=k, alpha=alpha, beta=beta, alpha_over_size=alpha_over_size)
        self.blocks = blocks

    @classmethod
    def infer(cls, L, spec, fail):
        need_maps(L, fail, "response norm runs across the maps of (C, H, W) input")
        L.out_shape = L.in_shapes[0]

    @classmethod
    def saved_bytes(cls, L):
        return 4 * L.out_size                 # the denominators

    @classmethod
    def from_spec(cls, L, name, src, out, part, parts):
        # merged: one layer normalising each of L.blocks columns; split: one column per layer
        return cls(name, [src], out, **L.attrs, blocks=L.blocks // parts)

    @staticmethod
    def _fuses(reader_type, mode) -> bool:
        return reader_type is Pool and mode == "max"     # the pair LRNMaxPool runs

    @classmethod
    def fuses_with(cls, reader):
        return cls._fuses(reader.layer_type, reader.attrs.get("mode"))

    def fuse(self, consumer):
        if self._fuses(type(consumer), getattr(consumer, "mode", None)):
            return LRNMaxPool(self, consumer)
        return None

    def folds_relu(self, t):
        return True

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
        relu = self.inputs[0].relu_folded
        emit_grad(self.inputs[0], n, lambda out: ops.response_norm_undo(
            self._view(gy, n), self._view(x, n), self._view(y, n), self.denoms, relu=relu,
            **self.args).reshape((n,) + self.inputs[0].shape))


class LRNMaxPool(Layer):
    """A response norm and the max pool that alone reads it, run as one op each way.

    Made by the net (:meth:`LRN.fuse`), not a model-file type. ``parts`` are the two layers it
    replaces (their names, tensors and arguments); the response norm's output tensor is not
    computed (see :meth:`~alexnet_ext.nn.net.Net.output`). Backward:
    :func:`~alexnet_ext.ops.response_norm_max_pool_undo`, equal bit for bit to the pool's then the
    norm's undo.
    """

    kind = "lrn+pool"

    def __init__(self, lrn: LRN, pool: Pool):
        super().__init__(f"{lrn.name}+{pool.name}", lrn.inputs, pool.output)
        self.parts = (lrn, pool)
        self.blocks = lrn.blocks
        self.lrn_args = dict(lrn.args)
        a = pool.args
        self.args = dict(lrn.args, pool_size=a["size"], pool_stride=a["stride"],
                         pool_padding=a["padding"], ceil_mode=a["ceil_mode"])

    def folds_relu(self, t):
        return True

    def _view(self, a, n, shape):
        c = shape[0]
        return a.reshape((n * self.blocks, c // self.blocks) + tuple(shape[1:]))

    def forward(self, ctx):
        n, x = ctx.n, self.inputs[0].value
        pooled, self.switches, self.denoms = ops.response_norm_max_pool(
            self._view(x, n, self.inputs[0].shape), **self.args)
        self.output.value = pooled.reshape((n,) + self.output.shape)
        self.parts[0].output.value = None  # not computed: no stale value from another pass

    def backward(self, ctx):
        n, x, gy = ctx.n, self.inputs[0].value, self.output.grad
        relu = self.inputs[0].relu_folded
        emit_grad(self.inputs[0], n, lambda out: ops.response_norm_max_pool_undo(
            self._view(gy, n, self.output.shape), self.switches,
            self._view(x, n, self.inputs[0].shape), self.denoms, relu=relu,
            **self.lrn_args).reshape((n,) + self.inputs[0].shape))
