"""MNIST-style IDX files (``train-images-idx3-ubyte`` etc.), plain or gzip-compressed.

IDX layout: two zero bytes, a type byte (0x08 = uint8, ...), a byte with the number of
dimensions, one big-endian uint32 per dimension, then the data (big-endian). Files are
recognised by that header, not by name; compression by the gzip magic bytes. Images are
``(n, H, W)`` uint8, labels ``(n,)`` uint8. Which pair is the training set: the file names say
(``t10k`` or ``test`` marks the test pair); when they do not, the larger pair is training.

Reading trusts nothing beyond the header: exactly the bytes the header promises are read, in
chunks (so memory grows only with data that is really there), and a file with fewer or more
is an error naming it. A gzip file is never decompressed past the promised size plus one byte:
a small file that inflates to gigabytes of trailing data is rejected after reading what the
header says, not inflated whole.
"""
from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from .errors import DatasetError

_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
          0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _open(path):
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def read_header(path):
    """``(dtype, dims)`` when ``path`` is an IDX file, else None."""
    try:
        with _open(path) as f:
            head = f.read(4)
            if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in _TYPES or not 1 <= head[3] <= 4:
                return None
            raw = f.read(4 * head[3])
            if len(raw) < 4 * head[3]:
                return None
            return _TYPES[head[2]], tuple(int(d) for d in np.frombuffer(raw, ">u4"))
    except (OSError, EOFError):
        return None


_CHUNK = 1 << 24


def read_idx(path) -> np.ndarray:
    header = read_header(path)
    if header is None:
        raise DatasetError(f"{path}: not an IDX file")
    dtype, dims = header
    want = dtype.itemsize
    for d in dims:
        want *= d  # Python ints: no overflow whatever the header says
    head = 4 + 4 * len(dims)
    try:
        return _read_data(path, dtype, dims, head, want)
    except (OSError, EOFError, zlib.error) as e:  # unreadable, or a corrupt gzip stream
        raise DatasetError(f"{path}: cannot read the IDX file: {e}") from None


def _read_data(path, dtype, dims, head: int, want: int) -> np.ndarray:
    with _open(path) as f:
        compressed = isinstance(f, gzip.GzipFile)
        if not compressed:
            # Plain file: the size is known, so check it before reading anything.
            size = os.fstat(f.fileno()).st_size
            if size != head + want:
                raise DatasetError(
                    f"{path}: {'truncated' if size < head + want else 'extra data after the data'}"
                    f" IDX file ({size - head} data bytes, header {dims} says {want})")
        f.read(head)
        data = bytearray()
        while len(data) < want:
            part = f.read(min(_CHUNK, want - len(data)))
            if not part:
                break
            data += part
        if len(data) < want:
            raise DatasetError(f"{path}: truncated IDX file ({len(data)} data bytes, header "
                               f"{dims} says {want})")
        if f.read(1):
            raise DatasetError(f"{path}: extra data after the {want} bytes its header {dims} "
                               "promises (corrupt or not an IDX file)")
    return np.frombuffer(data, dtype).reshape(dims).astype(dtype.newbyteorder("="))


def find_idx(paths: list[Path]):
    """Pair IDX image and label files among ``paths``.

    Returns ``{"train": (images_path, labels_path), "val": ...}`` (val optional), None when
    there is no IDX file at all; raises DatasetError when the files do not pair up.
    """
    images, labels = [], []
    for p in paths:
        h = read_header(p)
        if h is None:
            continue
        dtype, dims = h
        if len(dims) == 3:
            images.append((p, dims[0], dtype))
        elif len(dims) == 1:
            labels.append((p, dims[0], dtype))
        else:
            raise DatasetError(f"{p}: IDX file with dimensions {dims}; expected images (n, H, W) "
                               "or labels (n,)")
    if not images and not labels:
        return None
    for p, _, dtype in images + labels:
        if dtype != np.uint8:
            raise DatasetError(f"{p}: IDX data type {dtype}, expected unsigned bytes")

    def is_test(p):
        name = os.path.basename(str(p)).lower()
        return "t10k" in name or "test" in name

    pairs = []
    for ip, n, _ in images:
        match = [lp for lp, m, _ in labels if m == n and is_test(lp) == is_test(ip)]
        if len(match) != 1:
            match = [lp for lp, m, _ in labels if m == n]
        if len(match) != 1:
            raise DatasetError(f"{ip}: {n} images but {len(match)} IDX label files with {n} labels "
                               f"among {', '.join(str(lp) for lp, _, _ in labels) or 'none'}")
        pairs.append((ip, match[0], n))
    if len(pairs) != len(labels) or len(pairs) not in (1, 2):
        raise DatasetError("IDX files do not form one or two (images, labels) pairs: found "
                           f"{len(images)} image file(s) and {len(labels)} label file(s)")
    if len(pairs) == 1:
        return {"train": pairs[0][:2]}
    a, b = pairs
    if is_test(a[0]) != is_test(b[0]):
        train, val = (b, a) if is_test(a[0]) else (a, b)
    else:
        train, val = (a, b) if a[2] >= b[2] else (b, a)
    return {"train": train[:2], "val": val[:2]}


def load_pair(images_path, labels_path):
    images = read_idx(images_path)
    labels = read_idx(labels_path).astype(np.int64)
    if len(images) != len(labels):
        raise DatasetError(f"{images_path}: {len(images)} images but {labels_path} has {len(labels)} labels")
    return images[:, None], labels
