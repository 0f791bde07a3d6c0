"""lrn: response normalisation across maps (the paper's section 3.3).

Within each column: a merged net sees a column-split tensor as one array, (N, K*Cb, H, W), and
views it as (N*K, Cb, H, W) so that no column's maps enter another column's windows.
"""
from __future__ import annotations

from ... import ops
from .. import schema as S
from .base import Layer, emit_grad, need_maps, register

__all__ = ["LRN"]


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
        emit_grad(self.inputs[0], n, lambda out: ops.response_norm_undo(
            self._view(gy, n), self._view(x, n), self._view(y, n), self.denoms,
            **self.args).reshape((n,) + self.inputs[0].shape))
