"""A small generated image dataset, for quick training runs without downloads.

:func:`default_dataset` draws, once, ten classes of shapes as real JPEG files in
``train/<class>/`` and ``val/<class>/`` folders (so the ordinary image-tree path reads them):

    disc, ring, square, triangle, cross, star, bars, two-discs, checker, frame

Every image has a random background (a colour gradient plus pixel noise and a few thin random
lines as clutter) and one shape at a random position near the centre, random size, random
rotation and a random colour with some contrast against the background. Colour therefore says
nothing about the class; shape does. Each shape is defined up to rotation, so a horizontal flip
keeps the label, and it stays well inside the central area, so random crops of
``size - 8`` keep it in view. Shapes are drawn at 4x and downsampled (anti-aliased), and the
JPEG compression adds its own artefacts.

The files depend only on the parameters (each image's generator is seeded by
``(seed, split, class, index)``). Generation goes to a temporary folder that is renamed into
place when complete, with ``dataset.json`` (the parameters, and ``image_size`` for
:func:`~alexnet_ext.data.open_dataset`), so an interrupted run is never taken for a finished one.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .. import _validate as V
from .errors import DatasetError
from .parallel import map_ordered

VERSION = 1
CLASS_NAMES = ("disc", "ring", "square", "triangle", "cross", "star", "bars", "two-discs",
               "checker", "frame")
DEFAULTS = {"classes": 10, "train_per_class": 500, "val_per_class": 100, "size": 72, "seed": 0}
_SS = 4  # supersampling factor for drawing


def cache_root() -> Path:
    """``$ALEXNET_EXT_CACHE`` or ``~/.cache/alexnet_ext``."""
    return Path(os.environ.get("ALEXNET_EXT_CACHE") or "~/.cache/alexnet_ext").expanduser()


def _rotated(points, angle, cx, cy):
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in points]


def _polygon_star(r, points=5, inner=0.45):
    return [((r if i % 2 == 0 else r * inner) * math.sin(math.pi * i / points),
             -(r if i % 2 == 0 else r * inner) * math.cos(math.pi * i / points))
            for i in range(2 * points)]


def _draw_shape(draw, kind, cx, cy, r, angle, fill):
    """Shape ``kind`` of radius ~``r`` centred at (cx, cy), rotated by ``angle``."""
    if kind == "disc":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif kind == "ring":
        w = max(1, int(r * 0.38))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fill, width=w)
    elif kind == "square":
        h = r * 0.85
        draw.polygon(_rotated([(-h, -h), (h, -h), (h, h), (-h, h)], angle, cx, cy), fill=fill)
    elif kind == "triangle":
        pts = [(r * math.sin(2 * math.pi * i / 3), -r * math.cos(2 * math.pi * i / 3)) for i in range(3)]
        draw.polygon(_rotated(pts, angle, cx, cy), fill=fill)
    elif kind == "cross":
        a, b = r, r * 0.3
        for pts in ([(-a, -b), (a, -b), (a, b), (-a, b)], [(-b, -a), (b, -a), (b, a), (-b, a)]):
            draw.polygon(_rotated(pts, angle, cx, cy), fill=fill)
    elif kind == "star":
        draw.polygon(_rotated(_polygon_star(r * 1.1), angle, cx, cy), fill=fill)
    elif kind == "bars":
        w = r * 0.22
        for k in (-2, 0, 2):
            y0 = k * w
            pts = [(-r, y0 - w / 2 - w / 4), (r, y0 - w / 2 - w / 4), (r, y0 + w / 2 + w / 4),
                   (-r, y0 + w / 2 + w / 4)]
            draw.polygon(_rotated(pts, angle, cx, cy), fill=fill)
    elif kind == "two-discs":
        d, rr = r * 0.55, r * 0.42
        for px, py in _rotated([(-d, 0), (d, 0)], angle, cx, cy):
            draw.ellipse([px - rr, py - rr, px + rr, py + rr], fill=fill)
    elif kind == "checker":
        h = r * 0.8
        cell = 2 * h / 3
        for i in range(3):
            for j in range(3):
                if (i + j) % 2 == 0:
                    x0, y0 = -h + j * cell, -h + i * cell
                    pts = [(x0, y0), (x0 + cell, y0), (x0 + cell, y0 + cell), (x0, y0 + cell)]
                    draw.polygon(_rotated(pts, angle, cx, cy), fill=fill)
    elif kind == "frame":
        h, t = r * 0.85, r * 0.3
        outer = _rotated([(-h, -h), (h, -h), (h, h), (-h, h)], angle, cx, cy)
        inner = _rotated([(-h + t, -h + t), (h - t, -h + t), (h - t, h - t), (-h + t, h - t)], angle, cx, cy)
        draw.polygon(outer, fill=fill)
        draw.polygon(inner, fill=0)
    else:  # pragma: no cover - CLASS_NAMES is fixed
        raise ValueError(kind)


def render(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One image of class ``kind``: uint8 (size, size, 3)."""
    f32 = np.float32
    # Background: a random linear colour gradient plus noise.
    c0, c1 = rng.uniform(0, 255, 3).astype(f32), rng.uniform(0, 255, 3).astype(f32)
    theta = rng.uniform(0, 2 * math.pi)
    t = np.linspace(0.0, 1.0, size, dtype=f32)
    ramp = f32(math.cos(theta)) * t[None, :] + f32(math.sin(theta)) * t[:, None]
    ramp -= ramp.min()
    ramp /= max(float(ramp.max()), 1e-6)
    img = c0 + (c1 - c0) * ramp[..., None]
    img += rng.standard_normal((size, size, 3), dtype=f32) * f32(rng.uniform(8, 24))
    # Shape colour: random, but at least some distance from the background's mean colour.
    mean_bg = (c0 + c1) / 2
    for _ in range(20):
        colour = rng.uniform(0, 255, 3).astype(f32)
        if float(np.sum((colour - mean_bg) ** 2)) > 100.0 ** 2:
            break
    # Clutter: thin lines in random colours, under the shape.
    lines = Image.new("L", (size, size), 0)
    ldraw = ImageDraw.Draw(lines)
    for _ in range(int(rng.integers(1, 5))):
        ldraw.line([tuple(rng.uniform(0, size, 2)), tuple(rng.uniform(0, size, 2))], fill=255, width=1)
    lm = np.asarray(lines, f32)[..., None] * f32(1 / 255)
    img += (rng.uniform(0, 255, 3).astype(f32) - img) * lm
    # Shape mask drawn at _SS x and downsampled: an anti-aliased coverage map in [0, 1].
    big = size * _SS
    mask = Image.new("L", (big, big), 0)
    r = rng.uniform(0.18, 0.32) * big
    jitter = big / 10
    cx, cy = big / 2 + rng.uniform(-jitter, jitter), big / 2 + rng.uniform(-jitter, jitter)
    _draw_shape(ImageDraw.Draw(mask), kind, cx, cy, r, rng.uniform(0, 2 * math.pi), 255)
    m = np.asarray(mask.resize((size, size), Image.Resampling.BOX), f32)[..., None] * f32(1 / 255)
    shade = colour + rng.standard_normal((size, size, 3), dtype=f32) * f32(10)  # texture
    img += (shade - img) * m
    np.clip(img, 0, 255, out=img)
    return np.rint(img).astype(np.uint8)


def _class_dir(c: int) -> str:
    return f"{c:02d}-{CLASS_NAMES[c]}"


def _generate_class(args):
    tmp, c, counts, size, seed = args
    for split_id, (split, n) in enumerate(counts):
        d = Path(tmp) / split / _class_dir(c)
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rng = np.random.default_rng([seed, split_id, c, i])
            Image.fromarray(render(CLASS_NAMES[c], size, rng)).save(d / f"{i:05d}.jpg", quality=90)


def default_dataset(root=None, *, classes: int = 10, train_per_class: int = 500,
                    val_per_class: int = 100, size: int = 72, seed: int = 0,
                    workers: int | None = None) -> Path:
    """The synthetic dataset's folder, generated on first use (see the module docstring).

    ``root``: where to put it; default ``cache_root() / "synthetic-v1"`` (with the parameters
    appended when they are not the defaults). ``classes``: 1..10 (the first ``classes`` shapes).
    Default: 10 classes x (500 train + 100 val) JPEGs of 72x72, about 25 MB; a small network
    takes 64x64 random crops. Returns the path; open it with ``open_dataset(path)``.
    """
    classes = V.integer(classes, "classes", 1)
    if classes > len(CLASS_NAMES):
        raise ValueError(f"classes: at most {len(CLASS_NAMES)} (one per shape), got {classes}")
    params = {"classes": classes, "train_per_class": V.integer(train_per_class, "train_per_class", 1),
              "val_per_class": V.integer(val_per_class, "val_per_class", 0),
              "size": V.integer(size, "size", 16), "seed": V.integer(seed, "seed", 0)}
    if root is None:
        suffix = "".join(f"-{k}{v}" for k, v in params.items() if v != DEFAULTS[k])
        root = cache_root() / f"synthetic-v{VERSION}{suffix}"
    root = Path(root)
    meta = {"generator": "alexnet_ext.data.synthetic", "version": VERSION, **params,
            "image_size": params["size"], "class_names": [_class_dir(c) for c in range(classes)]}
    if root.exists():
        _check_existing(root, meta)
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        counts = [("train", params["train_per_class"]), ("val", params["val_per_class"])]
        jobs = [(str(tmp), c, counts, params["size"], params["seed"]) for c in range(classes)]
        total = classes * (params["train_per_class"] + params["val_per_class"])
        # A pool costs ~1 s to start: worth it for the full dataset, not for small test sets.
        for _ in map_ordered(_generate_class, jobs, workers=1 if total <= 2000 else workers,
                             chunksize=1):
            pass
        with open(tmp / "dataset.json", "w") as f:
            json.dump(meta, f, indent=1)
        try:
            os.rename(tmp, root)
        except OSError:
            if not (root / "dataset.json").is_file():  # lost a race to a broken directory
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _check_existing(root, meta)
    return root


def _check_existing(root: Path, meta: dict) -> None:
    try:
        with open(root / "dataset.json") as f:
            have = json.load(f)
    except (OSError, ValueError):
        raise DatasetError(f"{root}: exists but holds no synthetic dataset (no readable "
                           "dataset.json); remove it or choose another root") from None
    keys = ("generator", "version", "classes", "train_per_class", "val_per_class", "size", "seed")
    diff = [k for k in keys if have.get(k) != meta[k]]
    if diff:
        raise DatasetError(f"{root}: holds a synthetic dataset with other parameters ("
                           + ", ".join(f"{k} {have.get(k)!r} != {meta[k]!r}" for k in diff)
                           + "); remove it or choose another root")
