"""Pictures of a run: learning curves, first-layer filters (paper Fig. 3), neighbours (Fig. 4).

matplotlib with the Agg backend (files only, no display needed). Every function writes a PNG
atomically (temporary name, then rename) and returns its path.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["plot_curves", "plot_filters", "plot_neighbors", "filter_mosaic"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    # An exclusively created temporary beside the file, then a rename (never through a link).
    from .nn.checkpoint import atomic_write

    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, dpi=100, format="png"))
    return path


def plot_curves(history: list[dict], path, title: str = "", top5: bool = True) -> Path:
    """Loss and top-1/top-5 error against epoch from metrics.jsonl records (``top5``: draw the
    validation top-5 error; meaningless, always 0, with 5 classes or fewer)."""
    plt = _pyplot()
    ep = [h["epoch"] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(ep, [h["train_loss"] for h in history], "o-", ms=3, label="train")
    if any(h.get("val_loss") is not None for h in history):
        ax1.plot(ep, [h.get("val_loss") for h in history], "s-", ms=3, label="validation")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss (mean -log p)")
    ax1.set_title("loss")
    ax1.legend()
    ax1.grid(alpha=0.3)
    ax2.plot(ep, [100 * h["train_top1"] for h in history], "o-", ms=3, label="train top-1")
    if any(h.get("val_top1") is not None for h in history):
        ax2.plot(ep, [_pct(h.get("val_top1")) for h in history], "s-", ms=3, label="val top-1")
        if top5:
            ax2.plot(ep, [_pct(h.get("val_top5")) for h in history], "^-", ms=3,
                     label="val top-5")
    # Mark each learning-rate change.
    for a, b in zip(history, history[1:]):
        if b["lr"] != a["lr"]:
            for ax in (ax1, ax2):
                ax.axvline(b["epoch"] - 0.5, color="grey", ls=":", lw=1)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("error (%)")
    ax2.set_title("error")
    ax2.set_ylim(bottom=0)
    ax2.legend()
    ax2.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def _pct(v):
    return None if v is None else 100 * v


def filter_mosaic(weights: np.ndarray, columns: int = 1, per_row: int | None = None,
                  gap: int = 1, column_gap: int = 4) -> np.ndarray:
    """First-layer filters (F, C, kh, kw) as one image (H, W, 3) in [0, 1].

    Each filter is scaled on its own so that 0 is mid-grey and its largest |value| reaches 0 or 1
    (RGB for 3 input channels, grey otherwise, from the first channel). The filters of each
    column form a band of rows; bands are stacked top to bottom, separated by a wider gap.
    """
    f, c, kh, kw = weights.shape
    per_col = f // columns
    if per_row is None:
        per_row = min(per_col, 16)
    rows = math.ceil(per_col / per_row)
    w = weights.astype(np.float64)
    if c == 3:
        img = w.transpose(0, 2, 3, 1)
    else:
        img = np.repeat(w[:, :1].transpose(0, 2, 3, 1), 3, axis=3)
    m = np.abs(img).reshape(f, -1).max(axis=1)
    img = 0.5 + img / (2 * np.where(m > 0, m, 1))[:, None, None, None]
    band_h = rows * (kh + gap) - gap
    height = columns * band_h + (columns - 1) * column_gap
    width = per_row * (kw + gap) - gap
    out = np.ones((height, width, 3))
    for i in range(f):
        col, j = divmod(i, per_col)
        r, k = divmod(j, per_row)
        y = col * (band_h + column_gap) + r * (kh + gap)
        x = k * (kw + gap)
        out[y:y + kh, x:x + kw] = img[i]
    return out


def plot_filters(weights: np.ndarray, columns: int, path, title: str = "") -> Path:
    """The first conv layer's kernels as a colour grid, one band of rows per column."""
    plt = _pyplot()
    mosaic = filter_mosaic(weights, columns)
    h, w = mosaic.shape[:2]
    scale = max(1.0, 480 / max(w, 1))
    fig = plt.figure(figsize=(w * scale / 100 + 1.2, h * scale / 100 + 0.8))
    ax = fig.add_axes([0.12, 0.02, 0.86, 0.86])
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([])
    f = weights.shape[0]
    if columns > 1:
        band = h / columns
        ax.set_yticks([band * (c + 0.5) for c in range(columns)])
        ax.set_yticklabels([f"column {c + 1}" for c in range(columns)])
        ax.tick_params(length=0)
    else:
        ax.set_yticks([])
    ax.set_title(title or f"{f} first-layer kernels", fontsize=10)
    out = _save(fig, path)
    plt.close(fig)
    return out


def _as_hwc(img: np.ndarray) -> np.ndarray:
    """(C, H, W) uint8 -> something imshow shows (H, W, 3) or (H, W) grey."""
    if img.shape[0] == 1:
        return img[0]
    return img[:3].transpose(1, 2, 0)


def plot_neighbors(queries: list[np.ndarray], neighbors: list[list[np.ndarray]],
                   query_titles: list[str], neighbor_titles: list[list[str]], path,
                   title: str = "") -> Path:
    """One row per query: the query image, then its nearest training images."""
    plt = _pyplot()
    rows, cols = len(queries), 1 + max(len(n) for n in neighbors)
    fig, axes = plt.subplots(rows, cols, figsize=(1.45 * cols, 1.6 * rows), squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                img, t = queries[r], query_titles[r]
                for s in ax.spines.values():
                    s.set_edgecolor("tab:red")
                    s.set_linewidth(2)
            elif c - 1 < len(neighbors[r]):
                img, t = neighbors[r][c - 1], neighbor_titles[r][c - 1]
            else:
                ax.axis("off")
                continue
            ax.imshow(_as_hwc(img), cmap="gray" if img.shape[0] == 1 else None,
                      interpolation="nearest")
            ax.set_title(t, fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out
