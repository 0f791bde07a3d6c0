"""dropout: inverted dropout in training (kept units scaled by 1/(1-p)); the identity at test time.

The mask's seed derives from (run seed, step, model layer name) (``ctx.seed_for``), so a resumed
run draws the same masks as an uninterrupted one. In a net split into columns, each column's
layer passes ``block`` (its block of every image within the merged tensor) and the model
layer's name, so it drops exactly the units the merged net drops.
"""
from __future__ import annotations

import math

import numpy as np

from ... import ops
from .. import device as D
from .. import schema as S
from .base import Layer, emit_grad, register

__all__ = ["Dropout"]


@register
class Dropout(Layer):
    kind = type = "dropout"
    keys = {"p": S.number(0.5, 0.0, 1.0, exclusive_max=True)}
    identity_at_test = True

    def __init__(self, name, inputs, output, *, p, seed_name=None, block=None):
        super().__init__(name, inputs, output)
        self.p = p
        self.seed_name = seed_name or name
        self.block = block
        self.mask = None
        self._masks = {}

    @classmethod
    def saved_bytes(cls, L):
        return L.out_size                     # the uint8 mask

    @classmethod
    def from_spec(cls, L, name, src, out, part, parts):
        # a column's block of every image draws the merged net's mask there
        size = math.prod(src.shape)
        block = (size, parts * size, part * size) if parts > 1 else None
        return cls(name, [src], out, p=L.attrs["p"], seed_name=L.name, block=block)

    def folds_relu(self, t):
        return True

    def forward(self, ctx):
        x = self.inputs[0].value
        if not ctx.train or self.p == 0.0:
            self.output.value = x
            self.mask = None
            return
        if ctx.n not in self._masks:
            self._masks[ctx.n] = D.empty((ctx.n,) + self.output.shape, self.output.device,
                                         np.uint8)
        block = self.block
        if ctx.sample_offset:  # data parallel: this rank's samples start at sample_offset globally
            per = math.prod(self.output.shape)   # this layer's elements of one sample
            row, stride, start = block or (per, per, 0)
            block = (row, stride, start + ctx.sample_offset * stride)
        self.output.value, self.mask = ops.dropout(
            x, p=self.p, seed=ctx.seed_for(self.seed_name), out=self.output.buffer("value", ctx.n),
            mask_out=self._masks[ctx.n], block=block)

    def backward(self, ctx):
        gy, t = self.output.grad, self.inputs[0]
        if self.mask is None:
            if t.relu_folded:
                emit_grad(t, ctx.n, lambda out: ops.relu_undo(gy, t.value, out=out))
            else:
                emit_grad(t, ctx.n, lambda out: D.copy_into(out, gy))
        else:
            fold = dict(relu_mask=t.value) if t.relu_folded else {}
            emit_grad(t, ctx.n,
                       lambda out: ops.dropout_undo(gy, self.mask, p=self.p, out=out, **fold))
