"""Rectified linear unit: ``relu`` (forward) and ``relu_undo`` (gradient).

Kernels: ``csrc/cpu/relu.cpp``. See ``csrc/relu.h``.
"""
from __future__ import annotations

from .. import _validate as V

__all__ = ["relu", "relu_undo"]


def relu(x, *, out=None):
    """ReLU forward: ``y = max(x, 0)`` elementwise (NaN stays NaN).

    Args:
        x: float32 array of any shape (ndim >= 1), C-contiguous.
        out: optional float32 array of x's shape to write into. ``out=x`` is allowed and
            computes in place; any other overlap with ``x`` is rejected.

    Returns:
        y, the same shape as x (``out`` itself when given).
    """
    V.float_array(x, "x")
    if x.ndim < 1:
        raise ValueError(f"x: expected at least 1 dimension, got shape {x.shape}")
    k = V.backend(x, out)
    out = V.elementwise_output(out, x.shape, may_be=("x",), x=x)
    k.relu(x, out)
    return out


def relu_undo(grad_y, y, *, out=None):
    """ReLU backward: ``grad_x = grad_y where y > 0, else 0``.

    Args:
        grad_y: float32, the gradient w.r.t. relu's output.
        y: float32 of grad_y's shape, relu's output (``y > 0`` exactly where the input was > 0).
        out: optional float32 target of grad_y's shape. ``out=grad_y`` (or ``out=y``) is allowed
            and overwrites it in place; any other overlap is rejected.

    Returns:
        grad_x, the same shape as grad_y (``out`` itself when given).
    """
    V.float_array(grad_y, "grad_y")
    if grad_y.ndim < 1:
        raise ValueError(f"grad_y: expected at least 1 dimension, got shape {grad_y.shape}")
    V.float_array(y, "y")
    V.expect_shape(y, grad_y.shape, "y", "the shape of grad_y")
    k = V.backend(grad_y, y, out)
    out = V.elementwise_output(out, grad_y.shape, may_be=("grad_y", "y"), grad_y=grad_y, y=y)
    k.relu_undo(grad_y, y, out)
    return out
