"""softmax: the cost -- softmax over the class scores and the mean negative log-probability of
the labels. Its output tensor holds the probabilities; it must be whole (on one column). In a
bf16 net it reads bfloat16 scores and computes in fp32: the probabilities and the loss are
float32, the scores' gradient bfloat16."""
from __future__ import annotations

from ... import ops
from .base import Layer, emit_grad, register

__all__ = ["Softmax"]


@register
class Softmax(Layer):
    kind = type = "softmax"
    is_cost = True

    @classmethod
    def infer(cls, L, spec, fail):
        s, name = L.in_shapes[0], L.inputs[0]
        if len(s) != 1:
            fail(f"input '{name}' has shape {s}: the softmax reads the class scores of an fc layer")
        if s[0] != spec.classes:
            fail(f"input '{name}' has {s[0]} outputs for {spec.classes} classes "
                 '(write outputs = "classes" in the last fc layer)')
        L.out_shape = s                     # the class probabilities

    @classmethod
    def layout(cls, L, spec, in_blocks, fail):
        if in_blocks[0] != 1:
            fail(f"input '{L.inputs[0]}' is split into {in_blocks[0]} columns: set split = "
                 f"false on '{L.inputs[0]}' so the class scores are whole")
        L.blocks = 1
        L.column = spec.column_of(L.inputs[0])

    def forward(self, ctx):
        self.loss, self.probs = ops.softmax_log_loss(self.inputs[0].value, ctx.labels,
                                                     out=self.output.buffer("value", ctx.n),
                                                     wait=ctx.wait)
        ctx.loss = self.loss

    def backward(self, ctx):
        probs, labels = self.probs, ctx.labels
        emit_grad(self.inputs[0], ctx.n,
                   lambda out: ops.softmax_log_loss_undo(probs, labels, out=out))
