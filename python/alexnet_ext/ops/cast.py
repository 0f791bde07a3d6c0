"""float32 <-> bfloat16 conversion, for the convolutions' bf16 precision.

Kernels: ``csrc/cpu/cast.cpp`` and ``csrc/cuda/cast.cu``, one conversion shared by both
(``csrc/cast.h``), bit for bit the same as ``ml_dtypes``' ``astype``.
"""
from __future__ import annotations

import numpy as np

from .. import _validate as V

__all__ = ["cast"]


def cast(x, dtype, *, out=None):
    """``x`` converted to ``dtype``, on the side (CPU or GPU) where ``x`` lives.

    float32 -> bfloat16 rounds to nearest, ties to even (subnormals included; values past the
    largest bfloat16 become inf, inf stays inf, -0.0 stays -0.0, a NaN becomes the quiet NaN of
    its sign). bfloat16 -> float32 is exact.

    Args:
        x: float32 or bfloat16 array (NumPy or DeviceArray), C-contiguous, non-empty.
        dtype: the other of the two: ``np.float32`` or ``alexnet_ext.cuda.bfloat16``.
        out: optional target of x's shape and ``dtype``, beside x, not overlapping it.

    Returns:
        The converted array (``out`` itself when given).
    """
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: expected float32 or bfloat16, got {dtype!r}") from None
    if dtype not in (V.FLOAT, V.BF16):
        raise TypeError(f"dtype: expected float32 or bfloat16, got {dtype}")
    source = V.BF16 if dtype == V.FLOAT else V.FLOAT
    V.array_of(x, "x", (source,))
    k = V.backend(x, out)
    if out is None:
        out = V.empty_like(x, dtype=dtype)
    else:
        V.array_of(out, "out", (dtype,))
        V.expect_shape(out, x.shape, "out", "the shape of x")
        V.writable(out, "out")
        V.no_alias(out, "out", x=x)
    k.cast(x, out)
    return out
