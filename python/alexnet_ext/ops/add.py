"""Elementwise sum ``add`` (gradients that reach a tensor from several layers).

Kernels: ``csrc/cpu/add.cpp``, ``csrc/cuda/add.cu``. See ``csrc/add.h``.

bfloat16: on the GPU ``a``, ``b`` and ``out`` may instead all be bfloat16 DeviceArrays. The sum is
computed in float32 from the widened values and rounded once to bfloat16 (nearest, ties to even),
which equals the exact sum correctly rounded (csrc/add.h says why).
"""
from __future__ import annotations

from .. import _validate as V

__all__ = ["add"]


def add(a, b, *, out=None):
    """``out = a + b`` elementwise (float32 addition: the CPU and the GPU agree exactly).

    Args:
        a, b: float32 arrays (or bfloat16 DeviceArrays) of one shape (ndim >= 1) and dtype,
            C-contiguous, on one device.
        out: optional target of that shape and dtype. ``out=a`` or ``out=b`` adds in place; any
            other overlap with the inputs is rejected.

    Returns:
        The sum (``out`` itself when given).
    """
    k, out = V.elementwise(out, a=a, b=b)
    k.add(a, b, out)
    return out
