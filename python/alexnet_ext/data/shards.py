"""The prepared-shard format written by ``python -m alexnet_ext.prepare``.

A directory holding::

    index.json                  what is here (below); written last, so its presence means done
    mean.npy                    float32 (C, S, S): per-pixel mean of the training images
    pca.npz                     eigvals (3,), eigvecs (3, 3) [columns], covariance (3, 3),
                                all float64, of the training RGB values (0..255); 3-channel only
    train-00000-images.npy      uint8 (n, C, S, S), C-contiguous: memory-mappable
    train-00000-labels.npy      int64 (n,)
    ...  val-00000-images.npy, val-00000-labels.npy ...
    report.json                 what preparation did (counts, skipped files, timings)

``index.json``::

    {"format": "alexnet_ext-shards", "version": 1,
     "class_names": [...], "channels": 3, "image_size": [S, S],
     "splits": {"train": {"count": N, "shards": [{"images": "train-00000-images.npy",
                                                  "labels": "train-00000-labels.npy",
                                                  "count": n}, ...]},
                "val": {...}},                   # "val" absent when there is none
     "mean": "mean.npy", "pca": "pca.npz" | null}

Preparation also leaves ``<shard>.json`` / ``<shard>-stats.npz`` files and ``plan.json``, used
only to resume an interrupted run. Every file is written under a temporary name and renamed.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .errors import DatasetError
from .stats import PixelStats

FORMAT = "alexnet_ext-shards"
VERSION = 1
INDEX = "index.json"


def shard_name(split: str, k: int) -> str:
    return f"{split}-{k:05d}"


def atomic_write_bytes(path: Path, write) -> None:
    """``write(file)`` into ``path.tmp-<pid>``, then rename over ``path``."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_npy(path: Path, array: np.ndarray) -> None:
    atomic_write_bytes(path, lambda f: np.save(f, np.ascontiguousarray(array), allow_pickle=False))


def save_json(path: Path, obj) -> None:
    text = json.dumps(obj, indent=1).encode()
    atomic_write_bytes(path, lambda f: f.write(text))


def save_shard(out: Path, split: str, k: int, images: np.ndarray, labels: np.ndarray) -> dict:
    """Write one shard; returns its index.json entry."""
    name = shard_name(split, k)
    save_npy(out / f"{name}-images.npy", images)
    save_npy(out / f"{name}-labels.npy", labels.astype(np.int64))
    return {"images": f"{name}-images.npy", "labels": f"{name}-labels.npy", "count": int(len(labels))}


def save_statistics(out: Path, stats: PixelStats) -> dict:
    """mean.npy and (3 channels) pca.npz; returns the index.json keys."""
    save_npy(out / "mean.npy", stats.mean_image())
    if stats.rgb_outer is None:
        return {"mean": "mean.npy", "pca": None}
    cov = stats.covariance()
    vals, vecs = stats.pca()

    def write(f):
        np.savez(f, eigvals=vals, eigvecs=vecs, covariance=cov)
    atomic_write_bytes(out / "pca.npz", write)
    return {"mean": "mean.npy", "pca": "pca.npz"}


def write_index(out: Path, class_names, channels: int, size: int, splits: dict, stat_keys: dict) -> None:
    save_json(out / INDEX, {
        "format": FORMAT, "version": VERSION, "class_names": list(class_names),
        "channels": int(channels), "image_size": [int(size), int(size)],
        "splits": {name: {"count": sum(s["count"] for s in shards), "shards": shards}
                   for name, shards in splits.items()},
        **stat_keys,
    })


def write_shards(out, class_names, train, val=None, *, shard_size: int = 1024) -> Path:
    """A shard set from arrays already in memory (tests, benchmarks, converted datasets).

    ``train`` / ``val`` are ``(images uint8 (n, C, S, S), labels (n,))``. Computes the mean and
    PCA from ``train``. Returns ``out``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images, _ = train
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[2] != images.shape[3]:
        raise ValueError(f"train images: expected uint8 (n, C, S, S), got {images.dtype} {images.shape}")
    stats = PixelStats(*images.shape[1:])
    splits = {}
    for name, part in (("train", train), ("val", val)):
        if part is None:
            continue
        imgs, labels = part
        entries = []
        for k, s in enumerate(range(0, len(labels), shard_size)):
            entries.append(save_shard(out, name, k, imgs[s:s + shard_size], np.asarray(labels[s:s + shard_size])))
            if name == "train":
                stats.add(imgs[s:s + shard_size])
        splits[name] = entries
    write_index(out, class_names, images.shape[1], images.shape[2], splits, save_statistics(out, stats))
    return out


def is_shard_dir(path: Path) -> bool:
    p = Path(path) / INDEX
    if not p.is_file():
        return False
    try:
        with open(p) as f:
            return json.load(f).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read_index(path: Path) -> dict:
    """index.json of a shard directory, checked: version, every listed file present."""
    path = Path(path)
    try:
        with open(path / INDEX) as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path / INDEX}: cannot read the shard index: {e}") from None
    if index.get("format") != FORMAT:
        raise DatasetError(f"{path / INDEX}: not an alexnet_ext shard index")
    if index.get("version") != VERSION:
        raise DatasetError(f"{path / INDEX}: shard format version {index.get('version')}, this "
                           f"alexnet_ext reads version {VERSION}; prepare the data again")
    missing = [s[key] for sp in index["splits"].values() for s in sp["shards"]
               for key in ("images", "labels") if not (path / s[key]).is_file()]
    missing += [index[k] for k in ("mean", "pca") if index.get(k) and not (path / index[k]).is_file()]
    if missing:
        raise DatasetError(f"{path}: shard directory is incomplete, missing {len(missing)} file(s): "
                           + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    return index
