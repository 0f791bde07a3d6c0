"""normalize_batch: uint8 crops to the network's float32 input in one pass (mean, lighting, scale).

The data loader's ``dtype="uint8"`` mode (:class:`alexnet_ext.data.BatchLoader`) hands out the
crops as uint8 with their crop corners, flips and lighting shifts; this op finishes the
augmentation where the batch will be used (on the GPU in training: a quarter of the bytes cross
the bus). Kernels: ``csrc/cpu/normalize_batch.cpp``, ``csrc/cuda/normalize_batch.cu``; see
``csrc/normalize_batch.h``. The result is bit for bit the loader's float32 path.

bfloat16: on the GPU the output may be bfloat16 (``out_dtype=alexnet_ext.cuda.bfloat16`` or a
bfloat16 ``out``): the float32 result rounded once, bit for bit ``ops.cast`` of the float32 op.
"""
from __future__ import annotations

import numpy as np

from .. import _validate as V

__all__ = ["normalize_batch"]

_U8 = np.dtype(np.uint8)
_I32 = np.dtype(np.int32)


def normalize_batch(x, mean, offsets=None, shift=None, *, scale=1.0, out=None, out_dtype=None):
    """``out = scale * (x + shift - mean_crop)`` per image, in float32.

    ``out[b, c, r, q] = ((float32(x[b, c, r, q]) - m) + shift[b, c]) * float32(scale)``, each
    step rounded to float32 in that order (the loader's float path's order, hence its bits),
    where ``m = mean[c, top + r, left + q]``, or ``mean[c, top + r, left + T - 1 - q]`` for a
    flipped crop (``x`` is already flipped; the mean crop is flipped to match).

    Args:
        x: (B, C, S, T) uint8 crops, as the loader's uint8 mode returns them.
        mean: (C, H, W) float32 mean image, H >= S, W >= T (``Dataset.mean``).
        offsets: (B, 3) int32 rows ``(top, left, flipped)``: each crop's corner in the image
            (``0 <= top <= H - S``, ``0 <= left <= W - T``) and 1 if it was flipped, else 0. None:
            every crop at (0, 0), unflipped (e.g. a mean already cropped to S x T).
        shift: (B, C) float32 per-image lighting shift added to every pixel of a channel (in the
            units of x), or None for none.
        scale: a finite number; the product is taken in float32.
        out: optional (B, C, S, T) target of out_dtype (must not overlap the inputs).
        out_dtype: None (``out``'s dtype when given, else float32), ``numpy.float32`` or
            ``alexnet_ext.cuda.bfloat16`` (GPU only): the float32 value rounded once.

    A bad ``offsets`` entry raises ``ValueError`` naming it: at once for NumPy arrays (nothing is
    written); for DeviceArrays the kernel clamps the corner into the mean image (no read out of
    bounds) and the error is raised at the next synchronisation (the next ``get()``, loss read or
    ``cuda.synchronize()``), so the call never waits for the GPU.

    Returns:
        out, (B, C, S, T) of out_dtype (``out`` itself when given).
    """
    if not isinstance(x, np.ndarray) and not V._is_device(x):
        raise TypeError(f"x: expected a numpy.ndarray of uint8, got {V._type_name(x)}")
    if x.dtype != _U8:
        raise TypeError(f"x: expected dtype uint8, got {x.dtype}")
    V._dense_array(x, "x", 4, "(B, C, S, T)")
    b, c, s, t = x.shape
    V.float_array(mean, "mean", 3, "(C, H, W)")
    if mean.shape[0] != c:
        raise ValueError(f"mean: expected {c} channels (x's), got shape {mean.shape}")
    h, w = mean.shape[1:]
    if h < s or w < t:
        raise ValueError(f"mean: a {h}x{w} mean image is smaller than the {s}x{t} crops")
    if offsets is not None:
        if not isinstance(offsets, np.ndarray) and not V._is_device(offsets):
            raise TypeError(f"offsets: expected a numpy.ndarray of int32, got {V._type_name(offsets)}")
        if offsets.dtype != _I32:
            raise TypeError(f"offsets: expected dtype int32, got {offsets.dtype}")
        V._dense_array(offsets, "offsets", 2, "(B, 3)")
        V.expect_shape(offsets, (b, 3), "offsets", "one (top, left, flipped) row per image")
    if shift is not None:
        V.float_array(shift, "shift", 2, "(B, C)")
        V.expect_shape(shift, (b, c), "shift", "one value per image and channel")
    scale = V.real(scale, "scale")
    kern = V.backend(x, mean, offsets, shift, out)
    dt = V.out_dtype(out_dtype, "out_dtype", out, bf16=V._is_device(x),
                     why="runs on the GPU only (DeviceArrays)")
    out = V.output(out, (b, c, s, t), dtype=dt, x=x, mean=mean, offsets=offsets, shift=shift)
    kern.normalize_batch(x, mean, offsets, shift, scale, out)
    return out
