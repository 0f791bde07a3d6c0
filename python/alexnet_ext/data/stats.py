"""Training-set statistics: the per-pixel mean image and the PCA of RGB values.

Both come from integer sums that are exact (int64 / Python int), so the result does not depend
on the order the images were added in (how many processes prepared which shard) and
partial sums can be saved per shard and merged later (resumable preparation).

- mean image: ``sum_i x_i / n`` per (channel, row, column), as float32 ``(C, H, W)``.
- PCA: the 3x3 covariance of the RGB values of all training pixels (population covariance,
  dividing by the pixel count), its eigenvalues in descending order and eigenvectors as the
  columns of a 3x3 matrix, each signed so that its largest-magnitude component is positive.
  Values are in 0..255 pixel units.

PCA lighting (paper, Data section): add ``[p1 p2 p3] [a1 l1, a2 l2, a3 l3]^T`` to every pixel,
``a_i ~ N(0, 0.1)``. The formula is not scale-free (``l_i`` is a variance, in squared intensity
units), and 0.1 only makes sense with intensities in [0, 1]: that is the convention of the widely
used reproductions (ImageNet eigenvalues ~0.22, 0.019, 0.0045), under which the shift is a few
percent of full scale. :func:`lighting_shift` therefore applies the formula in [0, 1] units and
returns the shift in 0..255 pixel units: ``255 * P (a * l / 255**2) = P (a * l) / 255``.
"""
from __future__ import annotations

import numpy as np

# Images per float64 matmul: 16 * 256 * 256 * 255**2 < 2**53, so each partial dot product of
# integer pixel values is exact whatever order the BLAS sums in.
_CHUNK_PIXELS = 1 << 20


class PixelStats:
    """Exact integer sums over uint8 images ``(n, C, H, W)`` (C = 1 or 3)."""

    def __init__(self, channels: int, height: int, width: int):
        self.shape = (channels, height, width)
        self.count = 0  # images
        self.pixel_sum = np.zeros(self.shape, np.int64)
        self.rgb_outer = np.zeros((3, 3), np.int64) if channels == 3 else None

    def add(self, images: np.ndarray) -> None:
        if images.dtype != np.uint8 or images.shape[1:] != self.shape:
            raise ValueError(f"images: expected uint8 (n, {', '.join(map(str, self.shape))}), "
                             f"got {images.dtype} {images.shape}")
        n = images.shape[0]
        self.count += n
        self.pixel_sum += images.sum(axis=0, dtype=np.int64)
        if self.rgb_outer is None:
            return
        per = max(1, _CHUNK_PIXELS // (self.shape[1] * self.shape[2]))
        for s in range(0, n, per):
            x = images[s:s + per].transpose(1, 0, 2, 3).reshape(3, -1).astype(np.float64)
            self.rgb_outer += np.rint(x @ x.T).astype(np.int64)

    def merge(self, other: "PixelStats") -> None:
        if other.shape != self.shape:
            raise ValueError(f"cannot merge statistics of shape {other.shape} into {self.shape}")
        self.count += other.count
        self.pixel_sum += other.pixel_sum
        if self.rgb_outer is not None:
            self.rgb_outer += other.rgb_outer

    # -- persistence (one .npz per shard) --
    def save(self, file) -> None:
        """Write to an open binary file (``.npz`` content)."""
        arrays = {"count": np.int64(self.count), "pixel_sum": self.pixel_sum}
        if self.rgb_outer is not None:
            arrays["rgb_outer"] = self.rgb_outer
        np.savez(file, **arrays)

    @classmethod
    def load(cls, path) -> "PixelStats":
        with np.load(path) as z:
            s = cls(*z["pixel_sum"].shape)
            s.count = int(z["count"])
            s.pixel_sum = z["pixel_sum"].astype(np.int64)
            if "rgb_outer" in z:
                s.rgb_outer = z["rgb_outer"].astype(np.int64)
        return s

    # -- results --
    def mean_image(self) -> np.ndarray:
        if self.count == 0:
            raise ValueError("no training images: the mean is undefined")
        return (self.pixel_sum / self.count).astype(np.float32)

    def covariance(self) -> np.ndarray:
        """3x3 population covariance of RGB values (0..255 units), float64, exact up to the
        final rounding (computed with Python integers)."""
        if self.rgb_outer is None:
            raise ValueError("PCA lighting needs 3-channel images")
        if self.count == 0:
            raise ValueError("no training images: the covariance is undefined")
        npix = self.count * self.shape[1] * self.shape[2]
        s = [int(v) for v in self.pixel_sum.sum(axis=(1, 2))]
        q = [[int(v) for v in row] for row in self.rgb_outer]
        # cov = (N * sum x x^T - sum x sum x^T) / N^2, all integers until the division.
        return np.array([[(npix * q[i][j] - s[i] * s[j]) / (npix * npix) for j in range(3)]
                         for i in range(3)], np.float64)

    def pca(self):
        """``(eigvals (3,), eigvecs (3, 3))`` float64, or None for 1-channel data."""
        if self.rgb_outer is None:
            return None
        return pca_of_covariance(self.covariance())


def pca_of_covariance(cov: np.ndarray):
    vals, vecs = np.linalg.eigh(cov)
    order = np.argsort(vals)[::-1]
    vals = np.maximum(vals[order], 0.0)  # a covariance is PSD; clip rounding noise
    vecs = vecs[:, order]
    signs = np.sign(vecs[np.argmax(np.abs(vecs), axis=0), np.arange(3)])
    vecs = vecs * np.where(signs == 0, 1.0, signs)
    return np.ascontiguousarray(vals), np.ascontiguousarray(vecs)


def lighting_shift(pca, alphas: np.ndarray) -> np.ndarray:
    """Per-image RGB shift in 0..255 units for ``alphas`` (n, 3); see the module docstring."""
    vals, vecs = pca
    return ((alphas * vals) @ np.asarray(vecs).T / 255.0).astype(np.float32)
