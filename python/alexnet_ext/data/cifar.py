"""CIFAR-10 / CIFAR-100 "python version" batches.

CIFAR-10: ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` (dicts with ``data`` (10000, 3072)
uint8 rows of R, G, B planes of 32x32, ``labels``) and ``batches.meta`` (``label_names``).
CIFAR-100: ``train``, ``test`` (``data``, ``fine_labels``, ``coarse_labels``) and ``meta``
(``fine_label_names``). Files are recognised by their content (pickled dicts with these keys);
training vs test by ``batch_label`` ("testing batch ...") or, failing that, a ``test`` file name.

The files are pickles. They are read with an unpickler that only admits the few NumPy names an
array needs, so a crafted file cannot run code.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from .errors import DatasetError

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR file")


def _key(d, name):
    """Keys are bytes in the original (Python 2) files, str in re-pickled ones."""
    if name.encode() in d:
        return d[name.encode()]
    return d.get(name)


def _text(v):
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def load_pickle(path):
    with open(path, "rb") as f:
        return _SafeUnpickler(f, encoding="bytes").load()


def _looks_pickled(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5
    except OSError:
        return False


def find_cifar(paths: list[Path]):
    """``(format, {"train": (images, labels), "val": ...}, class_names)`` or None."""
    batches, meta10, meta100 = [], None, None
    for p in sorted(paths):
        if not _looks_pickled(p) or p.stat().st_size > (1 << 30):
            continue
        try:
            d = load_pickle(p)
        except Exception:  # noqa: BLE001 - not one of ours: look at the next file
            continue
        if not isinstance(d, dict):
            continue
        if _key(d, "label_names") is not None:
            meta10 = [_text(v) for v in _key(d, "label_names")]
        elif _key(d, "fine_label_names") is not None:
            meta100 = [_text(v) for v in _key(d, "fine_label_names")]
        elif _key(d, "data") is not None and (_key(d, "labels") is not None
                                              or _key(d, "fine_labels") is not None):
            batches.append((p, d))
    if not batches:
        return None
    fine = [_key(d, "fine_labels") is not None for _, d in batches]
    if any(fine) != all(fine):
        raise DatasetError("found both CIFAR-10 and CIFAR-100 batches: " + ", ".join(str(p) for p, _ in batches))
    fmt = "cifar100" if fine[0] else "cifar10"
    names = meta100 if fmt == "cifar100" else meta10
    parts = {"train": [], "val": []}
    for p, d in batches:
        label = _text(_key(d, "batch_label") or b"")
        test = "test" in label.lower() if label else "test" in p.name.lower()
        data = np.asarray(_key(d, "data"))
        labels = np.asarray(_key(d, "fine_labels" if fmt == "cifar100" else "labels"), np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
            raise DatasetError(f"{p}: CIFAR batch with data {data.dtype} {data.shape} and "
                               f"{len(labels)} labels; expected uint8 (n, 3072) and n labels")
        parts["val" if test else "train"].append((data.reshape(-1, 3, 32, 32), labels))
    if not parts["train"]:
        raise DatasetError("CIFAR test batch found but no training batches among: "
                           + ", ".join(str(p) for p, _ in batches))
    n_classes = 100 if fmt == "cifar100" else 10
    if names is None or len(names) != n_classes:
        names = [str(i) for i in range(n_classes)]
    out = {k: (np.concatenate([a for a, _ in v]), np.concatenate([b for _, b in v]))
           for k, v in parts.items() if v}
    for k, (_, labels) in out.items():
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise DatasetError(f"{fmt} {k} labels outside 0..{n_classes - 1}")
    return fmt, out, names
