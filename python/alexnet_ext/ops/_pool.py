"""Window geometry shared by :mod:`.max_pool` and :mod:`.avg_pool` (C++ side: ``csrc/pool.h``)."""
from __future__ import annotations

import numpy as np

from .. import _core
from .. import _validate as V


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


def forward_setup(x, size, stride, padding, ceil_mode):
    """What a pooling forward does before its kernel: check ``x`` (N, C, H, W), float32 or (on the
    GPU) bfloat16, and the window.

    Returns ``(geometry, kernels, y)``: the kernels' geometry tuple, the backend that holds ``x``
    and the output ``y`` (N, C, Ho, Wo) of x's dtype to fill, on ``x``'s device.
    """
    V.real_array(x, "x", 4, "(N, C, H, W)")
    kh, kw, sh, sw, ph, pw, ceil_mode = params(size, stride, padding, ceil_mode)
    n, c, h, w = x.shape
    geo = geometry(n, c, h, w, kh, kw, sh, sw, ph, pw, ceil_mode)
    return geo, V.backend(x), V.empty_like(x, (n, c, geo.ho, geo.wo))
