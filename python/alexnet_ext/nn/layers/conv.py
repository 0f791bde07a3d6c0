"""conv: convolution over one or more inputs (summed), with groups, plus a bias.

``y = sum_i filter_acts(x_i, w_i, groups_i) + b``; the sum uses filter_acts' accumulate form.
Backward: conv_bias_grad, weight_acts per source, img_acts into each input (accumulate form
where the input already holds a gradient). Inputs must have the same map size; their channels
are concatenated along the weight's input axis (canonical weight (F, C/groups, kh, kw)).
"""
from __future__ import annotations

from ... import ops
from .. import schema as S
from .base import emit_grad, need_maps, register
from .weighted import Weighted

__all__ = ["Conv"]


def _precision(ctx) -> dict:
    """The ops' precision argument for the net's choice (fp32: none, the ops' default)."""
    return {} if ctx.precision == "fp32" else {"precision": ctx.precision}


@register
class Conv(Weighted):
    """Convolution over one or more sources ``(tensor, weight Param, groups)``, plus a bias."""

    kind = type = "conv"
    kernels_are_images = True
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

    def forward(self, ctx):
        y = self.output.buffer("value", ctx.n)
        for i, (t, w, g) in enumerate(self.sources):
            ops.filter_acts(t.value, w.value, bias=self.bias.value if i == 0 else None,
                            stride=self.stride, padding=self.padding, groups=g, out=y,
                            scale_targets=0.0 if i == 0 else 1.0, **_precision(ctx))
        self.output.value = y

    def backward(self, ctx):
        gy = self.output.grad
        ops.conv_bias_grad(gy, out=self.bias.grad)
        for t, w, g in self.sources:
            geo = dict(stride=self.stride, padding=self.padding, groups=g, **_precision(ctx))
            ops.weight_acts(t.value, gy, filter_size=self.size, out=w.grad, **geo)
            if t.needs_grad:
                def img_acts(out, scale, t=t, w=w, geo=geo):
                    return ops.img_acts(gy, w.value, image_size=t.shape[1:], out=out,
                                        scale_targets=scale, **geo)
                emit_grad(t, ctx.n, lambda out: img_acts(out, 0.0),
                          lambda grad: img_acts(grad, 1.0))
