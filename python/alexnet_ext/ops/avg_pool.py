"""Average pooling over the real pixels of each window, and its gradient.

Kernels: ``csrc/cpu/avg_pool.cpp`` and ``csrc/cuda/avg_pool.cu`` (same results bit for bit). See
``csrc/avg_pool.h`` and ``csrc/pool.h`` for the rules. Arrays may be NumPy arrays (CPU) or
``alexnet_ext.cuda.DeviceArray`` (GPU).

bfloat16: on the GPU x (then y) and grad_y (then grad_x) may be bfloat16 DeviceArrays: the float32
computation on the widened values (the same operations as for float32), each result rounded once
to bfloat16 (nearest, ties to even). So |error| <= half a bfloat16 ulp of the result plus the
float32 computation's own error (a sum of k terms: about k * 2^-24 of the sum of magnitudes).
"""
from __future__ import annotations

from .. import _validate as V
from . import _pool

__all__ = ["avg_pool", "avg_pool_undo"]


def avg_pool(x, *, size, stride, padding=0, ceil_mode=False, layout="NCHW"):
    """Average pooling forward.

    ``y[n, c, oy, ox]`` is the mean of ``x[n, c]`` over the window's real pixels: the window of
    rows ``oy*sh - ph ... oy*sh - ph + kh - 1`` and columns ``ox*sw - pw ... ox*sw - pw + kw - 1``
    clipped to the image. Padding and ceil-mode overhang are not counted in the divisor
    (PyTorch's ``count_include_pad=False``), so a corner window of 4 real pixels divides by 4.

    Output size per axis as :func:`max_pool` (see :func:`pool_output_size`); every window holds
    at least one real pixel.

    Args:
        x: (N, C, H, W) float32, or bfloat16 on the GPU.
        size: window, int or (kh, kw).
        stride: int or (sh, sw).
        padding: int or (ph, pw), each at most half the window (``ph <= kh // 2``).
        ceil_mode: ceil instead of floor in the output size.
        layout: ``"NCHW"`` or ``"NHWC"`` (x (N, H, W, C), y (N, Ho, Wo, C); the same values).

    Returns:
        y, (N, C, Ho, Wo) (NHWC: (N, Ho, Wo, C)) of x's dtype.
    """
    geo, kern, y = _pool.forward_setup(x, size, stride, padding, ceil_mode, layout)
    kern.avg_pool(x, y, geo, layout)
    return y


def avg_pool_undo(grad_y, *, image_size, size, stride, padding=0, ceil_mode=False,
                  layout="NCHW"):
    """Gradient of :func:`avg_pool` with respect to its input (its exact adjoint).

    ``grad_x[n, c, iy, ix]`` is the sum, over the windows holding pixel (iy, ix), of
    ``grad_y[window] / (real pixels in that window)``.

    Args:
        grad_y: (N, C, Ho, Wo) float32 (or bfloat16 on the GPU), the gradient w.r.t. ``y``.
        image_size: (H, W) of the pooled input, or an int for a square one.
        size, stride, padding, ceil_mode, layout: as passed to :func:`avg_pool`.

    Returns:
        grad_x, (N, C, H, W) (NHWC: (N, H, W, C)) of grad_y's dtype.
    """
    layout = _pool.layout(layout)
    V.real_array(grad_y, "grad_y", 4, _pool.pooled_desc(layout))
    h, w = V.int_pair(image_size, "image_size", 1)
    kh, kw, sh, sw, ph, pw, ceil_mode = _pool.params(size, stride, padding, ceil_mode)
    n, c, _, _ = _pool.dims(grad_y.shape, layout)
    geo = _pool.geometry(n, c, h, w, kh, kw, sh, sw, ph, pw, ceil_mode)
    V.expect_shape(grad_y, _pool.shape(n, c, geo.ho, geo.wo, layout), "grad_y",
                   f"the output size of a {kh}x{kw} window, stride ({sh}, {sw}), over a "
                   f"{h}x{w} image")
    kern = V.backend(grad_y)
    grad_x = V.empty_like(grad_y, _pool.shape(n, c, h, w, layout))
    kern.avg_pool_undo(grad_y, grad_x, geo, layout)
    return grad_x
