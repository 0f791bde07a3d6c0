"""Response normalization followed by max pooling, forward in one pass (the paper's norm1 ->
pool1 and norm2 -> pool2), and its gradient.

Kernels: ``csrc/cpu/response_norm_max_pool.cpp`` and ``csrc/cuda/response_norm_max_pool.cu``;
``csrc/response_norm_max_pool.h`` has the algorithm. The results are the bits
:func:`~.response_norm.response_norm` then :func:`~.max_pool.max_pool` give, but the full-size
normalised array is never written nor read back, and the gradient recomputes it from ``x`` and
``denoms`` instead of reading it (see :func:`response_norm_max_pool_undo`).
"""
from __future__ import annotations

import numpy as np

from .. import _validate as V
from . import _pool
from .max_pool import max_pool_undo, switch_dtype
from .response_norm import _params as _lrn_params

__all__ = ["response_norm_max_pool", "response_norm_max_pool_undo"]

_POOL_NAMES = ("pool_size", "pool_stride", "pool_padding")


def response_norm_max_pool(x, *, size=5, k=2.0, alpha=1e-4, beta=0.75, alpha_over_size=False,
                           pool_size=3, pool_stride=2, pool_padding=0, ceil_mode=False,
                           layout="NCHW"):
    """``response_norm(x, ...)`` then ``max_pool(y, ...)`` in one pass.

    Equal bit for bit to::

        y, denoms = response_norm(x, size=size, k=k, alpha=alpha, beta=beta,
                                  alpha_over_size=alpha_over_size)
        pooled, switches = max_pool(y, size=pool_size, stride=pool_stride,
                                    padding=pool_padding, ceil_mode=ceil_mode)

    without storing ``y`` (N*C*H*W floats written and read back by the unfused pair).

    Args:
        x: (N, C, H, W) float32. For per-column normalisation (K column blocks of maps) pass the
            (N*K, C/K, H, W) view: pooling is per map, so it does not mind.
        size, k, alpha, beta, alpha_over_size: the response norm's, as in
            :func:`~alexnet_ext.ops.response_norm` (window of ``size`` maps, paper's alpha or
            alpha/size).
        pool_size, pool_stride, pool_padding, ceil_mode: the max pool's ``size``, ``stride``,
            ``padding`` and ``ceil_mode``, as in :func:`~alexnet_ext.ops.max_pool`.
        layout: ``"NCHW"`` or ``"NHWC"`` (x and denoms (N, H, W, C), pooled and switches
            (N, Ho, Wo, C); the same values as the NCHW op's on the transposed input).

    bfloat16: on the GPU ``x`` may be a bfloat16 DeviceArray; pooled is then bfloat16 and denoms
    float32, bit for bit what ``response_norm`` then ``max_pool`` give in bfloat16 (each normalised
    value is rounded once to bfloat16 before it is pooled, so the switches are those of the rounded
    values).

    Returns:
        ``(pooled, switches, denoms)``: pooled (N, C, Ho, Wo) of x's dtype; switches (N, C, Ho, Wo),
        dtype :func:`~alexnet_ext.ops.switch_dtype` (H, W), flat indices ``iy*W + ix``, ties to
        the first maximum in the window's row-major order, NaN propagating (max_pool's rules);
        denoms (N, C, H, W) float32, response_norm's denominators. Pass switches, ``x`` and
        denoms to :func:`response_norm_max_pool_undo`.
    """
    layout = _pool.layout(layout)
    V.real_array(x, "x", 4, _pool.image_desc(layout))
    size, k, alpha, beta, aos = _lrn_params(size, k, alpha, beta, alpha_over_size)
    kh, kw, sh, sw, ph, pw, ceil_mode = _pool.params(pool_size, pool_stride, pool_padding,
                                                     ceil_mode, _POOL_NAMES)
    n, c, h, w = _pool.dims(x.shape, layout)
    geo = _pool.geometry(n, c, h, w, kh, kw, sh, sw, ph, pw, ceil_mode, "pool_size")
    kern = V.backend(x)
    out_shape = _pool.shape(n, c, geo.ho, geo.wo, layout)
    pooled = V.empty_like(x, out_shape)
    switches = V.empty_like(x, out_shape, switch_dtype(h, w))
    denoms = V.empty_like(x, dtype=np.float32)
    kern.response_norm_max_pool(x, pooled, switches, denoms, geo, size, k, alpha, beta, aos,
                                layout)
    return pooled, switches, denoms


def response_norm_max_pool_undo(grad_y, switches, x, denoms, *, size=5, k=2.0, alpha=1e-4,
                                beta=0.75, alpha_over_size=False, relu=False, layout="NCHW"):
    """Gradient of :func:`response_norm_max_pool` with respect to ``x``.

    ``max_pool_undo`` (the pooled gradient scattered through the switches), then
    ``response_norm_undo`` with the normalised values recomputed as ``x * denoms**(-beta)`` --
    the very floats the forward pooled -- so the result equals the unfused backward
    (``response_norm_undo(max_pool_undo(grad_y, switches), x, y, denoms)``) bit for bit.

    Args:
        grad_y: (N, C, Ho, Wo) float32 (or bfloat16 on the GPU), the gradient w.r.t. ``pooled``.
        switches, denoms: as returned by :func:`response_norm_max_pool` (denoms float32).
        x: (N, C, H, W) of grad_y's dtype, its input. In bfloat16 the pool's gradient is rounded
            once to bfloat16 and the recomputed normalised values too, as the unfused ops do.
        size, k, alpha, beta, alpha_over_size: as passed to :func:`response_norm_max_pool`.
        relu: ``x`` is a ReLU output: grad_x is also multiplied by ``x > 0`` in the LRN undo's
            pass, bit for bit ``relu_undo(response_norm_max_pool_undo(...), x)``.
        layout: ``"NCHW"`` or ``"NHWC"``, as passed to :func:`response_norm_max_pool`.

    Returns:
        grad_x, of x's shape and grad_y's dtype, a new array. None of the inputs is modified.
    """
    layout = _pool.layout(layout)
    V.real_array(grad_y, "grad_y", 4, _pool.pooled_desc(layout))
    V.real_array(x, "x", 4, _pool.image_desc(layout), like=grad_y, like_name="grad_y")
    V.float_array(denoms, "denoms", 4, _pool.image_desc(layout))
    V.expect_shape(denoms, x.shape, "denoms", "the shape of x")
    n, c, h, w = _pool.dims(x.shape, layout)
    if _pool.dims(grad_y.shape, layout)[:2] != (n, c):
        raise ValueError(f"grad_y: expected (N, C) = {(n, c)} as x, got shape "
                         f"{tuple(grad_y.shape)}")
    size, k, alpha, beta, aos = _lrn_params(size, k, alpha, beta, alpha_over_size)
    relu = _pool.boolean(relu, "relu")
    kern = V.backend(grad_y, switches, x, denoms)
    grad_norm = max_pool_undo(grad_y, switches, image_size=(h, w), layout=layout)
    grad_x = V.empty_like(x)
    kern.response_norm_max_pool_undo(grad_norm, x, denoms, grad_x, size, k, alpha, beta, aos,
                                      layout, relu)
    return grad_x
