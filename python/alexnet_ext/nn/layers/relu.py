"""relu: ``y = max(x, 0)``; backward passes the gradient where ``y > 0``.

Where every reader of ``y`` folds the undo into its own backward (``y.relu_folded``), the
gradient they leave is already the input's, and backward only hands it on.
"""
from __future__ import annotations

from ... import ops
from .. import device as D
from .base import Layer, emit_grad, register

__all__ = ["ReLU"]


@register
class ReLU(Layer):
    kind = type = "relu"

    def forward(self, ctx):
        self.output.value = ops.relu(self.inputs[0].value, out=self.output.buffer("value", ctx.n))

    def backward(self, ctx):
        y, gy = self.output.value, self.output.grad
        if self.output.relu_folded:
            emit_grad(self.inputs[0], ctx.n, lambda out: gy, lambda grad: D.add_into(grad, gy))
        else:
            emit_grad(self.inputs[0], ctx.n, lambda out: ops.relu_undo(gy, y, out=out))
