"""Image trees: finding classes and files, splitting off validation, decoding in parallel.

Two layouts are recognised:

- ``ROOT/train/<class>/...`` and optionally ``ROOT/val/<class>/...`` (``validation``, ``valid``
  or ``test`` are accepted for ``val``); every class of ``val`` must be a class of ``train``.
- ``ROOT/<class>/...``: validation is split off per class, deterministically: the class's files
  in sorted order are permuted by a generator seeded from the class name, and the first
  ``round(n * val_fraction)`` go to validation.

Image files are those whose suffix Pillow knows, at any depth below a class folder; hidden
files and folders (``.``-prefixed) are ignored. A class folder without image files is an error.
An optional ``ROOT/dataset.json`` may give ``{"image_size": S}``, the size images are read at
when the caller does not say (the synthetic dataset uses it).
"""
from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DatasetError
from .imageio import is_image_name, load_image

VAL_NAMES = ("val", "validation", "valid", "test")
META = "dataset.json"


@dataclass
class TreeScan:
    root: Path
    layout: str                       # "train/val" or "classes"
    class_names: list[str]
    splits: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # name -> [(path, label)]
    meta: dict = field(default_factory=dict)


def _subdirs(path: Path) -> list[Path]:
    try:
        return sorted((p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      key=lambda p: p.name)
    except OSError as e:
        raise DatasetError(f"{path}: cannot list the folder: {e}") from None


def list_images(folder: Path) -> list[str]:
    """Image files below ``folder`` (recursively), sorted by path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [os.path.join(dirpath, f) for f in filenames
                  if not f.startswith(".") and is_image_name(f)]
    return sorted(found)


def _class_files(folders: list[Path]) -> dict[str, list[str]]:
    files = {d.name: list_images(d) for d in folders}
    empty = [str(d) for d in folders if not files[d.name]]
    if empty:
        raise DatasetError(f"empty class folder{'s' if len(empty) > 1 else ''}: {', '.join(empty)} "
                           "(no image files in it)")
    return files


def _read_meta(root: Path) -> dict:
    p = root / META
    if not p.is_file():
        return {}
    try:
        with open(p) as f:
            meta = json.load(f)
        return meta if isinstance(meta, dict) else {}
    except (OSError, ValueError):
        return {}


def split_off(files: list[str], class_name: str, val_fraction: float) -> tuple[list[str], list[str]]:
    """Deterministic per-class train/val split (see module docstring)."""
    n_val = int(round(len(files) * val_fraction))
    perm = np.random.default_rng(zlib.crc32(class_name.encode())).permutation(len(files))
    val = set(perm[:n_val].tolist())
    return ([f for i, f in enumerate(files) if i not in val], [f for i, f in enumerate(files) if i in val])


def scan_tree(root, val_fraction: float = 0.1) -> TreeScan | None:
    """The image tree at ``root``, or None when ``root`` does not look like one.

    Raises :class:`DatasetError` for a tree that is recognisable but broken (empty class
    folder, validation classes missing from train).
    """
    root = Path(root)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction: expected a number in [0, 1), got {val_fraction}")
    subdirs = _subdirs(root)
    by_name = {d.name.lower(): d for d in subdirs}
    if "train" in by_name:
        train_classes = _subdirs(by_name["train"])
        if not train_classes:
            if list_images(by_name["train"]):
                raise DatasetError(f"{by_name['train']}: holds images but no class folders "
                                   "(expected train/<class>/<image files>)")
            return None
        files = _class_files(train_classes)
        class_names = [d.name for d in train_classes]
        scan = TreeScan(root, "train/val", class_names, meta=_read_meta(root))
        label = {c: i for i, c in enumerate(class_names)}
        scan.splits["train"] = [(f, label[c]) for c in class_names for f in files[c]]
        val_dir = next((by_name[n] for n in VAL_NAMES if n in by_name), None)
        if val_dir is not None:
            val_classes = _subdirs(val_dir)
            unknown = [d.name for d in val_classes if d.name not in label]
            if unknown:
                raise DatasetError(f"{val_dir}: class folder(s) {', '.join(unknown[:5])} do not "
                                   f"exist in {by_name['train']}")
            if not val_classes:
                raise DatasetError(f"{val_dir}: no class folders (expected "
                                   f"{val_dir.name}/<class>/<image files>)")
            vfiles = _class_files(val_classes)
            scan.splits["val"] = [(f, label[d.name]) for d in val_classes for f in vfiles[d.name]]
        return scan
    if not subdirs:
        return None
    # One folder of class folders: only a tree if some class folder holds images.
    files = {d.name: list_images(d) for d in subdirs}
    if not any(files.values()):
        return None
    _class_files(subdirs)  # raises naming the empty ones
    class_names = [d.name for d in subdirs]
    scan = TreeScan(root, "classes", class_names, meta=_read_meta(root))
    train, val = [], []
    for label, c in enumerate(class_names):
        t, v = split_off(files[c], c, val_fraction)
        train += [(f, label) for f in t]
        val += [(f, label) for f in v]
    scan.splits["train"] = train
    if val:
        scan.splits["val"] = val
    return scan


def _decode_job(job):
    path, size, draft = job
    try:
        return load_image(path, size, draft=draft), None
    except Exception as e:  # noqa: BLE001 - any undecodable file is reported, not fatal
        return None, f"{type(e).__name__}: {e}"


def decode_files(paths: list[str], size: int, *, draft: bool = True, workers: int | None = None,
                 desc: str | None = None):
    """Decode ``paths`` with :func:`load_image`, in parallel processes when there are many.

    Returns ``(images uint8 (n_ok, 3, size, size), ok (bool per path), failures [(path, error)])``.
    """
    from .parallel import map_ordered

    out = np.empty((len(paths), 3, size, size), np.uint8)
    ok = np.zeros(len(paths), bool)
    failures = []
    jobs = [(p, size, draft) for p in paths]
    for i, (img, err) in enumerate(map_ordered(_decode_job, jobs, workers=workers, desc=desc,
                                               min_parallel=512)):
        if err is None:
            out[i] = img
            ok[i] = True
        else:
            failures.append((paths[i], err))
    return (out if ok.all() else out[ok]), ok, failures
