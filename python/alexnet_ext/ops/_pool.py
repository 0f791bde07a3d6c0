"""Window geometry shared by :mod:`.max_pool` and :mod:`.avg_pool` (C++ side: ``csrc/pool.h``),
and the ``layout`` argument of the pooling and response-norm ops (C++ side:
``csrc/python/pool_layout.h``)."""
from __future__ import annotations

import numpy as np

from .. import _core
from .. import _validate as V


_IMAGES = {"NCHW": "(N, C, H, W)", "NHWC": "(N, H, W, C)"}
_POOLED = {"NCHW": "(N, C, Ho, Wo)", "NHWC": "(N, Ho, Wo, C)"}


def layout(value):
    """The checked layout: ``"NCHW"`` (default of every op) or ``"NHWC"`` (channels innermost)."""
    if not isinstance(value, str) or value not in _IMAGES:
        raise ValueError(f"layout: expected 'NCHW' or 'NHWC', got {value!r}")
    return value


def image_desc(layout_):
    """How an images-shaped array of the layout is described in errors, e.g. ``(N, H, W, C)``."""
    return _IMAGES[layout_]


def pooled_desc(layout_):
    return _POOLED[layout_]


def dims(shape, layout_):
    """(n, c, h, w) of a 4-d array of the layout."""
    n, a, b, c = shape
    return (n, c, a, b) if layout_ == "NHWC" else (n, a, b, c)


def shape(n, c, h, w, layout_):
    """The shape of an (n, c, h, w) array in the layout."""
    return (n, h, w, c) if layout_ == "NHWC" else (n, c, h, w)


def boolean(v, name):
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {type(v).__name__}")
    return bool(v)


def pool_output_size(size: int, window: int, stride: int, padding: int = 0,
                     ceil_mode: bool = False) -> int:
    """Pooling output length along one axis.

    ``floor((size + 2*padding - window) / stride) + 1``; with ``ceil_mode``
    ``ceil((size + 2*padding - window) / stride) + 1``, less one when that last window would start
    at or beyond ``size + padding`` (PyTorch's rule), so every window holds a real pixel.
    """
    size, window, stride, padding = V.window_axis(size, window, stride, padding, "window")
    span = size + 2 * padding - window
    if span < 0:
        raise ValueError(f"window of size {window} is larger than the padded input "
                         f"({size} + 2*{padding})")
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def params(size, stride, padding, ceil_mode, names=("size", "stride", "padding")):
    """Checked (kh, kw, sh, sw, ph, pw, ceil_mode); ``names``: the arguments' names in messages."""
    kh, kw = V.int_pair(size, names[0], 1)
    sh, sw = V.int_pair(stride, names[1], 1)
    ph, pw = V.int_pair(padding, names[2], 0)
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise TypeError(f"ceil_mode: expected a bool, got {type(ceil_mode).__name__}")
    if ph > kh // 2 or pw > kw // 2:
        raise ValueError(f"{names[2]}: expected at most half the window on each axis "
                         f"(<= ({kh // 2}, {kw // 2}) for a {kh}x{kw} window), got ({ph}, {pw})")
    return kh, kw, sh, sw, ph, pw, bool(ceil_mode)


def geometry(n, c, h, w, kh, kw, sh, sw, ph, pw, ceil_mode, size_name="size"):
    """The geometry the pooling kernels take (``_core.PoolGeometry``, fields as in csrc/pool.h)."""
    if kh > h + 2 * ph or kw > w + 2 * pw:
        raise ValueError(f"{size_name}: a {kh}x{kw} window is larger than the padded input "
                         f"{h + 2 * ph}x{w + 2 * pw} ({h}x{w} with padding ({ph}, {pw}))")
    ho = pool_output_size(h, kh, sh, ph, ceil_mode)
    wo = pool_output_size(w, kw, sw, pw, ceil_mode)
    return _core.PoolGeometry(n=n, c=c, h=h, w=w, kh=kh, kw=kw, sh=sh, sw=sw, ph=ph, pw=pw,
                              ho=ho, wo=wo)


def forward_setup(x, size, stride, padding, ceil_mode, layout_="NCHW"):
    """What a pooling forward does before its kernel: check the layout, ``x`` (N, C, H, W) or
    (N, H, W, C), float32 or (on the GPU) bfloat16, and the window.

    Returns ``(geometry, kernels, y)``: the kernels' geometry tuple, the backend that holds ``x``
    and the output ``y`` ((N, C, Ho, Wo) or (N, Ho, Wo, C)) of x's dtype to fill, on ``x``'s
    device.
    """
    layout_ = layout(layout_)
    V.real_array(x, "x", 4, image_desc(layout_))
    kh, kw, sh, sw, ph, pw, ceil_mode = params(size, stride, padding, ceil_mode)
    n, c, h, w = dims(x.shape, layout_)
    geo = geometry(n, c, h, w, kh, kw, sh, sw, ph, pw, ceil_mode)
    return geo, V.backend(x), V.empty_like(x, shape(n, c, geo.ho, geo.wo, layout_))
