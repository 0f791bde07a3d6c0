"""Functional forms of the layers, each with our kernels (default) or plain torch ops (``pure=True``).

The kernel path calls the custom ops of :mod:`alexnet_ext.torch._ops` (differentiable, traceable
by torch.compile). The pure path uses only standard torch operators, so it exports to ONNX and
runs where our kernels are not built; it computes the same function (up to float rounding) except
for dropout, whose pure form draws torch's own random masks instead of the package's Philox ones.

Semantics shared by both paths (see :mod:`alexnet_ext.ops` for the kernels' docs):

* convolution: ``ceil_mode`` gives ``1 + ceil((H + 2p - k) / s)`` outputs, the overhanging windows
  reading zeros (the pure path pads the bottom/right edge with the extra zeros);
* response norm: ``denom = k + a * sum_{j in window(i)} x_j**2``, ``y = x * denom**-beta`` with
  ``a = alpha`` (the paper) or ``alpha / size`` (``alpha_over_size=True``: Caffe, cuda-convnet,
  ``torch.nn.LocalResponseNorm``); the window holds channels ``i - size//2 .. i + (size-1)//2``;
  ``blocks`` normalises each of that many equal channel blocks (the paper's columns) separately;
* max pooling: padding is never a candidate; switches = flat index ``iy*W + ix`` in the plane
  (torch's ``return_indices`` convention too);
* average pooling divides by the window's real pixels (``count_include_pad=False``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import ops as _ops
from . import _ops as K

__all__ = ["avg_pool2d", "conv2d", "cross_map_lrn", "dropout", "max_pool2d", "softmax_log_loss"]


def _pair(v, name):
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name}: expected an int or an (h, w) pair, got {v!r}")
        return [int(v[0]), int(v[1])]
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name}: expected an int or an (h, w) pair, got {type(v).__name__}")
    return [v, v]


def conv2d(x, weight, bias=None, *, stride=1, padding=0, groups=1, ceil_mode=False,
           precision=None, pure=False):
    """Convolution: x (N, C, H, W), weight (F, C/groups, kh, kw), bias (F,) or None.

    The kernel path takes float32 or (CUDA) bfloat16 tensors, contiguous or channels-last (the
    result has x's dtype and memory format), and ``precision`` None, "fp32", "tf32" (float32
    on the GPU's tensor cores) or "bf16" (see :mod:`alexnet_ext.ops.conv`). The pure path
    ignores ``precision``: torch's own settings decide."""
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    if not pure:
        return K.filter_acts(x, weight, bias, stride, padding, groups, bool(ceil_mode), precision)
    if ceil_mode:
        extra = []
        for ax in (0, 1):
            size, k = x.shape[2 + ax], weight.shape[2 + ax]
            out = _ops.conv_output_size(size, k, stride[ax], padding[ax], True)
            extra.append(max(0, (out - 1) * stride[ax] + k - (size + 2 * padding[ax])))
        x = F.pad(x, (padding[1], padding[1] + extra[1], padding[0], padding[0] + extra[0]))
        padding = [0, 0]
    return F.conv2d(x, weight, bias, stride=stride, padding=padding, groups=groups)


def _lrn_pure(x, size, k, alpha, beta, alpha_over_size):
    c = x.shape[1]
    sq = x * x
    # channel i sums channels i - size//2 .. i + (size-1)//2 (missing ones are zero)
    padded = F.pad(sq, (0, 0, 0, 0, size // 2, (size - 1) // 2))
    total = padded[:, 0:c]
    for j in range(1, size):
        total = total + padded[:, j:j + c]
    a = alpha / size if alpha_over_size else alpha
    return x * (total * a + k).pow(-beta)


def cross_map_lrn(x, *, size=5, k=2.0, alpha=1e-4, beta=0.75, alpha_over_size=False, blocks=1,
                  pure=False):
    """Response normalisation across maps (the paper's LRN), within ``blocks`` channel blocks.

    Defaults are the paper's (n=5, k=2, alpha=1e-4, beta=0.75, alpha not divided by n)."""
    if x.dim() != 4:
        raise ValueError(f"x: expected (N, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    if blocks < 1 or c % blocks:
        raise ValueError(f"blocks: {blocks} does not divide the {c} channels of x")
    cl = blocks > 1 and not pure and x.dim() == 4 and not x.is_contiguous() and \
        x.is_contiguous(memory_format=torch.channels_last)
    if cl:
        # channels-last: the blocks of a pixel's channels are consecutive in memory, so the
        # (N, H, W, C) array is (N, H, W * blocks, C / blocks) without a copy; LRN on that
        # (channels-last again) normalises within each block
        xb = x.permute(0, 2, 3, 1).reshape(n, h, w * blocks, c // blocks).permute(0, 3, 1, 2)
    else:
        xb = x.reshape(n * blocks, c // blocks, h, w) if blocks > 1 else x
    if pure:
        y = _lrn_pure(xb, size, k, alpha, beta, alpha_over_size)
    else:
        y = K.response_norm(xb, size, float(k), float(alpha), float(beta),
                            bool(alpha_over_size))[0]
    if cl:
        return y.permute(0, 2, 3, 1).reshape(n, h, w, c).permute(0, 3, 1, 2)
    return y.reshape(n, c, h, w) if blocks > 1 else y


def max_pool2d(x, *, size=3, stride=2, padding=0, ceil_mode=False, return_switches=False,
               pure=False):
    """Max pooling (the paper's overlapping 3x3 stride-2 by default). With ``return_switches``,
    returns ``(y, switches)``: int32 switches from the kernels, int64 from the pure path."""
    size, stride, padding = _pair(size, "size"), _pair(stride, "stride"), _pair(padding, "padding")
    if pure:
        return F.max_pool2d(x, size, stride, padding, ceil_mode=bool(ceil_mode),
                            return_indices=return_switches)
    y, switches = K.max_pool(x, size, stride, padding, bool(ceil_mode))
    return (y, switches) if return_switches else y


def avg_pool2d(x, *, size, stride, padding=0, ceil_mode=False, pure=False):
    """Average pooling over each window's real pixels (padding and overhang not counted)."""
    size, stride, padding = _pair(size, "size"), _pair(stride, "stride"), _pair(padding, "padding")
    if pure:
        return F.avg_pool2d(x, size, stride, padding, ceil_mode=bool(ceil_mode),
                            count_include_pad=False)
    return K.avg_pool(x, size, stride, padding, bool(ceil_mode))


def dropout(x, *, p=0.5, seed, offset=0, training=True, return_mask=False, pure=False):
    """Inverted dropout: kept units are scaled by 1/(1-p); the identity when not ``training``.

    The kernel path draws the package's Philox mask for ``(seed, offset)`` (the same mask as
    :func:`alexnet_ext.ops.dropout` and our ``Net``); the pure path ignores them and uses
    ``torch.nn.functional.dropout`` (torch's generator, so other masks)."""
    if not training or p == 0.0:
        return (x, None) if return_mask else x
    if pure:
        y = F.dropout(x, p, True)
        return (y, None) if return_mask else y
    y, mask = K.dropout(x.contiguous(), float(p), int(seed), int(offset))
    return (y, mask) if return_mask else y


def softmax_log_loss(logits, labels, *, pure=False):
    """Mean negative log-probability of ``labels`` under ``softmax(logits)`` (a 0-dim tensor)."""
    if pure:
        return F.cross_entropy(logits, labels.long())
    return K.softmax_log_loss(logits.contiguous(), labels.contiguous())[0]
