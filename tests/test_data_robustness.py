"""Hostile and careless data (issue 10): link loops, FIFOs and names that are not UTF-8 in an
image tree, shard sets that do not match their index, IDX files that lie about their size,
and an image folder larger than the memory it may use. Calls that used to hang run in a child
process with a timeout, so a regression fails instead of hanging the suite."""
import gzip
import json
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from alexnet_ext.data import DatasetError, open_dataset, prepare, write_shards
from alexnet_ext.data import idx
from alexnet_ext.data.folder import list_images
from alexnet_ext.data.imageio import load_image
from datagen import image_tree, write_idx
from proc_helpers import REPO_PYTHON

posix = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs symlinks and FIFOs (POSIX)")


def run_bounded(code: str, *args, timeout: float = 90) -> subprocess.CompletedProcess:
    """``python -c code args`` that must finish within ``timeout`` s (a hang fails the test)."""
    env = os.environ.copy()
    env["PYTHONPATH"] = REPO_PYTHON + os.pathsep + env.get("PYTHONPATH", "")
    try:
        return subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"did not finish within {timeout} s (hangs?)")


LIST = """
import json, sys
from alexnet_ext.data.folder import scan_tree
scan = scan_tree(sys.argv[1], 0.5)
print(json.dumps({"splits": scan.splits, "skipped": scan.skipped}))
"""


def _real(path):
    return os.path.realpath(path)


@posix
def test_symlink_loops_are_followed_once_and_reported(tmp_path, rng):
    root = image_tree(tmp_path / "src", rng, classes=("a", "b"), train=4, val=0, layout="classes")
    sub = root / "a" / "sub"
    sub.mkdir()
    (sub / "deep.png").write_bytes((root / "a" / "000.png").read_bytes())
    os.symlink("..", sub / "up")          # two loops: 2^40 paths for a naive walk
    os.symlink(".", sub / "here")
    extra = image_tree(tmp_path / "extra", rng, classes=("x",), train=2, val=0, layout="classes")
    os.symlink(extra / "x", root / "a" / "other")  # a link out of the tree: followed once
    os.symlink(extra / "x", sub / "again")         # ... and not twice
    r = run_bounded(LIST, root)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    paths = [p for items in got["splits"].values() for p, _ in items]
    reals = [_real(p) for p in paths]
    assert len(reals) == len(set(reals)), "an image is listed twice"
    n_a = len([p for p, lb in sum(got["splits"].values(), []) if lb == 0])
    assert n_a == 4 + 1 + 2  # a's own, sub/deep.png, and the two through the link
    train = {_real(p) for p, _ in got["splits"]["train"]}
    assert not train & {_real(p) for p, _ in got["splits"]["val"]}
    reasons = " | ".join(f"{p}: {why}" for p, why in got["skipped"])
    assert "up" in reasons and "here" in reasons and "again" in reasons, reasons
    assert "link loop" in reasons, reasons
    # The library call itself, and the Dataset's report of what was skipped.
    assert sorted(map(_real, list_images(root / "a"))) == sorted(
        _real(p) for p, lb in sum(got["splits"].values(), []) if lb == 0)
    with pytest.warns(UserWarning, match="skipped"):
        ds = open_dataset(root, image_size=16, workers=1, val_fraction=0.5)
    assert any("link loop" in why for _, why in ds.skipped)


PREPARE_CLI = "import sys, runpy; sys.argv = ['prepare'] + sys.argv[1:]; " \
              "runpy.run_module('alexnet_ext.prepare', run_name='__main__')"


@posix
def test_fifo_named_like_an_image_does_not_block(tmp_path, rng):
    root = image_tree(tmp_path / "src", rng, classes=("a", "b"), train=3, val=0, layout="classes")
    fifo = root / "a" / "pipe.jpg"
    os.mkfifo(fifo)
    r = run_bounded("import sys\nfrom alexnet_ext.data.imageio import load_image\n"
                    "try:\n    load_image(sys.argv[1], 8)\nexcept ValueError as e:\n    print(e)",
                    fifo, timeout=60)
    assert r.returncode == 0 and "not a regular file" in r.stdout, r.stdout + r.stderr
    r = run_bounded(PREPARE_CLI, root, tmp_path / "out", "--size", 16, "--workers", 1, "-q")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["counts"]["train"] + report["counts"].get("val", 0) == 6
    assert [s["path"] for s in report["skipped"]] == [str(fifo)]
    assert "not a regular file" in report["skipped"][0]["error"]
    assert "skipped 1" in r.stdout and "pipe.jpg" in r.stdout


@posix
def test_names_that_are_not_utf8_are_skipped_and_named(tmp_path, rng):
    root = image_tree(tmp_path / "src", rng, classes=("a", "b"), train=3, val=1)
    bad = os.path.join(os.fsencode(root / "train" / "a"), b"caf\xe9.png")
    with open(bad, "wb") as f:
        f.write((root / "train" / "a" / "000.png").read_bytes())
    r = run_bounded(PREPARE_CLI, root, tmp_path / "out", "--size", 16, "--workers", 1, "-q")
    assert r.returncode == 0, r.stderr
    assert "skipped 1" in r.stdout and "caf\\xe9.png" in r.stdout, r.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["counts"] == {"train": 6, "val": 2}
    assert report["skipped"][0]["path"].endswith("caf\\xe9.png")
    assert "UTF-8" in report["skipped"][0]["error"]
    # A class folder whose name is not text: one line naming it, exit status 2.
    os.mkdir(os.path.join(os.fsencode(root / "train"), b"\xffclass"))
    r = run_bounded(PREPARE_CLI, root, tmp_path / "out2", "--size", 16, "--workers", 1, "-q")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "\\xffclass" in r.stderr and "UTF-8" in r.stderr


def test_image_folder_is_not_held_in_memory(tmp_path, rng):
    """Opening decodes to check and to sum statistics but keeps no image: the traced peak stays
    far below the decoded size; the images read later are exactly the decoded files."""
    root = image_tree(tmp_path / "src", rng, classes=("a", "b", "c"), train=80, val=0,
                      layout="classes")
    size = 96
    n = 240
    decoded = n * 3 * size * size
    open_dataset(root, image_size=size, workers=1, val_fraction=0.25)  # imports, Pillow plugins
    tracemalloc.start()
    try:
        ds = open_dataset(root, image_size=size, workers=1, val_fraction=0.25)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(ds.split("train")) + len(ds.split("val")) == n
    assert peak < 0.3 * decoded, f"peak {peak} bytes while opening; all images are {decoded}"
    tr = ds.split("train")
    i = [0, len(tr) - 1]
    want = np.stack([load_image(p, size) for p in np.array(tr.store.paths)[i]])
    np.testing.assert_array_equal(tr.images(i), want)
    # The mean is the mean of the decoded training images (float64 reference).
    ref = np.mean([load_image(p, size).astype(np.float64) for p in tr.store.paths], axis=0)
    np.testing.assert_allclose(ds.mean, ref, rtol=0, atol=1e-3)


def test_image_folder_batches_decoded_by_workers_match_inline(tmp_path, rng):
    from alexnet_ext.data import BatchLoader

    root = image_tree(tmp_path / "src", rng, classes=("a", "b"), train=10, val=0, layout="classes")
    ds = open_dataset(root, image_size=20, workers=1, val_fraction=0.2)
    kw = dict(batch_size=4, crop=16, mean=ds.mean, pca=ds.pca, seed=3)
    with BatchLoader(ds.split("train"), workers=0, **kw) as a, \
            BatchLoader(ds.split("train"), workers=2, **kw) as b:
        for (xa, ya), (xb, yb) in zip(a.epoch(1), b.epoch(1)):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)


# --- shard sets -----------------------------------------------------------------------------

def _shard_set(tmp_path, rng, n=10):
    imgs = rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)
    return write_shards(tmp_path / "shards", ["a", "b", "c"], (imgs, np.arange(n) % 3),
                        (imgs[:4], np.arange(4) % 3), shard_size=4)


def test_truncated_shard_is_named_when_opened(tmp_path, rng):
    out = _shard_set(tmp_path, rng)
    p = out / "train-00001-images.npy"
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(DatasetError, match=r"train-00001-images\.npy: truncated"):
        open_dataset(out)
    p.write_bytes(p.read_bytes() + b"\0" * 9)
    with pytest.raises(DatasetError, match=r"train-00001-images\.npy: too long"):
        open_dataset(out)


def test_shard_shape_and_labels_checked_when_opened(tmp_path, rng):
    out = _shard_set(tmp_path, rng)
    np.save(out / "train-00000-images.npy", np.zeros((4, 3, 8, 7), np.uint8))
    with pytest.raises(DatasetError, match=r"train-00000-images\.npy: holds uint8 \(4, 3, 8, 7\)"):
        open_dataset(out)
    out = _shard_set(tmp_path / "2", rng)
    np.save(out / "val-00000-labels.npy", np.array([0, 1, 3, 2]))
    with pytest.raises(DatasetError, match=r"val-00000-labels\.npy: labels 0\.\.3 outside 0\.\.2"):
        open_dataset(out)
    np.save(out / "val-00000-labels.npy", np.array([0, 1, 2]))
    with pytest.raises(DatasetError, match=r"val-00000-labels\.npy: holds int64 \(3,\)"):
        open_dataset(out)


def test_malformed_shard_index_is_a_dataset_error(tmp_path, rng):
    out = _shard_set(tmp_path, rng)
    index = json.loads((out / "index.json").read_text())
    index["splits"]["train"]["shards"][0]["count"] = "4"
    (out / "index.json").write_text(json.dumps(index))
    with pytest.raises(DatasetError, match="count"):
        open_dataset(out)
    index["splits"]["train"]["shards"][0].update(count=4, images="../../etc/passwd")
    (out / "index.json").write_text(json.dumps(index))
    with pytest.raises(DatasetError, match="file name in the directory"):
        open_dataset(out)
    del index["splits"]
    (out / "index.json").write_text(json.dumps(index))
    with pytest.raises(DatasetError, match="malformed|splits"):
        open_dataset(out)


# --- IDX ------------------------------------------------------------------------------------

def test_gzip_idx_is_read_only_as_far_as_its_header_says(tmp_path, rng):
    """A small gzip file whose header promises 2 images but that inflates to 32 MiB: rejected
    after reading about what the header promises, never inflated whole."""
    imgs = rng.integers(0, 256, (2, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "ok", imgs)
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    bomb.write_bytes(gzip.compress((tmp_path / "ok").read_bytes() + bytes(32 << 20)))
    assert bomb.stat().st_size < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match="extra data after the 1568 bytes"):
            idx.read_idx(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{peak} bytes traced while reading a 1568-byte IDX payload"


def test_idx_size_disagreeing_with_header_is_an_error(tmp_path, rng):
    imgs = rng.integers(0, 256, (3, 5, 5), dtype=np.uint8)
    for gz in (False, True):
        p = write_idx(tmp_path / f"x{gz}", imgs, gz)
        np.testing.assert_array_equal(idx.read_idx(p), imgs)
        raw = (tmp_path / "plain").write_bytes(b"") or write_idx(tmp_path / "plain", imgs).read_bytes()
        for data, what in ((raw[:-1], "truncated"), (raw + b"\0", "extra data")):
            p.write_bytes(gzip.compress(data) if gz else data)
            with pytest.raises(DatasetError, match=what):
                idx.read_idx(p)
    # A gzip stream cut short: a DatasetError naming the file, not an EOFError.
    p.write_bytes(gzip.compress(raw)[:-12])
    with pytest.raises(DatasetError, match=str(p.name)):
        idx.read_idx(p)


# --- prepare's default size -------------------------------------------------------------------

def test_prepare_default_size_fits_the_default_model(tmp_path, rng):
    """The README's sequence: ``prepare SRC OUT`` then ``train --data OUT`` (default model)."""
    from alexnet_ext import train
    from alexnet_ext._cli import open_data
    from alexnet_ext.data.prepare import DEFAULT_MODEL, model_image_size
    from alexnet_ext.nn import load_model

    assert DEFAULT_MODEL == train.DEFAULT_MODEL
    spec = load_model(train.DEFAULT_MODEL)
    assert model_image_size() == spec.data["image_size"]
    assert model_image_size("alexnet") == 256
    root = image_tree(tmp_path / "src", rng, classes=("a", "b"), train=2, val=1)
    r = run_bounded(PREPARE_CLI, root, tmp_path / "out", "--workers", 1, "-q")
    assert r.returncode == 0, r.stderr
    size = spec.data["image_size"]
    assert f"at {size}x{size}" in r.stdout
    ds = open_data(tmp_path / "out", spec)  # raises UsageError when the sizes disagree
    assert ds.image_size == (size, size)


def test_shard_size_mismatch_names_the_prepare_command(tmp_path, rng):
    root = image_tree(tmp_path / "src", rng, classes=("a", "b"), train=2, val=1)
    prepare(root, tmp_path / "out", size=16, workers=1, progress=False)
    with pytest.raises(DatasetError, match=r"python -m alexnet_ext\.prepare \S*src NEW_OUT --size 24"):
        open_dataset(tmp_path / "out", image_size=24)
