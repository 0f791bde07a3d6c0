"""Decoding one image file into the paper's preprocessed form.

AlexNet preprocessing (paper, Data section): rescale so that the shorter side is ``size``, then
take the central ``size x size`` crop. Both steps together are one resampling of the central
``m x m`` square of the source (``m`` = shorter side) to ``size x size``, which is what
:func:`load_image` asks Pillow to do (``resize(box=...)``): pixels outside the crop are never
resampled. Every image comes out as 8-bit RGB, channel-first ``(3, size, size)``.

JPEG draft mode: libjpeg can decode at 1/2, 1/4 or 1/8 scale directly from the DCT coefficients.
With ``draft=True`` we ask for the smallest such scale that still leaves the shorter side
``>= size``, then resample as above. It changes nothing for images whose shorter side is below
``2 * size`` (typical ILSVRC photos are ~500x375 and decode at full scale) and makes large photos
several times faster to decode; ``bench/data.py`` measures it.
"""
from __future__ import annotations

import os
import stat
from functools import lru_cache

import numpy as np
from PIL import Image

# Resampling filter for the rescale step; bicubic with Pillow's antialiasing on downscale.
RESAMPLE = Image.Resampling.BICUBIC


@lru_cache(maxsize=1)
def image_extensions() -> frozenset[str]:
    """File name suffixes (lower case, with the dot) that Pillow can open."""
    return frozenset(ext.lower() for ext in Image.registered_extensions())


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in image_extensions()


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode as 8-bit RGB: grayscale is replicated, CMYK/YCbCr/palette converted,
    alpha dropped; 16/32-bit integer grayscale keeps its high byte, float is clipped to 0..255."""
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I;16") or img.mode == "I":
        # 16-bit grayscale (and 32-bit integer, taken as 16-bit): keep the high byte.
        a = np.clip(np.asarray(img, dtype=np.int64), 0, 65535) >> 8
        return Image.fromarray(a.astype(np.uint8), "L").convert("RGB")
    if img.mode == "F":
        a = np.clip(np.rint(np.asarray(img, dtype=np.float64)), 0, 255)
        return Image.fromarray(a.astype(np.uint8), "L").convert("RGB")
    return img.convert("RGB")


def square_box(width: int, height: int) -> tuple[float, float, float, float]:
    """The central ``m x m`` square (``m = min(width, height)``) as a Pillow box."""
    m = min(width, height)
    left = (width - m) / 2.0
    top = (height - m) / 2.0
    return (left, top, left + m, top + m)


def load_image(path, size: int, *, draft: bool = True) -> np.ndarray:
    """Decode ``path``: shorter side to ``size``, central ``size x size`` crop, RGB.

    Returns a uint8 array ``(3, size, size)``. Raises ``OSError`` / ``ValueError`` (from Pillow)
    for files that are not readable images, and for anything that is not a regular file (opened
    without blocking: a FIFO named ``x.jpg`` would otherwise wait forever for a writer); callers
    decide whether that is fatal.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file (FIFO, device or socket)")
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with f, Image.open(f) as img:
        if draft and img.format == "JPEG":
            # Smallest DCT scale whose result still has both sides >= size.
            img.draft("RGB", (size, size))
        img = to_rgb(img)
        img = img.resize((size, size), RESAMPLE, box=square_box(*img.size))
        return np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))


def resize_square(images: np.ndarray, size: int) -> np.ndarray:
    """The same preprocessing for images already in memory: uint8 ``(n, C, H, W)`` with C in
    {1, 3} -> ``(n, C, size, size)`` (shorter side to ``size``, central crop)."""
    n, c, h, w = images.shape
    if (h, w) == (size, size):
        return images
    out = np.empty((n, c, size, size), np.uint8)
    box = square_box(w, h)
    for i in range(n):
        for ch in range(c):
            img = Image.fromarray(images[i, ch], "L")
            out[i, ch] = np.asarray(img.resize((size, size), RESAMPLE, box=box))
    return out
