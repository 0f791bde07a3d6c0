"""Fixed crops of preprocessed images: the centre patch and the paper's 10 test views.

Both work on the last two axes of any array with at least 2 dimensions, keep the dtype, and
return new C-contiguous arrays. To evaluate with the mean subtracted, crop ``images - mean``
(float32) or crop the uint8 images and the mean image separately: cropping and flipping commute
with the subtraction.
"""
from __future__ import annotations

import numpy as np

from .. import _validate as V

#: The order of :func:`ten_view_crops`: (name, top-left corner rule, flipped).
TEN_VIEW_ORDER = (
    "top-left", "top-right", "bottom-left", "bottom-right", "centre",
    "top-left flipped", "top-right flipped", "bottom-left flipped", "bottom-right flipped",
    "centre flipped",
)


def _check(images, crop):
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images: expected a numpy.ndarray, got {type(images).__name__}")
    if images.ndim < 2:
        raise ValueError(f"images: expected at least 2 dimensions (..., H, W), got shape {images.shape}")
    crop = V.integer(crop, "crop", 1)
    h, w = images.shape[-2:]
    if crop > h or crop > w:
        raise ValueError(f"crop: {crop} is larger than the images ({h}x{w})")
    return crop, h, w


def center_offsets(h: int, w: int, crop: int) -> tuple[int, int]:
    """Top-left corner of the central ``crop x crop`` patch (rounded towards the top-left)."""
    return (h - crop) // 2, (w - crop) // 2


def center_crop(images: np.ndarray, crop: int) -> np.ndarray:
    """The central ``crop x crop`` patch of ``images (..., H, W)`` -> ``(..., crop, crop)``.

    The corner is ``((H - crop) // 2, (W - crop) // 2)``; the same rule as the evaluation mode
    of :class:`~alexnet_ext.data.BatchLoader` and view 4 of :func:`ten_view_crops`.
    """
    crop, h, w = _check(images, crop)
    y, x = center_offsets(h, w, crop)
    return np.ascontiguousarray(images[..., y:y + crop, x:x + crop])


def ten_view_offsets(h: int, w: int, crop: int) -> list[tuple[int, int, bool]]:
    """``(top, left, flipped)`` of each of the 10 views, in :data:`TEN_VIEW_ORDER`."""
    cy, cx = center_offsets(h, w, crop)
    five = [(0, 0), (0, w - crop), (h - crop, 0), (h - crop, w - crop), (cy, cx)]
    return [(y, x, False) for y, x in five] + [(y, x, True) for y, x in five]


def ten_view_crops(images: np.ndarray, crop: int) -> np.ndarray:
    """The paper's 10 test views of ``images (..., H, W)`` -> ``(10, ..., crop, crop)``.

    Views, in order (:data:`TEN_VIEW_ORDER`): 0 top-left, 1 top-right, 2 bottom-left,
    3 bottom-right, 4 centre (as :func:`center_crop`), then 5-9 the same five patches
    flipped horizontally (``[..., ::-1]`` along W). Average the network's softmax over axis 0.
    """
    crop, h, w = _check(images, crop)
    out = np.empty((10,) + images.shape[:-2] + (crop, crop), images.dtype)
    for v, (y, x, flipped) in enumerate(ten_view_offsets(h, w, crop)):
        patch = images[..., y:y + crop, x:x + crop]
        out[v] = patch[..., ::-1] if flipped else patch
    return out
