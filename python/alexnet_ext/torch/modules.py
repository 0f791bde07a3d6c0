"""``torch.nn`` modules over the alexnet_ext kernels (or plain torch ops with ``pure=True``).

Parameter layouts are torch's (Conv2d weight (F, C/groups, kh, kw), bias (F,)), which are also
ours, so state dicts move between these modules, ``torch.nn.Conv2d`` and our ``Net`` as they are.
Initialisation follows our model files, not torch: weights ~ N(0, init_std) (default 0.01, the
paper's), biases = init_bias (default 0).
"""
from __future__ import annotations

import torch

from . import functional as AF

__all__ = ["AvgPool2d", "Conv2d", "CrossMapLRN", "Dropout", "MaxPool2d", "SoftmaxLogLoss"]


class Conv2d(torch.nn.Module):
    """Convolution with cuda-convnet's filterActs; backward through imgActs / weightActs."""

    def __init__(self, in_channels, out_channels, kernel_size, *, stride=1, padding=0, groups=1,
                 bias=True, ceil_mode=False, init_std=0.01, init_bias=0.0, precision=None,
                 pure=False, device=None):
        super().__init__()
        kh, kw = AF._pair(kernel_size, "kernel_size")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups: {groups} must divide in_channels ({in_channels}) and "
                             f"out_channels ({out_channels})")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = (kh, kw)
        self.stride, self.padding = tuple(AF._pair(stride, "stride")), tuple(AF._pair(padding, "padding"))
        self.groups, self.ceil_mode, self.pure = groups, bool(ceil_mode), pure
        self.precision = precision  # None, "fp32", "tf32" or "bf16": see functional.conv2d
        w = torch.empty(out_channels, in_channels // groups, kh, kw, device=device)
        self.weight = torch.nn.Parameter(w.normal_(0.0, init_std))
        self.bias = (torch.nn.Parameter(torch.full((out_channels,), float(init_bias), device=device))
                     if bias else None)

    def forward(self, x):
        return AF.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding,
                         groups=self.groups, ceil_mode=self.ceil_mode, precision=self.precision,
                         pure=self.pure)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, groups={self.groups}, "
                f"ceil_mode={self.ceil_mode}, bias={self.bias is not None}, "
                f"precision={self.precision}, pure={self.pure}")


class CrossMapLRN(torch.nn.Module):
    """The paper's response normalisation across maps (section 3.3).

    ``alpha_over_size=False`` (default) is the paper's convention, ``k + alpha * sum x**2``;
    ``True`` divides alpha by ``size`` like ``torch.nn.LocalResponseNorm``. ``blocks``: normalise
    each of that many channel blocks separately (2 for the paper's two columns)."""

    def __init__(self, size=5, *, k=2.0, alpha=1e-4, beta=0.75, alpha_over_size=False, blocks=1,
                 pure=False):
        super().__init__()
        self.size, self.k, self.alpha, self.beta = int(size), float(k), float(alpha), float(beta)
        self.alpha_over_size, self.blocks, self.pure = bool(alpha_over_size), int(blocks), pure

    def forward(self, x):
        return AF.cross_map_lrn(x, size=self.size, k=self.k, alpha=self.alpha, beta=self.beta,
                                alpha_over_size=self.alpha_over_size, blocks=self.blocks,
                                pure=self.pure)

    def extra_repr(self):
        return (f"size={self.size}, k={self.k}, alpha={self.alpha}, beta={self.beta}, "
                f"alpha_over_size={self.alpha_over_size}, blocks={self.blocks}, pure={self.pure}")


class MaxPool2d(torch.nn.Module):
    """Max pooling (default: the paper's overlapping 3x3, stride 2).

    ``return_switches=True``: forward returns ``(y, switches)``. ``keep_switches=True``: the
    last forward's switches stay in ``self.switches`` (e.g. for deconvnet-style visualisation)."""

    def __init__(self, size=3, stride=2, padding=0, *, ceil_mode=False, return_switches=False,
                 keep_switches=False, pure=False):
        super().__init__()
        self.size, self.stride, self.padding = size, stride, padding
        self.ceil_mode, self.return_switches, self.keep_switches = ceil_mode, return_switches, keep_switches
        self.pure = pure
        self.switches = None

    def forward(self, x):
        want = self.return_switches or self.keep_switches
        out = AF.max_pool2d(x, size=self.size, stride=self.stride, padding=self.padding,
                            ceil_mode=self.ceil_mode, return_switches=want, pure=self.pure)
        if not want:
            return out
        if self.keep_switches:
            self.switches = out[1]
        return out if self.return_switches else out[0]

    def extra_repr(self):
        return (f"size={self.size}, stride={self.stride}, padding={self.padding}, "
                f"ceil_mode={self.ceil_mode}, pure={self.pure}")


class AvgPool2d(torch.nn.Module):
    """Average pooling over each window's real pixels."""

    def __init__(self, size, stride, padding=0, *, ceil_mode=False, pure=False):
        super().__init__()
        self.size, self.stride, self.padding, self.ceil_mode = size, stride, padding, ceil_mode
        self.pure = pure

    def forward(self, x):
        return AF.avg_pool2d(x, size=self.size, stride=self.stride, padding=self.padding,
                             ceil_mode=self.ceil_mode, pure=self.pure)


class Dropout(torch.nn.Module):
    """Inverted dropout with the package's Philox masks (in training mode; identity in eval).

    The mask of a call is a function of ``(seed, offset)``. With ``seed=None`` every call draws a
    fresh seed from torch's default generator (``torch.manual_seed`` makes runs repeatable);
    with a fixed ``seed``, ``offset`` counts the calls (set it to replay a step). Inside
    ``torch.compile(fullgraph=True)`` pass seed and offset to
    :func:`alexnet_ext.torch.functional.dropout` explicitly instead (a value read from a torch
    generator is a graph break). ``pure=True`` uses ``torch.nn.functional.dropout``."""

    def __init__(self, p=0.5, *, seed=None, offset=0, pure=False):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"p: expected a drop probability 0 <= p < 1, got {p}")
        self.p, self.seed, self.offset, self.pure = float(p), seed, int(offset), pure

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        if self.pure:
            return AF.dropout(x, p=self.p, seed=0, pure=True)
        if self.seed is None:
            seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
            return AF.dropout(x, p=self.p, seed=seed, offset=0)
        y = AF.dropout(x, p=self.p, seed=self.seed, offset=self.offset)
        self.offset += 1
        return y

    def extra_repr(self):
        return f"p={self.p}, seed={self.seed}, pure={self.pure}"


class SoftmaxLogLoss(torch.nn.Module):
    """The paper's objective: mean ``-log softmax(logits)[label]``, forward(logits, labels)."""

    def __init__(self, *, pure=False):
        super().__init__()
        self.pure = pure

    def forward(self, logits, labels):
        return AF.softmax_log_loss(logits, labels, pure=self.pure)
