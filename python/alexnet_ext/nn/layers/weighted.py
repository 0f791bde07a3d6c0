"""What conv and fc layers share: weights, columns, and one weight block per source.

A weighted layer of a model with ``columns = K`` is split (its F outputs in K contiguous
blocks, block c on column c) or whole (on ``column``). Built split, each column's layer holds
the rows of the canonical weight for its outputs, and for each input one block of columns of
that weight: the input's own column when groups keep columns apart (conv2 in AlexNet), else one
block per input column, their contributions summed (conv3, fc6), other columns' tensors arriving
through :class:`~alexnet_ext.nn.layers.base.Transfer` layers. Merged, there is one layer whose
blocks are whole arrays.
"""
from __future__ import annotations

from .. import schema as S
from .base import Layer, Param, Tensor

__all__ = ["Weighted"]


class Weighted(Layer):
    """Base of conv and fc: ``sources`` are ``(tensor, weight Param[, groups])``, plus one bias."""

    weighted = True
    one_input = False
    keys = {"init_std": S.number(0.01, 0.0), "init_bias": S.number(0.0)}

    def __init__(self, name, sources, bias: Param, output: Tensor):
        super().__init__(name, [s[0] for s in sources], output)
        self.sources = sources
        self.bias = bias
        self.params = [s[1] for s in sources] + [bias]
        self.init_std = self.init_bias = None

    # ---- model files -------------------------------------------------------------------------

    @classmethod
    def layout(cls, L, spec, in_blocks, fail):
        g, K = L.attrs.get("groups", 1), spec.columns
        if L.split:
            f = L.out_shape[0]
            if f % K:
                fail(f"{f} outputs do not split into {K} columns (set split = false to keep "
                     "the layer whole)")
            if g > 1 and (g % K or any(b != K for b in in_blocks)):
                fail(f"groups={g} in a layer split into {K} columns needs groups to be a "
                     f"multiple of {K} and an input split into the same columns")
            L.blocks = K
        else:
            if g > 1 and any(b > 1 for b in in_blocks):
                fail(f"groups={g} in a whole (split = false) layer reading columns: "
                     "split it, or use groups = 1")
            L.blocks = 1

    # ---- what conv and fc define -------------------------------------------------------------

    @classmethod
    def input_width(cls, in_shape: tuple, groups: int) -> int:
        """How many entries of the weight's input axis one input of ``in_shape`` takes."""
        raise NotImplementedError

    @classmethod
    def make(cls, L, name, sources, bias, out):
        """The layer reading ``sources`` (``(tensor, weight, groups)`` triples)."""
        raise NotImplementedError

    # ---- nets --------------------------------------------------------------------------------

    @classmethod
    def build(cls, L, net, parts):
        K = net.spec.columns if net.split else 1
        g = L.attrs.get("groups", 1)
        F = L.out_shape[0]
        wname, bname = f"{L.name}.weight", f"{L.name}.bias"
        wshape = L.params[wname]
        net.declare_param(wname, wshape)
        net.declare_param(bname, L.params[bname])
        rest = tuple(slice(None) for _ in wshape[2:])       # kh, kw for conv
        columns = list(range(K)) if K > 1 and L.split else [L.column if K > 1 else 0]
        per = F // len(columns)
        outs = []
        for c in columns:
            osl = slice(c * per, (c + 1) * per) if len(columns) > 1 else slice(0, F)
            sources = []
            offset = 0                                   # along the weight's input axis
            for inp in L.inputs:
                blocks = parts[inp]
                width = cls.input_width(net.spec.shapes[inp], g)
                if len(blocks) == 1:
                    pieces = [(blocks[0], slice(offset, offset + width), g)]
                elif g % K == 0 and len(columns) > 1:    # groups keep the columns apart
                    pieces = [(blocks[c], slice(offset, offset + width), g // K)]
                else:                                    # reads every column (groups == 1)
                    bw = width // K
                    pieces = [(blk, slice(offset + j * bw, offset + (j + 1) * bw), 1)
                              for j, blk in enumerate(blocks)]
                for src, isl, groups in pieces:
                    index = (osl, isl) + rest
                    shape = tuple(len(range(*s.indices(n))) for s, n in zip(index, wshape))
                    w = Param(wname, index, shape, net.devices[c], decay=True)
                    sources.append((net.on_column(src, c), w, groups))
                offset += width
            bias = Param(bname, (osl,), (osl.stop - osl.start,), net.devices[c], decay=False)
            name = f"{L.name}@{c}" if len(columns) > 1 else L.name
            out = net.new_tensor(name, (osl.stop - osl.start,) + tuple(L.out_shape[1:]), c)
            layer = cls.make(L, name, sources, bias, out)
            layer.init_std, layer.init_bias = L.attrs["init_std"], L.attrs["init_bias"]
            net.add_layer(layer)
            outs.append(out)
        return outs
