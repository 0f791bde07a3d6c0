"""Max pooling (the paper's overlapping pooling, section 3.4) with switches, and its gradient.

Kernels: ``csrc/cpu/max_pool.cpp`` and ``csrc/cuda/max_pool.cu`` (same results bit for bit). See
``csrc/max_pool.h`` and ``csrc/pool.h`` for the rules. Arrays may be NumPy arrays (CPU) or
``alexnet_ext.cuda.DeviceArray`` (GPU).

bfloat16: on the GPU x (then y) and grad_y (then grad_x) may be bfloat16 DeviceArrays. The forward
is exact (y is the winning element itself, the switches those of the float32 op on the widened
values; a NaN comes back as the quiet NaN of its sign). The undo sums each pixel's gradients in
float32, in the float32 op's order, and rounds the sum once to bfloat16 (nearest, ties to even).
"""
from __future__ import annotations

import numpy as np

from .. import _validate as V
from . import _pool

__all__ = ["max_pool", "max_pool_undo", "switch_dtype"]

INT32_MAX = 2**31 - 1


def switch_dtype(height: int, width: int) -> np.dtype:
    """The dtype :func:`max_pool` gives its switches for an input plane of ``height x width``.

    int32 when every flat index ``iy*W + ix`` fits (``H*W <= 2**31 - 1``), int64 otherwise.
    """
    height, width = V.integer(height, "height", 1), V.integer(width, "width", 1)
    return np.dtype(np.int32 if height * width <= INT32_MAX else np.int64)


def max_pool(x, *, size=3, stride=2, padding=0, ceil_mode=False, layout="NCHW"):
    """Max pooling forward; also returns where each maximum came from.

    ``y[n, c, oy, ox]`` is the maximum of ``x[n, c]`` over the window of rows
    ``oy*sh - ph ... oy*sh - ph + kh - 1`` and columns ``ox*sw - pw ... ox*sw - pw + kw - 1``,
    clipped to the image: padding is never a candidate (it acts as -inf).

    Output size per axis: ``floor((H + 2p - k) / s) + 1``; with ``ceil_mode``
    ``ceil((H + 2p - k) / s) + 1``, less one if the last window would start at or beyond
    ``H + p`` (PyTorch's rule; see :func:`pool_output_size`). Every window holds a real pixel.

    Ties go to the first maximum in row-major scan order of the window. NaN propagates: a window
    holding a NaN outputs NaN and its switch points at the window's first NaN.

    Args:
        x: (N, C, H, W) float32, or bfloat16 on the GPU.
        size: window, int or (kh, kw) (paper: 3).
        stride: int or (sh, sw) (paper: 2; stride < size gives overlapping pooling).
        padding: int or (ph, pw), each at most half the window (``ph <= kh // 2``).
        ceil_mode: see above.
        layout: ``"NCHW"`` or ``"NHWC"`` (x (N, H, W, C); y and switches (N, Ho, Wo, C), the
            same values as the NCHW op's on the transposed input).

    Returns:
        ``(y, switches)``: y (N, C, Ho, Wo) of x's dtype; switches (N, C, Ho, Wo) with the argmax's flat
        index ``iy*W + ix`` inside its input plane, dtype :func:`switch_dtype` (H, W) (int32
        unless a plane has more than 2**31 - 1 pixels). Pass switches to :func:`max_pool_undo`.
    """
    geo, kern, y = _pool.forward_setup(x, size, stride, padding, ceil_mode, layout)
    switches = V.empty_like(x, y.shape, switch_dtype(geo.h, geo.w))
    kern.max_pool(x, y, switches, geo, layout)
    return y, switches


def max_pool_undo(grad_y, switches, *, image_size, relu_y=None, layout="NCHW"):
    """Gradient of :func:`max_pool` with respect to its input.

    Every ``grad_y[n, c, oy, ox]`` goes to exactly the pixel ``switches[n, c, oy, ox]`` of plane
    ``(n, c)``; pixels that several overlapping windows chose receive the sum, all others zero.

    Args:
        grad_y: (N, C, Ho, Wo) float32 (or bfloat16 on the GPU), the gradient w.r.t. ``y``.
        switches: (N, C, Ho, Wo) int32 or int64, as returned by :func:`max_pool`. Values outside
            ``[0, H*W)`` raise ``ValueError`` (nothing is written out of bounds). On the GPU the
            check runs in the kernel and the call does not wait for it: a bad switch's gradient
            is dropped and the ``ValueError`` is raised at the next synchronisation (the next
            ``get()``, loss read or ``cuda.synchronize()``).
        image_size: (H, W) of the pooled input, or an int for a square one.
        relu_y: None, or the pool's input when that was a ReLU output ((N, C, H, W) of grad_y's
            dtype): grad_x is then zeroed where ``relu_y <= 0`` in the same pass, bit for bit
            ``relu_undo(max_pool_undo(grad_y, switches, ...), relu_y)``. (A selected pixel holds
            its window's maximum, so this only zeroes the gradient of windows whose maximum is
            <= 0; it is applied as the mask all the same, so the fold is exact for any input.)
        layout: ``"NCHW"`` or ``"NHWC"`` (grad_y and switches (N, Ho, Wo, C); grad_x and relu_y
            (N, H, W, C)), as passed to :func:`max_pool`.

    Returns:
        grad_x, (N, C, H, W) (NHWC: (N, H, W, C)) of grad_y's dtype.
    """
    layout = _pool.layout(layout)
    V.real_array(grad_y, "grad_y", 4, _pool.pooled_desc(layout))
    V.index_array(switches, "switches", 4, _pool.pooled_desc(layout))
    V.expect_shape(switches, grad_y.shape, "switches", "the shape of grad_y")
    h, w = V.int_pair(image_size, "image_size", 1)
    n, c, ho, wo = _pool.dims(grad_y.shape, layout)
    if ho > h + 1 or wo > w + 1:  # (Ho-1)*s <= H + 2p - k <= H since padding <= k/2
        raise ValueError(f"image_size: a {h}x{w} image cannot pool to grad_y's {ho}x{wo} "
                         f"(the output is at most one larger than the input per axis)")
    out_shape = _pool.shape(n, c, h, w, layout)
    if relu_y is not None:
        V.real_array(relu_y, "relu_y", 4, _pool.image_desc(layout), like=grad_y,
                     like_name="grad_y")
        V.expect_shape(relu_y, out_shape, "relu_y", "the shape of the pooled input")
    kern = V.backend(grad_y, switches, relu_y)
    grad_x = V.empty_like(grad_y, out_shape)
    kern.max_pool_undo(grad_y, switches, grad_x, relu_y, layout)
    return grad_x
