"""Elementwise sum ``add`` (gradients that reach a tensor from several layers).

Kernels: ``csrc/cpu/add.cpp``, ``csrc/cuda/add.cu``. See ``csrc/add.h``.
"""
from __future__ import annotations

from .. import _validate as V

__all__ = ["add"]


def add(a, b, *, out=None):
    """``out = a + b`` elementwise (float32 addition: the CPU and the GPU agree exactly).

    Args:
        a, b: float32 arrays of one shape (ndim >= 1), C-contiguous, on one device.
        out: optional float32 target of that shape. ``out=a`` or ``out=b`` adds in place; any
            other overlap with the inputs is rejected.

    Returns:
        The sum (``out`` itself when given).
    """
    k, out = V.elementwise(out, a=a, b=b)
    k.add(a, b, out)
    return out
