"""Shared by the uint8-batch tests (loader dtype="uint8", ops.normalize_batch, DeviceFeed): a
random split with a mean image and PCA, loaders over it, random normalize_batch arguments, and
the float path's numbers."""
import numpy as np

from alexnet_ext.data import BatchLoader, Split
from alexnet_ext.data.stores import ArrayStore


def random_split(rng, n=24, c=3, h=11, w=13):
    """A split of n random uint8 images, their (non-integer) float32 mean and a PCA pair."""
    img = rng.integers(0, 256, (n, c, h, w), dtype=np.uint8)
    mean = (img.astype(np.float64).mean(0) + rng.uniform(-0.3, 0.3, (c, h, w))).astype(np.float32)
    vecs, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    pca = (rng.uniform(0.5, 40.0, 3), vecs)
    return Split("train", np.arange(n) % 7, ArrayStore(img)), img, mean, pca


def loader(split, mean, pca, dtype="float32", **kw):
    args = dict(batch_size=8, crop=9, mean=mean, pca=pca if split.image_shape[0] == 3 else None,
                lighting=0.1, scale=1 / 255, seed=5, workers=0, dtype=dtype)
    args.update(kw)
    return BatchLoader(split, **args)


def random_case(rng, b=5, c=3, s=6, t=7, h=9, w=11):
    """normalize_batch's arguments: b uint8 crops (c, s, t) of (c, h, w) images, a float32 mean
    image, random in-range offsets with random flips, and a per-image shift."""
    x = rng.integers(0, 256, (b, c, s, t), dtype=np.uint8)
    mean = rng.uniform(0, 255, (c, h, w)).astype(np.float32)
    offsets = np.stack([rng.integers(0, h - s + 1, b), rng.integers(0, w - t + 1, b),
                        rng.integers(0, 2, b)], 1).astype(np.int32)
    shift = rng.normal(0, 8, (b, c)).astype(np.float32)
    return x, mean, offsets, shift


def reference(x, mean, offsets, shift, scale):
    """normalize_batch in float64 from the definition (no order of rounding imposed)."""
    b, c, s, t = x.shape
    out = np.empty(x.shape, np.float64)
    for i in range(b):
        top, left, flipped = (0, 0, 0) if offsets is None else offsets[i]
        m = mean[:, top:top + s, left:left + t].astype(np.float64)
        if flipped:
            m = m[:, :, ::-1]
        sh = 0.0 if shift is None else shift[i].astype(np.float64)[:, None, None]
        out[i] = (x[i].astype(np.float64) - m + sh) * scale
    return out


def float32_steps(x, mean, offsets, shift, scale):
    """normalize_batch in float32, one rounding per step in the documented order: the bits the
    op must give."""
    out = np.empty(x.shape, np.float32)
    b, c, s, t = x.shape
    for i in range(b):
        top, left, flipped = (0, 0, 0) if offsets is None else offsets[i]
        m = mean[:, top:top + s, left:left + t]
        if flipped:
            m = m[:, :, ::-1]
        v = x[i].astype(np.float32) - m
        if shift is not None:
            v = v + shift[i][:, None, None]
        out[i] = v * np.float32(scale)
    return out
