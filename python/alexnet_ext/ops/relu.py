"""Rectified linear unit: ``relu`` (forward) and ``relu_undo`` (gradient).

Kernels: ``csrc/cpu/relu.cpp``, ``csrc/cuda/relu.cu``. See ``csrc/relu.h``.

bfloat16: on the GPU every array may instead be a bfloat16 DeviceArray (all of one call the same
dtype). The selects run on the widened values, so results are exact: an input element or +0 (a NaN
comes back as the quiet NaN of its sign).
"""
from __future__ import annotations

from .. import _validate as V

__all__ = ["relu", "relu_undo"]


def relu(x, *, out=None):
    """ReLU forward: ``y = max(x, 0)`` elementwise (NaN stays NaN).

    Args:
        x: float32 array of any shape (ndim >= 1), C-contiguous (or a bfloat16 DeviceArray).
        out: optional array of x's shape and dtype to write into. ``out=x`` is allowed and
            computes in place; any other overlap with ``x`` is rejected.

    Returns:
        y, the same shape as x (``out`` itself when given).
    """
    k, out = V.elementwise(out, x=x)
    k.relu(x, out)
    return out


def relu_undo(grad_y, y, *, out=None):
    """ReLU backward: ``grad_x = grad_y where y > 0, else 0``.

    Args:
        grad_y: float32 (or a bfloat16 DeviceArray), the gradient w.r.t. relu's output.
        y: grad_y's shape and dtype, relu's output (``y > 0`` exactly where the input was > 0).
        out: optional target of grad_y's shape and dtype. ``out=grad_y`` (or ``out=y``) is allowed
            and overwrites it in place; any other overlap is rejected.

    Returns:
        grad_x, the same shape as grad_y (``out`` itself when given).
    """
    k, out = V.elementwise(out, grad_y=grad_y, y=y)
    k.relu_undo(grad_y, y, out)
    return out
