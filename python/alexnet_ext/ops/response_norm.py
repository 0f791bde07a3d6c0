"""Local response normalization across kernel maps (paper section 3.3) and its gradient.

Kernels: ``csrc/cpu/response_norm.cpp`` and ``csrc/cuda/response_norm.cu`` (one fused pass per
pixel column with a running window sum over channels). See ``csrc/response_norm.h`` for the
formulas. Arrays may be NumPy arrays (CPU) or ``alexnet_ext.cuda.DeviceArray`` (GPU); the
results live on the same side as the inputs.

bfloat16: on the GPU x, y, grad_y and grad_x may be bfloat16 DeviceArrays (all of one call), while
``denoms`` stays float32 (the saved statistics the undo reads back). The float32 arithmetic runs
on the widened values and each y / grad_x is rounded once to bfloat16 (nearest, ties to even): the
float32 op on the same values, cast. For beta = 0.75 the float32 y is within about 7 * 2^-24 of
the exact one relative to it, so the bfloat16 y is within half a bfloat16 ulp of that.
"""
from __future__ import annotations

import numpy as np

from .. import _validate as V
from . import _pool

__all__ = ["response_norm", "response_norm_undo"]

_TINY = float(np.finfo(np.float32).tiny)


def _params(size, k, alpha, beta, alpha_over_size):
    size = V.integer(size, "size", 1, V.GEOMETRY_MAX)
    k = V.real(k, "k", 0.0, exclusive_min=True)
    if k < _TINY:  # denoms are float32 and must stay > 0, or an all-zero window gives 0 * inf
        raise ValueError(f"k: expected a number >= {_TINY:g} (the smallest normal float32), got {k}")
    alpha = V.real(alpha, "alpha", 0.0)
    beta = V.real(beta, "beta", 0.0)
    if not isinstance(alpha_over_size, (bool, np.bool_)):
        raise TypeError(f"alpha_over_size: expected a bool, got {type(alpha_over_size).__name__}")
    return size, k, alpha, beta, bool(alpha_over_size)


def response_norm(x, *, size=5, k=2.0, alpha=1e-4, beta=0.75, alpha_over_size=False,
                  layout="NCHW"):
    """Response normalization across kernel maps (the paper's LRN), forward.

    For every image n, channel i and pixel (y, x)::

        denoms[n, i, y, x] = k + a * sum_{j in window(i)} x[n, j, y, x] ** 2
        y[n, i, y, x]      = x[n, i, y, x] * denoms[n, i, y, x] ** (-beta)

    with ``a = alpha`` (the paper's convention, the default) or ``a = alpha / size`` when
    ``alpha_over_size=True`` (Caffe, cuda-convnet and ``torch.nn.LocalResponseNorm``).

    ``window(i)`` holds the channels ``j`` with ``i - size//2 <= j <= i + (size-1)//2``, clipped
    to ``[0, C-1]`` (missing channels count as zero). For odd ``size`` this is the paper's
    centred window of ``size`` maps; for even ``size`` it reaches one channel further below ``i``
    than above, which is PyTorch's rule. ``size`` may exceed ``C`` (then every window is clipped).

    Args:
        x: (N, C, H, W) float32 (in AlexNet: the ReLU output of conv1 / conv2), or bfloat16 on
            the GPU.
        size: window length in channels (paper: n = 5), int >= 1.
        k: additive constant (paper: 2), > 0 (at least the smallest normal float32).
        alpha: coefficient of the sum of squares (paper: 1e-4), >= 0.
        beta: exponent (paper: 0.75), >= 0.
        alpha_over_size: divide ``alpha`` by ``size`` (see above).
        layout: ``"NCHW"`` or ``"NHWC"`` (x, y and denoms (N, H, W, C); the same values as the
            NCHW op's on the transposed input, bit for bit).

    Returns:
        ``(y, denoms)``, both (N, C, H, W) (NHWC: (N, H, W, C)): y of x's dtype, denoms float32.
        ``denoms`` is what :func:`response_norm_undo` needs besides ``x`` and ``y``.
    """
    layout = _pool.layout(layout)
    V.real_array(x, "x", 4, _pool.image_desc(layout))
    size, k, alpha, beta, aos = _params(size, k, alpha, beta, alpha_over_size)
    kern = V.backend(x)
    y = V.empty_like(x)
    denoms = V.empty_like(x, dtype=np.float32)
    kern.response_norm(x, y, denoms, size, k, alpha, beta, aos, layout)
    return y, denoms


def response_norm_undo(grad_y, x, y, denoms, *, size=5, k=2.0, alpha=1e-4, beta=0.75,
                       alpha_over_size=False, relu=False, layout="NCHW"):
    """Gradient of :func:`response_norm` with respect to its input.

    ::

        grad_x[j] = grad_y[j] * denoms[j] ** (-beta)
                    - 2 * a * beta * x[j] * sum_{i : j in window(i)} grad_y[i] * y[i] / denoms[i]

    per image and pixel, with ``a`` and ``window`` as in :func:`response_norm`.

    Args:
        grad_y: (N, C, H, W) float32 (or bfloat16 on the GPU), the gradient w.r.t. ``y``.
        x, y, denoms: (N, C, H, W): the input of :func:`response_norm` and the two arrays it
            returned (x and y of grad_y's dtype, denoms float32). None of the inputs is modified (unlike cuda-convnet's kernel, which
            reused one of them as scratch).
        size, k, alpha, beta, alpha_over_size: as passed to :func:`response_norm`.
        relu: ``x`` is a ReLU output (AlexNet's norm1 / norm2): grad_x is also multiplied by
            ``x > 0`` in the same pass, bit for bit ``relu_undo(response_norm_undo(...), x)``.
        layout: ``"NCHW"`` or ``"NHWC"``, as passed to :func:`response_norm`.

    Returns:
        grad_x, of grad_y's shape and dtype, a new array.
    """
    layout = _pool.layout(layout)
    desc = _pool.image_desc(layout)
    V.real_array(grad_y, "grad_y", 4, desc)
    V.real_array(x, "x", 4, desc, like=grad_y, like_name="grad_y")
    V.real_array(y, "y", 4, desc, like=grad_y, like_name="grad_y")
    V.float_array(denoms, "denoms", 4, desc)
    for a, name in ((x, "x"), (y, "y"), (denoms, "denoms")):
        V.expect_shape(a, grad_y.shape, name, "the shape of grad_y")
    size, k, alpha, beta, aos = _params(size, k, alpha, beta, alpha_over_size)
    relu = _pool.boolean(relu, "relu")
    kern = V.backend(grad_y, x, y, denoms)
    grad_x = V.empty_like(grad_y)
    kern.response_norm_undo(grad_y, x, y, denoms, grad_x, size, k, alpha, beta, aos, layout, relu)
    return grad_x
