"""Small datasets the data tests write themselves, in every format open_dataset reads."""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image


def random_rgb(rng, h, w) -> np.ndarray:
    """A smooth-ish random image (JPEG keeps it recognisable) as uint8 (h, w, 3)."""
    small = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    big = Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR)
    noise = rng.integers(-8, 9, (h, w, 3))
    return np.clip(np.asarray(big, np.int64) + noise, 0, 255).astype(np.uint8)


def image_tree(root: Path, rng, classes=("ant", "bee", "cow"), train=6, val=2, *, layout="train/val",
               fmt="png") -> Path:
    """``root/train/<c>/i.<fmt>`` (+ val) or ``root/<c>/i.<fmt>``; random sizes 30..80 px."""
    root = Path(root)
    for c in classes:
        for split, n in (("train", train), ("val", val)):
            if n == 0 or layout == "classes" and split == "val":
                continue
            d = root / split / c if layout == "train/val" else root / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                h, w = (int(v) for v in rng.integers(30, 81, 2))
                Image.fromarray(random_rgb(rng, h, w)).save(d / f"{i:03d}.{fmt}")
    return root


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    assert array.dtype == np.uint8
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    if gz:
        data = gzip.compress(data)
    Path(path).write_bytes(data)
    return Path(path)


def mnist_dir(root: Path, rng, n_train=40, n_test=12, gz=False, size=(28, 28)):
    """MNIST-named IDX files; returns (train images, train labels, test images, test labels)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sfx = ".gz" if gz else ""
    tri = rng.integers(0, 256, (n_train,) + size, dtype=np.uint8)
    trl = rng.integers(0, 10, n_train).astype(np.uint8)
    tei = rng.integers(0, 256, (n_test,) + size, dtype=np.uint8)
    tel = rng.integers(0, 10, n_test).astype(np.uint8)
    write_idx(root / f"train-images-idx3-ubyte{sfx}", tri, gz)
    write_idx(root / f"train-labels-idx1-ubyte{sfx}", trl, gz)
    write_idx(root / f"t10k-images-idx3-ubyte{sfx}", tei, gz)
    write_idx(root / f"t10k-labels-idx1-ubyte{sfx}", tel, gz)
    return tri, trl, tei, tel


def _dump(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def cifar10_dir(root: Path, rng, per_batch=6, batches=5, test=5):
    """CIFAR-10 python layout with bytes keys as in the original files; returns
    (train data (n, 3, 32, 32), train labels, test data, test labels, names)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    names = [f"class{i}" for i in range(10)]
    _dump(root / "batches.meta", {b"label_names": [n.encode() for n in names], b"num_vis": 3072})
    datas, labels = [], []
    for b in range(1, batches + 1):
        d = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        lb = [int(v) for v in rng.integers(0, 10, per_batch)]
        _dump(root / f"data_batch_{b}", {b"batch_label": f"training batch {b} of {batches}".encode(),
                                         b"data": d, b"labels": lb})
        datas.append(d)
        labels += lb
    td = rng.integers(0, 256, (test, 3072), dtype=np.uint8)
    tl = [int(v) for v in rng.integers(0, 10, test)]
    _dump(root / "test_batch", {b"batch_label": b"testing batch 1 of 1", b"data": td, b"labels": tl})
    return (np.concatenate(datas).reshape(-1, 3, 32, 32), np.array(labels),
            td.reshape(-1, 3, 32, 32), np.array(tl), names)


def cifar100_dir(root: Path, rng, n_train=20, n_test=8):
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    names = [f"fine{i}" for i in range(100)]
    _dump(root / "meta", {b"fine_label_names": [n.encode() for n in names],
                          b"coarse_label_names": [f"c{i}".encode() for i in range(20)]})
    out = []
    for split, n in (("train", n_train), ("test", n_test)):
        d = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        fl = [int(v) for v in rng.integers(0, 100, n)]
        _dump(root / split, {b"batch_label": f"{'training' if split == 'train' else 'testing'} batch 1 of 1".encode(),
                             b"data": d, b"fine_labels": fl, b"coarse_labels": [v // 5 for v in fl]})
        out += [d.reshape(-1, 3, 32, 32), np.array(fl)]
    return (*out, names)
