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

Opening checks the whole set up front, cheaply (:func:`check_shards`): every file the index
names is present and a plain file name; each image shard's ``.npy`` header says uint8
``(count, C, S, S)`` as the index does and the file holds exactly that many bytes (a truncated
shard is named at once, not met mid-epoch); labels are read once and must lie in
``0..classes-1``; the mean and PCA have their shapes and are finite.

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
    try:
        names = [s[key] for sp in index["splits"].values() for s in sp["shards"]
                 for key in ("images", "labels")]
        names += [index[k] for k in ("mean", "pca") if index.get(k)]
    except (AttributeError, KeyError, TypeError) as e:
        raise DatasetError(f"{path / INDEX}: malformed shard index ({type(e).__name__}: {e})") from None
    odd = [n for n in names if not isinstance(n, str) or not n or os.path.basename(n) != n
           or n.startswith(".")]
    if odd:
        raise DatasetError(f"{path / INDEX}: {odd[0]!r}: expected a file name in the directory")
    try:
        missing = [s[key] for sp in index["splits"].values() for s in sp["shards"]
                   for key in ("images", "labels") if not (path / s[key]).is_file()]
        missing += [index[k] for k in ("mean", "pca") if index.get(k) and not (path / index[k]).is_file()]
    except (AttributeError, KeyError, TypeError) as e:
        raise DatasetError(f"{path / INDEX}: malformed shard index ({type(e).__name__}: {e})") from None
    if missing:
        raise DatasetError(f"{path}: shard directory is incomplete, missing {len(missing)} file(s): "
                           + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    return index


def _bad(path, why: str) -> DatasetError:
    return DatasetError(f"{path}: {why}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _npy_header(path: Path):
    """``(shape, fortran_order, dtype, data offset)`` from a .npy file's header."""
    fmt = np.lib.format
    with open(path, "rb") as f:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            raise ValueError(f".npy format version {version}")
        return shape, fortran, dtype, f.tell()


def check_shards(path: Path, index: dict):
    """Check a shard set against its index (see the module docstring); returns ``(labels
    {split: int64 array}, mean, pca or None)``. Raises :class:`DatasetError` naming the file and the problem."""
    path = Path(path)
    where = path / INDEX
    names = index.get("class_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise _bad(where, "class_names: expected a non-empty list of names")
    c, size = index.get("channels"), index.get("image_size")
    if c not in (1, 3) or not (isinstance(size, list) and len(size) == 2
                               and all(_is_int(v) and v >= 1 for v in size)):
        raise _bad(where, f"channels {c!r} / image_size {size!r}: expected 1 or 3 / [S, S]")
    h, w = size
    splits = index.get("splits")
    if not isinstance(splits, dict) or "train" not in splits:
        raise _bad(where, "splits: expected {\"train\": {...}, [\"val\": {...}]}")

    def file_of(name, what):
        if not isinstance(name, str) or not name or os.path.basename(name) != name \
                or name.startswith("."):
            raise _bad(where, f"{what}: expected a file name in the directory, got {name!r}")
        return path / name

    labels = {}
    for split, sp in splits.items():
        shards = sp.get("shards") if isinstance(sp, dict) else None
        if not isinstance(shards, list):
            raise _bad(where, f"splits.{split}: expected {{\"shards\": [...]}}")
        parts = []
        for k, s in enumerate(shards):
            if not isinstance(s, dict) or not _is_int(s.get("count")) or s["count"] < 0:
                raise _bad(where, f"splits.{split}.shards[{k}]: expected "
                                  "{\"images\", \"labels\", \"count\" >= 0}")
            n = s["count"]
            images = file_of(s.get("images"), f"splits.{split}.shards[{k}].images")
            try:
                shape, fortran, dtype, offset = _npy_header(images)
                actual = os.path.getsize(images)
            except (OSError, ValueError) as e:
                raise _bad(images, f"cannot read the shard's header: {e}") from None
            if dtype != np.uint8 or fortran or tuple(shape) != (n, c, h, w):
                raise _bad(images, f"holds {dtype} {tuple(shape)}"
                                   f"{' (Fortran order)' if fortran else ''}; index.json says "
                                   f"uint8 {(n, c, h, w)}")
            want = offset + n * c * h * w
            if actual != want:
                raise _bad(images, f"{'truncated' if actual < want else 'too long'}: "
                                   f"{actual} bytes, its header and index.json say {want}; "
                                   "prepare the data again")
            lab_path = file_of(s.get("labels"), f"splits.{split}.shards[{k}].labels")
            try:
                lab = np.load(lab_path, allow_pickle=False)
            except (OSError, ValueError, EOFError) as e:
                raise _bad(lab_path, f"cannot read the labels: {e}") from None
            if lab.shape != (n,) or not np.issubdtype(lab.dtype, np.integer):
                raise _bad(lab_path, f"holds {lab.dtype} {lab.shape}; expected {n} integer labels")
            if n and (lab.min() < 0 or lab.max() >= len(names)):
                raise _bad(lab_path, f"labels {lab.min()}..{lab.max()} outside 0..{len(names) - 1} "
                                     f"({len(names)} classes)")
            parts.append(lab.astype(np.int64))
        labels[split] = np.concatenate(parts) if parts else np.zeros(0, np.int64)

    mean_path = file_of(index.get("mean"), "mean")
    try:
        mean = np.load(mean_path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise _bad(mean_path, f"cannot read the mean image: {e}") from None
    if mean.dtype != np.float32 or mean.shape != (c, h, w) or not np.isfinite(mean).all():
        raise _bad(mean_path, f"holds {mean.dtype} {mean.shape}; expected finite float32 {(c, h, w)}")
    pca = None
    if index.get("pca"):
        pca_path = file_of(index["pca"], "pca")
        try:
            with np.load(pca_path, allow_pickle=False) as z:
                pca = (z["eigvals"], z["eigvecs"])
        except (OSError, ValueError, EOFError, KeyError) as e:
            raise _bad(pca_path, f"cannot read the PCA: {e}") from None
        if pca[0].shape != (3,) or pca[1].shape != (3, 3) or not all(
                np.issubdtype(a.dtype, np.floating) and np.isfinite(a).all() for a in pca):
            raise _bad(pca_path, "expected finite eigvals (3,) and eigvecs (3, 3)")
    return labels, mean, pca


def read_plan(path: Path):
    """plan.json of a preparation (what prepare ran on), or None."""
    try:
        with open(Path(path) / "plan.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
