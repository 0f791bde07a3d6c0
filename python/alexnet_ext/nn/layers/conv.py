"""conv: convolution over one or more inputs (summed), with groups, plus a bias.

``y = sum_i filter_acts(x_i, w_i, groups_i) + b``; the sum uses filter_acts' accumulate form.
Backward: conv_bias_grad, weight_acts per source, img_acts into each input (accumulate form
where the input already holds a gradient). Inputs must have the same map size; their channels
are concatenated along the weight's input axis (canonical weight (F, C/groups, kh, kw)).

When a conv's only reader is a ReLU, a fusing net runs both as one :class:`ConvReLU` layer: the
ReLU happens in filterActs' epilogue (``activation="relu"``), so the pre-activation maps are never
written. A conv reading a ReLU's output folds that ReLU's undo into imgActs (``relu_mask=``).

In a bf16 net the inputs, the output and the gradients are bfloat16 and the weights the
parameters' bfloat16 copies (:attr:`Param.operand`); the products are exact and the sums fp32,
each stored value rounded once. A sum over several sources accumulates in a float32 buffer and
is rounded once at the end.
"""
from __future__ import annotations

import numpy as np

from ... import ops
from .. import schema as S
from .base import emit_grad, need_maps, register
from .relu import ReLU
from .weighted import Weighted

__all__ = ["Conv", "ConvReLU"]


def _precision(ctx) -> dict:
    """The ops' precision argument for the net's choice (fp32: none, the ops' default)."""
    return {} if ctx.precision == "fp32" else {"precision": ctx.precision}


def _out_dtype(a) -> dict:
    return {} if a.dtype == np.float32 else {"out_dtype": a.dtype}


@register
class Conv(Weighted):
    """Convolution over one or more sources ``(tensor, weight Param, groups)``, plus a bias."""

    kind = type = "conv"
    kernels_are_images = True
    relu = False              # ConvReLU: the ReLU in the epilogue
    keys = {"filters": S.integer(S.REQUIRED, 1), "size": S.pair(S.REQUIRED, 1),
            "stride": S.pair((1, 1), 1), "padding": S.pair((0, 0), 0), "groups": S.integer(1, 1),
            **Weighted.keys}

    def __init__(self, name, sources, bias, output, *, size, stride, padding):
        super().__init__(name, sources, bias, output)
        self.size, self.stride, self.padding = tuple(size), tuple(stride), tuple(padding)

    @classmethod
    def infer(cls, L, spec, fail):
        need_maps(L, fail, "a conv layer needs (channels, height, width) maps, not a flat vector")
        hw = {s[1:] for s in L.in_shapes}
        if len(hw) > 1:
            fail(f"inputs have different map sizes {sorted(hw)}: a conv layer with several "
                 "inputs sums them, so their maps must have the same size")
        a = L.attrs
        g, f = a["groups"], a["filters"]
        cin = sum(s[0] for s in L.in_shapes)
        if g > 1 and len(L.inputs) > 1:
            fail(f"groups={g} with several inputs: grouped convolution takes one input")
        if cin % g:
            fail(f"groups={g} does not divide the {cin} input channels")
        if f % g:
            fail(f"groups={g} does not divide the {f} filters")
        (kh, kw), (sh, sw), (ph, pw) = a["size"], a["stride"], a["padding"]
        _, h, w = L.in_shapes[0]
        try:
            ho = ops.conv_output_size(h, kh, sh, ph)
            wo = ops.conv_output_size(w, kw, sw, pw)
        except ValueError:
            fail(f"a {kh}x{kw} filter does not fit the {h}x{w} input with padding {ph}x{pw}")
        L.out_shape = (f, ho, wo)
        L.params = {f"{L.name}.weight": (f, cin // g, kh, kw), f"{L.name}.bias": (f,)}
        L.flops = 2 * f * ho * wo * (cin // g) * kh * kw

    @classmethod
    def input_width(cls, in_shape, groups):
        return in_shape[0] // groups

    @classmethod
    def make(cls, L, name, sources, bias, out):
        a = L.attrs
        return cls(name, sources, bias, out, size=a["size"], stride=a["stride"],
                   padding=a["padding"])

    @classmethod
    def fuses_with(cls, reader):
        return reader.layer_type is ReLU

    def fuse(self, consumer):
        return ConvReLU(self, consumer) if type(consumer) is ReLU else None

    def folds_relu(self, t):
        return True

    def forward(self, ctx):
        y = self.output.buffer("value", ctx.n)
        single = len(self.sources) == 1
        # several sources sum in float32, rounded to y's dtype once at the end
        acc = y if single or y.dtype == np.float32 else self.output.buffer("acc", ctx.n, np.float32)
        epi = dict(activation="relu") if self.relu and single else {}
        for i, (t, w, g) in enumerate(self.sources):
            ops.filter_acts(t.value, w.operand, bias=self.bias.value if i == 0 else None,
                            stride=self.stride, padding=self.padding, groups=g, out=acc,
                            scale_targets=0.0 if i == 0 else 1.0, **_precision(ctx),
                            **_out_dtype(acc), **epi)
        if acc is not y:
            ops.cast(acc, y.dtype, out=y)
        if self.relu and not single:
            ops.relu(y, out=y)
        self.output.value = y

    def _grad_output(self, ctx):
        """The gradient w.r.t. the conv's pre-activation output."""
        gy = self.output.grad
        if self.relu and not self.output.relu_folded:   # the readers left the ReLU's undo to us
            gy = ops.relu_undo(gy, self.output.value,
                               out=self.parts[0].output.buffer("grad", ctx.n))
        return gy

    def backward(self, ctx):
        gy = self._grad_output(ctx)
        ops.conv_bias_grad(gy, out=self.bias.grad)
        for t, w, g in self.sources:
            geo = dict(stride=self.stride, padding=self.padding, groups=g, **_precision(ctx))
            ops.weight_acts(t.value, gy, filter_size=self.size, out=w.grad, **geo)
            if t.needs_grad:
                fold = dict(relu_mask=t.value) if t.relu_folded else {}

                def img_acts(out, scale, t=t, w=w, geo=geo, fold=fold):
                    return ops.img_acts(gy, w.operand, image_size=t.shape[1:], out=out,
                                        scale_targets=scale, **geo, **fold, **_out_dtype(out))
                emit_grad(t, ctx.n, lambda out: img_acts(out, 0.0),
                          lambda grad: img_acts(grad, 1.0))


class ConvReLU(Conv):
    """A conv and the ReLU that alone reads it, as one layer: filterActs with the ReLU in its
    epilogue. Made by the net (:meth:`Conv.fuse`), not a model-file type; ``parts`` are the pair
    it replaces (the conv's output is not computed, see :meth:`~alexnet_ext.nn.net.Net.output`).
    It holds the conv's parameters. Backward: the ReLU's undo is folded into the layers reading
    its output where they can (``output.relu_folded``), else done here first."""

    kind = "conv+relu"
    type = None
    relu = True

    def __init__(self, conv: Conv, relu: ReLU):
        Weighted.__init__(self, f"{conv.name}+{relu.name}", conv.sources, conv.bias, relu.output)
        self.size, self.stride, self.padding = conv.size, conv.stride, conv.padding
        self.init_std, self.init_bias = conv.init_std, conv.init_bias
        self.parts = (conv, relu)

    def forward(self, ctx):
        super().forward(ctx)
        self.parts[0].output.value = None  # not computed: no stale value from another pass
