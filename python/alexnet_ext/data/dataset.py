"""Datasets: :func:`open_dataset` recognises what is at a path and returns a :class:`Dataset`."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from .. import _validate as V
from . import cifar, folder, idx, shards
from .errors import DatasetError
from .imageio import resize_square
from .stats import PixelStats
from .stores import ArrayStore, FileStore, ShardStore

DEFAULT_IMAGE_SIZE = 256  # the paper: shorter side to 256, central 256x256


class Split:
    """One split (``"train"`` or ``"val"``) of a dataset: labels plus uint8 images.

    ``len(split)``, ``split.labels`` (int64 (n,), read-only), ``split.images(indices)`` ->
    uint8 ``(len(indices), C, H, W)``, ``split.image_shape`` = (C, H, W).
    """

    def __init__(self, name: str, labels: np.ndarray, store):
        self.name = name
        self.labels = np.ascontiguousarray(labels, dtype=np.int64)
        self.labels.setflags(write=False)
        self.store = store
        if len(store) != len(self.labels):
            raise DatasetError(f"{name}: {len(store)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.store.shape)

    @property
    def paths(self) -> list[str] | None:
        """The image files of an image-folder split, in index order; None for arrays/shards."""
        return getattr(self.store, "paths", None)

    def images(self, indices) -> np.ndarray:
        """uint8 ``(len(indices), C, H, W)`` for a sequence / integer array of indices."""
        idx_ = np.asarray(indices)
        if idx_.ndim != 1 or not (idx_.size == 0 or np.issubdtype(idx_.dtype, np.integer)):
            raise TypeError(f"indices: expected a 1-D sequence of ints, got {idx_.dtype} {idx_.shape}")
        if idx_.size and (idx_.min() < 0 or idx_.max() >= len(self)):
            raise ValueError(f"indices: expected values in [0, {len(self)}), got {idx_.min()}..{idx_.max()}")
        return self.store.images(idx_.astype(np.int64))

    def __repr__(self):
        c, h, w = self.image_shape
        return f"<Split {self.name}: {len(self)} images {c}x{h}x{w}>"


class Dataset:
    """A labelled image dataset with the training statistics the paper's pipeline needs.

    Attributes: ``format`` ("shards", "image-folder", "idx", "cifar10", "cifar100"),
    ``location`` (path), ``class_names``, ``num_classes``, ``channels`` (1 or 3), ``image_size``
    ((H, W) of the stored images), ``mean`` (float32 (C, H, W) per-pixel mean of the training
    images), ``pca`` ((eigvals (3,), eigvecs (3, 3)) float64 of the covariance of training RGB
    values in 0..255 units, eigenvectors as columns, or None for 1-channel data), ``skipped``
    (files that could not be decoded, as ``(path, error)``; image folders only).
    """

    def __init__(self, format: str, location, class_names, splits: dict, mean, pca, skipped=()):
        self.format = format
        self.location = str(location)
        self.class_names = list(class_names)
        self._splits = splits
        train = splits["train"]
        self.channels, h, w = train.image_shape
        self.image_size = (h, w)
        self.mean = mean
        self.pca = pca
        self.skipped = list(skipped)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> Split | None:
        """``"train"`` or ``"val"``; None when the dataset has no such split."""
        if name not in ("train", "val"):
            raise ValueError(f"name: expected 'train' or 'val', got {name!r}")
        return self._splits.get(name)

    def describe(self) -> str:
        val = self._splits.get("val")
        h, w = self.image_size
        return (f"{self.format} at {self.location}: {self.num_classes} classes, "
                f"{len(self._splits['train'])} train / {len(val) if val else 0} val images, "
                f"{self.channels}x{h}x{w}")

    def __repr__(self):
        return f"<Dataset {self.describe()}>"


def _stats(images: np.ndarray) -> PixelStats:
    s = PixelStats(*images.shape[1:])
    for i in range(0, len(images), 4096):
        s.add(images[i:i + 4096])
    return s


def _in_memory(fmt, location, class_names, parts: dict, image_size, skipped=()) -> Dataset:
    """A Dataset from ``{"train": (images (n, C, H, W), labels), "val": ...}`` arrays."""
    if image_size is not None:
        parts = {k: (resize_square(im, image_size), lb) for k, (im, lb) in parts.items()}
    for k, (_, lb) in parts.items():
        if lb.size and (lb.min() < 0 or lb.max() >= len(class_names)):
            raise DatasetError(f"{location}: {k} labels outside 0..{len(class_names) - 1}")
    if len(parts["train"][1]) == 0:
        raise DatasetError(f"{location}: no training images")
    splits = {k: Split(k, lb, ArrayStore(np.ascontiguousarray(im))) for k, (im, lb) in parts.items()}
    s = _stats(parts["train"][0])
    return Dataset(fmt, location, class_names, splits, s.mean_image(), s.pca(), skipped)


def _open_shards(path: Path, image_size) -> Dataset:
    index = shards.read_index(path)
    labels, mean, pca = shards.check_shards(path, index)  # sizes, labels, stats: up front
    c = index["channels"]
    h, w = index["image_size"]
    if image_size is not None and (image_size, image_size) != (h, w):
        plan = shards.read_plan(path)
        src = plan.get("src") if isinstance(plan, dict) else None
        raise DatasetError(f"{path}: shards hold {h}x{w} images, not {image_size}x{image_size}; "
                           "prepare them at that size: python -m alexnet_ext.prepare "
                           f"{src or 'SRC'} NEW_OUT --size {image_size}")
    splits = {}
    for name, sp in index["splits"].items():
        if name not in ("train", "val"):
            continue
        store = ShardStore([path / s["images"] for s in sp["shards"]],
                           [s["count"] for s in sp["shards"]], (c, h, w))
        splits[name] = Split(name, labels[name], store)
    if "train" not in splits or len(splits["train"]) == 0:
        raise DatasetError(f"{path}: shard set has no training images")
    return Dataset("shards", path, index["class_names"], splits, mean, pca)


def _open_tree(scan: folder.TreeScan, image_size, workers) -> Dataset:
    """Lazy: each file is decoded once here to check it (and, for train, to sum the mean and
    RGB covariance), then per use by the loader (see :mod:`alexnet_ext.data.folder`)."""
    size = image_size or int(scan.meta.get("image_size", DEFAULT_IMAGE_SIZE))
    splits, skipped, stats = {}, [], None
    for name, items in scan.splits.items():
        paths = [p for p, _ in items]
        ok, failures, st = folder.check_files(paths, size, stats=name == "train", workers=workers,
                                              desc=f"checking {name} images")
        skipped += [(folder.show_path(p), e) for p, e in failures]
        if name == "train":
            stats = st
        labels = np.array([lb for _, lb in items], np.int64)[ok]
        splits[name] = Split(name, labels, FileStore([p for p, k in zip(paths, ok) if k], size))
    skipped += scan.skipped
    if skipped:
        warnings.warn(f"{scan.root}: skipped {len(skipped)} file(s) or folder(s), e.g. "
                      f"{skipped[0][0]} ({skipped[0][1]}); the list is in Dataset.skipped",
                      stacklevel=3)
    if len(splits["train"]) == 0:
        raise DatasetError(f"{scan.root}: no training images could be decoded "
                           f"({len(skipped)} skipped, e.g. {skipped[0][0]}: {skipped[0][1]})")
    return Dataset("image-folder", scan.root, scan.class_names, splits, stats.mean_image(),
                   stats.pca(), skipped)


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))


def _listing(names: list[str], what: str) -> str:
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return f"{len(names)} {what}(s)" + (f" ({shown})" if names else "")


def _not_a_dataset(path: Path) -> DatasetError:
    dirs = [p.name for p in folder._subdirs(path)]
    found = (_listing([p.name for p in _files(path)], "file") + " and " + _listing(dirs, "folder")
             + (" without image files" if dirs else ""))
    return DatasetError(
        f"{path}: not a dataset. Looked for: a prepared shard directory (index.json), MNIST-style "
        "IDX files, CIFAR-10/100 python batches, or an image tree (train/<class>/<images> [+ "
        f"val/<class>/<images>], or <class>/<images>). Found: {found}.")


def open_dataset(path, *, image_size: int | None = None, val_fraction: float = 0.1,
                 workers: int | None = None) -> Dataset:
    """Open the dataset at ``path``, recognised by content:

    - a prepared shard directory (``python -m alexnet_ext.prepare``; see
      :mod:`alexnet_ext.data.shards`), memory-mapped, nothing decoded;
    - an image tree (see :mod:`alexnet_ext.data.folder`): images are scaled so the shorter side
      is ``image_size`` (default 256, or the tree's ``dataset.json``), centre cropped to
      ``image_size x image_size`` and converted to RGB when they are read; nothing is held in
      memory. Opening decodes each file once to check it and to compute the training mean and
      PCA; unreadable files, link loops and non-regular files are skipped with a warning (listed
      in ``Dataset.skipped`` as ``(path, reason)``); without a ``val`` folder, ``val_fraction``
      of each class is split off deterministically;
    - MNIST-style IDX files: a directory holding them, or a list of the 2 or 4 file paths
      (1 channel, stored size unless ``image_size`` is given);
    - CIFAR-10 / CIFAR-100 python batches (a directory holding them).

    ``workers``: processes for checking an image tree (default: all cores; they are started
    with the spawn method, so a calling script needs the ``if __name__ == "__main__":`` guard;
    ``workers=1`` decodes in this process).
    Raises :class:`DatasetError` (a ``ValueError``) saying what was looked for and found.
    """
    if image_size is not None:
        image_size = V.integer(image_size, "image_size", 1)
    val_fraction = V.real(val_fraction, "val_fraction", 0.0)
    if isinstance(path, (list, tuple)):
        paths = [Path(p) for p in path]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise DatasetError(f"no such file: {', '.join(missing)}")
        found = idx.find_idx(paths)
        if found is None:
            raise DatasetError(f"none of {', '.join(map(str, paths))} is an IDX file")
        return _open_idx(found, ", ".join(map(str, paths)), image_size)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a path or a list of IDX file paths, got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or directory")
    if path.is_file():
        what = ("an IDX file: pass its directory or the list [images, labels, ...] of IDX files"
                if idx.read_header(path) else "a file")
        raise DatasetError(f"{path}: is {what}; expected a directory holding a dataset (shard "
                           "directory, IDX files, CIFAR batches or an image tree)")
    if shards.is_shard_dir(path):
        return _open_shards(path, image_size)
    if (path / "plan.json").is_file() and not (path / shards.INDEX).exists():
        raise DatasetError(f"{path}: an unfinished preparation (plan.json but no index.json); "
                           "run python -m alexnet_ext.prepare again to finish it")
    files = _files(path)
    found = idx.find_idx(files)
    if found is not None:
        return _open_idx(found, path, image_size)
    found = cifar.find_cifar(files)
    if found is not None:
        fmt, parts, names = found
        return _in_memory(fmt, path, names, parts, image_size)
    scan = folder.scan_tree(path, val_fraction)
    if scan is not None:
        return _open_tree(scan, image_size, workers)
    error = _not_a_dataset(path)
    subdirs = folder._subdirs(path)
    if len(subdirs) == 1 and not files:
        # An archive's top folder (e.g. cifar-10-batches-py/): look one level down.
        try:
            return open_dataset(subdirs[0], image_size=image_size, val_fraction=val_fraction,
                                workers=workers)
        except DatasetError:
            pass
    raise error


def _open_idx(found: dict, location, image_size) -> Dataset:
    parts = {k: idx.load_pair(*v) for k, v in found.items()}
    n_classes = int(max(lb.max(initial=-1) for _, lb in parts.values())) + 1
    return _in_memory("idx", location, [str(i) for i in range(n_classes)], parts, image_size)
