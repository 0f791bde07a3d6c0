"""fc: fully connected over one or more inputs (summed), plus a bias.

``y = sum_i x_i w_i^T + b``, the sum through fc's accumulate form. A (C, H, W) input is read as
its flattening (channel-major), so the weight's input axis (canonical weight (F, D)) is ordered
like PyTorch's ``flatten``; several inputs are concatenated along it. ``outputs = "classes"``
takes the model's class count.

In a bf16 net ``x``, ``y`` and their gradients are bfloat16, the weights the parameters' bfloat16
copies (cuBLAS, fp32 accumulation); the weight and bias gradients are float32. Several sources
sum in a float32 buffer, rounded once at the end.
"""
from __future__ import annotations

import math

import numpy as np

from ... import ops
from .. import device as D
from .. import schema as S
from .base import emit_grad, register
from .weighted import Weighted

__all__ = ["FC"]


@register
class FC(Weighted):
    """Fully connected over one or more sources ``(tensor, weight Param)``."""

    kind = type = "fc"
    keys = {"outputs": S.Key(lambda v, k: v if v == "classes" else S.integer(minimum=1).check(v, k),
                             S.REQUIRED, 'a positive integer or "classes"'),
            **Weighted.keys}

    def __init__(self, name, sources, bias, output):
        super().__init__(name, [(s[0], s[1]) for s in sources], bias, output)
        self._gb_scratch = None

    @classmethod
    def infer(cls, L, spec, fail):
        f = spec.classes if L.attrs["outputs"] == "classes" else L.attrs["outputs"]
        L.attrs["outputs"] = f
        d = sum(math.prod(s) for s in L.in_shapes)
        L.out_shape = (f,)
        L.params = {f"{L.name}.weight": (f, d), f"{L.name}.bias": (f,)}
        L.flops = 2 * f * d

    @classmethod
    def input_width(cls, in_shape, groups):
        return math.prod(in_shape)

    @classmethod
    def make(cls, L, name, sources, bias, out):
        return cls(name, sources, bias, out)

    def forward(self, ctx):
        n = ctx.n
        y = self.output.buffer("value", n)
        acc = y if len(self.sources) == 1 or y.dtype == np.float32 else \
            self.output.buffer("acc", n, np.float32)
        for i, (t, w) in enumerate(self.sources):
            ops.fc(t.value.reshape(n, -1), w.operand, self.bias.value if i == 0 else None,
                   out=acc, scale_targets=0.0 if i == 0 else 1.0)
        if acc is not y:
            ops.cast(acc, y.dtype, out=y)
        self.output.value = y

    def backward(self, ctx):
        n = ctx.n
        gy = self.output.grad
        for i, (t, w) in enumerate(self.sources):
            # Every source but the first computes the (same) bias gradient into scratch.
            grads = dict(grad_w_out=w.grad, grad_b_out=self.bias.grad if i == 0 else self._scratch())
            x = t.value.reshape(n, -1)
            if not t.needs_grad:
                ops.fc_undo(gy, x, w.operand, need_grad_x=False, **grads)
                continue

            def write(out, x=x, w=w, grads=grads):
                ops.fc_undo(gy, x, w.operand, need_grad_x=True, grad_x_out=out.reshape(n, -1),
                            **grads)
                return out
            emit_grad(t, n, write)

    def _scratch(self):
        if self._gb_scratch is None:
            self._gb_scratch = D.empty(self.bias.shape, self.output.device)
        return self._gb_scratch
