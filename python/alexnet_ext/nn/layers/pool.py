"""pool: max or average pooling over square windows (overlapping in the paper: 3x3, stride 2)."""
from __future__ import annotations

from ... import ops
from .. import schema as S
from .base import Layer, emit_grad, need_maps, register

__all__ = ["Pool"]


@register
class Pool(Layer):
    kind = type = "pool"
    keys = {"mode": S.choice("max", "max", "avg"), "size": S.integer(3, 1),
            "stride": S.integer(2, 1), "padding": S.integer(0, 0), "ceil_mode": S.flag(False)}

    def __init__(self, name, inputs, output, *, mode, size, stride, padding, ceil_mode):
        super().__init__(name, inputs, output)
        self.mode = mode
        self.args = dict(size=size, stride=stride, padding=padding, ceil_mode=ceil_mode)

    @classmethod
    def infer(cls, L, spec, fail):
        need_maps(L, fail, "pooling needs (C, H, W) input")
        c, h, w = L.in_shapes[0]
        a = L.attrs
        z, st, p = a["size"], a["stride"], a["padding"]
        if p > z // 2:
            fail(f"padding {p} is more than half the {z}x{z} window")
        try:
            ho = ops.pool_output_size(h, z, st, p, a["ceil_mode"])
            wo = ops.pool_output_size(w, z, st, p, a["ceil_mode"])
        except ValueError:
            fail(f"a {z}x{z} window does not fit the {h}x{w} input with padding {p}")
        L.out_shape = (c, ho, wo)

    @classmethod
    def saved_bytes(cls, L):
        if L.attrs["mode"] != "max":
            return 0
        _, h, w = L.in_shapes[0]
        return ops.switch_dtype(h, w).itemsize * L.out_size       # the switches

    @classmethod
    def from_spec(cls, L, name, src, out, part, parts):
        return cls(name, [src], out, **L.attrs)

    def folds_relu(self, t):
        return self.mode == "max"

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
            t = self.inputs[0]
            fold = dict(relu_y=t.value) if t.relu_folded else {}
            emit_grad(t, ctx.n,
                       lambda out: ops.max_pool_undo(gy, self.switches, image_size=hw, **fold))
        else:
            emit_grad(self.inputs[0], ctx.n,
                       lambda out: ops.avg_pool_undo(gy, image_size=hw, **self.args))
