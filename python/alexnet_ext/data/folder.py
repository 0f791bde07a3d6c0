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

The walk below a class folder follows symbolic links, but enters each real directory (by
``(st_dev, st_ino)``) once and lists each real file once (per class folder), so link loops
cannot make it endless and a linked-to image cannot appear twice in a class (in its train and
its val part, say). It skips, and reports in ``TreeScan.skipped`` as ``(path, reason)``: links
seen again, broken links, folders it cannot
list, names that are not valid UTF-8 (shown with ``\\x..`` escapes), and image-named entries
that are not regular files (a FIFO named ``x.jpg`` would block the reader forever).

Decoding (:func:`check_files`): an image folder is not decoded into memory. Opening one decodes
every file once, in parallel, only to find the unreadable ones and to sum the training mean and
RGB covariance; the images themselves are decoded again per batch, by the loader's workers,
from a :class:`~alexnet_ext.data.stores.FileStore`. So a folder larger than memory works, at
the price of decoding per epoch; ``python -m alexnet_ext.prepare`` decodes once into shards
(the way to train on a large set). A cache of decoded images was the alternative; it needs
disk space of the decoded set, invalidation and a location, for what prepare already does.
"""
from __future__ import annotations

import json
import os
import stat
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DatasetError
from .imageio import is_image_name, load_image
from .stats import PixelStats

VAL_NAMES = ("val", "validation", "valid", "test")
META = "dataset.json"


@dataclass
class TreeScan:
    root: Path
    layout: str                       # "train/val" or "classes"
    class_names: list[str]
    splits: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # name -> [(path, label)]
    meta: dict = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # [(shown path, reason)]


def show_path(path) -> str:
    """``path`` as printable text: bytes that are not UTF-8 (held as surrogates by Python)
    appear as ``\\xNN`` escapes. Safe to print and to write to JSON."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def _utf8_name(name: str) -> bool:
    try:
        name.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _subdirs(path: Path) -> list[Path]:
    try:
        found = sorted((p for p in path.iterdir() if not p.name.startswith(".") and p.is_dir()),
                       key=lambda p: p.name)
    except OSError as e:
        raise DatasetError(f"{show_path(path)}: cannot list the folder: {e}") from None
    bad = [show_path(p) for p in found if not _utf8_name(p.name)]
    if bad:
        raise DatasetError(f"folder name{'s' if len(bad) > 1 else ''} not valid UTF-8: "
                           f"{', '.join(bad[:5])}; class names must be text, rename "
                           f"{'them' if len(bad) > 1 else 'it'}")
    return found


def list_images(folder, skipped: list | None = None) -> list[str]:
    """Image files below ``folder`` (recursively, following links once per real directory and
    file; see the module docstring), sorted by path. What is skipped is appended to
    ``skipped`` as ``(shown path, reason)``."""
    skipped = [] if skipped is None else skipped
    found = []
    seen_dirs: dict[tuple[int, int], str] = {}
    seen_files: dict[tuple[int, int], str] = {}
    stack = [str(folder)]
    while stack:
        d = stack.pop()
        try:
            st = os.stat(d)
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:
                skipped.append((show_path(d), f"a link to {show_path(seen_dirs[key])}, which is "
                                              "already listed (link loop or duplicate): not followed"))
                continue
            seen_dirs[key] = d
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            skipped.append((show_path(d), f"cannot list the folder: {e.strerror or e}"))
            continue
        subdirs = []
        for e in entries:
            if e.name.startswith("."):
                continue
            if not _utf8_name(e.name):
                skipped.append((show_path(e.path), "name is not valid UTF-8: rename it"))
                continue
            try:
                st = e.stat()  # follows links
            except OSError as err:
                if is_image_name(e.name) or e.is_symlink():
                    skipped.append((show_path(e.path), f"cannot stat it (broken link?): "
                                                       f"{err.strerror or err}"))
                continue
            if stat.S_ISDIR(st.st_mode):
                subdirs.append(e.path)
            elif is_image_name(e.name):
                if not stat.S_ISREG(st.st_mode):
                    skipped.append((show_path(e.path), "not a regular file (FIFO, device or "
                                                       "socket): not read"))
                    continue
                key = (st.st_dev, st.st_ino)
                if key in seen_files:
                    skipped.append((show_path(e.path), f"the same file as "
                                                       f"{show_path(seen_files[key])}: listed once"))
                    continue
                seen_files[key] = e.path
                found.append(e.path)
        stack.extend(reversed(subdirs))  # depth first, in name order
    return sorted(found)


def _class_files(folders: list[Path], skipped: list) -> dict[str, list[str]]:
    files = {}
    for d in folders:
        mine = []
        files[d.name] = list_images(d, mine)
        skipped += mine
        if not files[d.name] and mine:
            raise DatasetError(f"{d}: no usable image files in the class folder; skipped "
                               f"{len(mine)}: {mine[0][0]} ({mine[0][1]})"
                               + (", ..." if len(mine) > 1 else ""))
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
            if list_images(by_name["train"], []):
                raise DatasetError(f"{by_name['train']}: holds images but no class folders "
                                   "(expected train/<class>/<image files>)")
            return None
        skipped = []
        files = _class_files(train_classes, skipped)
        class_names = [d.name for d in train_classes]
        scan = TreeScan(root, "train/val", class_names, meta=_read_meta(root), skipped=skipped)
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
            vfiles = _class_files(val_classes, skipped)
            scan.splits["val"] = [(f, label[d.name]) for d in val_classes for f in vfiles[d.name]]
        return scan
    if not subdirs:
        return None
    # One folder of class folders: only a tree if some class folder holds images.
    skipped = []
    files = {d.name: list_images(d, skipped) for d in subdirs}
    if not any(files.values()):
        return None
    _class_files(subdirs, [])  # raises naming the empty ones
    class_names = [d.name for d in subdirs]
    scan = TreeScan(root, "classes", class_names, meta=_read_meta(root), skipped=skipped)
    train, val = [], []
    for label, c in enumerate(class_names):
        t, v = split_off(files[c], c, val_fraction)
        train += [(f, label) for f in t]
        val += [(f, label) for f in v]
    scan.splits["train"] = train
    if val:
        scan.splits["val"] = val
    return scan


def _check_chunk(job):
    """Decode a chunk of files: which ones decode, and (``stats``) their pixel statistics."""
    from .parallel import report_progress

    paths, size, draft, want_stats = job
    ok, failures = [], []
    stats = PixelStats(3, size, size) if want_stats else None
    for path in paths:
        try:
            img = load_image(path, size, draft=draft)
        except Exception as e:  # noqa: BLE001 - any undecodable file is reported, not fatal
            ok.append(False)
            failures.append((path, f"{type(e).__name__}: {e}"))
        else:
            ok.append(True)
            if stats is not None:
                stats.add(img[None])
        report_progress()
    return ok, failures, stats


def check_files(paths: list[str], size: int, *, stats: bool, draft: bool = True,
                workers: int | None = None, desc: str | None = None, chunk: int = 32):
    """Decode every file once (in parallel processes when there are many) without keeping it.

    Returns ``(ok (bool per path), failures [(path, error)], PixelStats of the decodable
    images or None)``; memory stays at one chunk of images per process.
    """
    from .parallel import map_ordered

    total = PixelStats(3, size, size) if stats else None
    oks, failures = [], []
    jobs = [(paths[i:i + chunk], size, draft, stats) for i in range(0, len(paths), chunk)]
    for ok, fail, st in map_ordered(_check_chunk, jobs, workers=workers, desc=desc, chunksize=1,
                                    min_parallel=max(2, 512 // chunk), progress_total=len(paths)):
        oks += ok
        failures += fail
        if st is not None:
            total.merge(st)
    return np.array(oks, bool), failures, total
