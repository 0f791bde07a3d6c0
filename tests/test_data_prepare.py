"""prepare(): image tree -> shards; decoding rules, bad files, statistics, resume, CLI."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from alexnet_ext.data import DatasetError, open_dataset, prepare, write_shards
from alexnet_ext.data.imageio import load_image
from alexnet_ext.data.folder import list_images
from datagen import image_tree, random_rgb

SIZE = 24


def _odd_images(root, rng):
    """Add a corrupt file, a grayscale PNG, a CMYK JPEG, an RGBA PNG and a 16-bit PNG."""
    (root / "train" / "ant" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    Image.fromarray(random_rgb(rng, 40, 50)[..., 0], "L").save(root / "train" / "bee" / "gray.png")
    Image.fromarray(random_rgb(rng, 50, 40)).convert("CMYK").save(root / "train" / "cow" / "cmyk.jpg")
    rgba = np.dstack([random_rgb(rng, 36, 36), np.full((36, 36), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "val" / "ant" / "rgba.png")
    deep = (rng.integers(0, 65536, (32, 40))).astype(np.uint16)
    Image.fromarray(deep).save(root / "train" / "ant" / "deep.png")
    return deep


def _train_images(ds, split="train"):
    s = ds.split(split)
    return s.images(np.arange(len(s))), s.labels


def test_prepare_decodes_converts_and_reports_bad_files(tmp_path, rng):
    root = image_tree(tmp_path / "src", rng, fmt="jpg")
    deep = _odd_images(root, rng)
    report = prepare(root, tmp_path / "out", size=SIZE, shard_size=5, workers=2, progress=False)

    assert report["skipped_count"] == 1
    assert report["skipped"][0]["path"].endswith("broken.jpg")
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["skipped"] == report["skipped"]
    assert report["counts"] == {"train": 3 * 6 + 3, "val": 3 * 2 + 1}

    ds = open_dataset(tmp_path / "out")
    assert ds.format == "shards" and ds.class_names == ["ant", "bee", "cow"]
    assert ds.channels == 3 and ds.image_size == (SIZE, SIZE)
    # Round trip: shard i holds exactly what load_image gives for the i-th readable file.
    for split in ("train", "val"):
        images, labels = _train_images(ds, split)
        files = [(f, c) for c, name in enumerate(ds.class_names)
                 for f in list_images(root / split / name) if not f.endswith("broken.jpg")]
        assert len(files) == len(images)
        for img, lb, (f, c) in zip(images, labels, files):
            assert lb == c
            np.testing.assert_array_equal(img, load_image(f, SIZE))
            if f.endswith("gray.png"):
                assert np.array_equal(img[0], img[1]) and np.array_equal(img[1], img[2])
    gray = load_image(root / "train" / "bee" / "gray.png", SIZE)
    assert gray.shape == (3, SIZE, SIZE) and np.array_equal(gray[0], gray[2])
    # CMYK -> RGB through Pillow's conversion, not garbage: close to the same file read as RGB.
    cmyk = load_image(root / "train" / "cow" / "cmyk.jpg", SIZE)
    ref = Image.open(root / "train" / "cow" / "cmyk.jpg").convert("RGB").resize((SIZE, SIZE), box=(0, 5, 40, 45))
    assert np.abs(cmyk.astype(int) - np.asarray(ref).transpose(2, 0, 1)).mean() < 8
    # 16-bit grayscale keeps its high byte.
    hi = load_image(root / "train" / "ant" / "deep.png", 32)
    expect = Image.fromarray((deep >> 8).astype(np.uint8)).resize((32, 32), Image.Resampling.BICUBIC, box=(4, 0, 36, 32))
    np.testing.assert_array_equal(hi[1], np.asarray(expect))


def test_load_image_geometry(tmp_path):
    """Shorter side to S, central S x S: a wide image keeps its middle, a square one is exact."""
    s = 16
    wide = np.zeros((s, 2 * s, 3), np.uint8)
    wide[:, : s // 2] = (255, 0, 0)
    wide[:, s // 2: s // 2 + s] = (0, 255, 0)
    wide[:, s // 2 + s:] = (0, 0, 255)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    out = load_image(tmp_path / "wide.png", s)
    inner = out[:, :, 2:-2]  # bicubic support reaches 2 pixels past the crop edge
    assert np.all(inner[1] == 255) and np.all(inner[0] == 0) and np.all(inner[2] == 0)
    tall = wide.transpose(1, 0, 2).copy()
    Image.fromarray(tall).save(tmp_path / "tall.png")
    out = load_image(tmp_path / "tall.png", s // 2)  # also downscales by 2
    assert np.all(out[1, 1:-1] == 255) and np.all(out[0, 1:-1] == 0)
    sq = random_rgb(np.random.default_rng(1), s, s)
    Image.fromarray(sq).save(tmp_path / "sq.png")
    np.testing.assert_array_equal(load_image(tmp_path / "sq.png", s), sq.transpose(2, 0, 1))


def test_mean_and_pca_match_numpy(tmp_path, rng):
    root = image_tree(tmp_path / "src", rng, train=5, val=1)
    prepare(root, tmp_path / "out", size=SIZE, shard_size=4, workers=1, progress=False)
    ds = open_dataset(tmp_path / "out")
    images, _ = _train_images(ds)
    x = images.astype(np.float64)
    np.testing.assert_allclose(ds.mean, x.mean(axis=0), rtol=1e-6, atol=1e-4)
    pixels = x.transpose(1, 0, 2, 3).reshape(3, -1)
    cov = np.cov(pixels, bias=True)
    with np.load(tmp_path / "out" / "pca.npz") as z:
        np.testing.assert_allclose(z["covariance"], cov, rtol=1e-10, atol=1e-9)
    vals, vecs = np.linalg.eigh(cov)
    vals, vecs = vals[::-1], vecs[:, ::-1]
    np.testing.assert_allclose(ds.pca[0], vals, rtol=1e-9)
    assert np.all(np.diff(ds.pca[0]) <= 0)
    # Eigenvectors agree up to sign; ours have a positive largest component.
    np.testing.assert_allclose(np.abs(np.sum(ds.pca[1] * vecs, axis=0)), 1.0, atol=1e-8)
    assert np.all(ds.pca[1][np.argmax(np.abs(ds.pca[1]), axis=0), range(3)] > 0)


def test_write_shards_round_trip(tmp_path, rng):
    imgs = rng.integers(0, 256, (11, 3, 8, 8), dtype=np.uint8)
    labels = rng.integers(0, 4, 11)
    vimgs = rng.integers(0, 256, (3, 3, 8, 8), dtype=np.uint8)
    write_shards(tmp_path / "s", ["a", "b", "c", "d"], (imgs, labels), (vimgs, np.arange(3)), shard_size=4)
    ds = open_dataset(tmp_path / "s")
    assert ds.describe() == f"shards at {tmp_path / 's'}: 4 classes, 11 train / 3 val images, 3x8x8"
    tr = ds.split("train")
    perm = rng.permutation(11)
    np.testing.assert_array_equal(tr.images(perm), imgs[perm])
    np.testing.assert_array_equal(tr.labels, labels)
    np.testing.assert_array_equal(ds.split("val").images([2, 0]), vimgs[[2, 0]])
    np.testing.assert_allclose(ds.mean, imgs.mean(0), rtol=1e-6)
    gray = write_shards(tmp_path / "g", ["x"], (imgs[:, :1].copy(), np.zeros(11, int)))
    assert open_dataset(gray).pca is None


def _mtimes(out):
    return {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name.startswith(("train-", "val-"))}


def test_prepare_resumes_and_refuses_other_settings(tmp_path, rng):
    root = image_tree(tmp_path / "src", rng, classes=("a", "b"), train=6, val=2)
    out = tmp_path / "out"
    first = prepare(root, out, size=SIZE, shard_size=4, workers=1, progress=False)
    before = open_dataset(out)
    imgs_before = _train_images(before)[0]
    times = _mtimes(out)
    # An interrupted run: one shard's files gone, no index.
    for name in ("train-00001-images.npy", "train-00001.json", "index.json"):
        (out / name).unlink()
    with pytest.raises(DatasetError, match="unfinished"):
        open_dataset(out)
    again = prepare(root, out, size=SIZE, shard_size=4, workers=1, progress=False)
    assert first["shards_prepared_now"] == 4 and again["shards_prepared_now"] == 1
    after = _mtimes(out)
    for name, t in times.items():
        if not name.startswith("train-00001"):
            assert after[name] == t, f"{name} was rewritten"
    np.testing.assert_array_equal(_train_images(open_dataset(out))[0], imgs_before)
    np.testing.assert_array_equal(open_dataset(out).mean, before.mean)
    assert prepare(root, out, size=SIZE, shard_size=4, workers=1, progress=False)["shards_prepared_now"] == 0
    with pytest.raises(DatasetError, match="other settings.*size 24 -> 32"):
        prepare(root, out, size=32, shard_size=4, workers=1, progress=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(DatasetError, match="not empty"):
        prepare(root, tmp_path / "full", size=SIZE, progress=False)
    with pytest.raises(DatasetError, match="OUT must not be inside SRC"):
        prepare(root, root / "shards", size=SIZE, progress=False)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "alexnet_ext.prepare", *map(str, args)],
                          capture_output=True, text=True, timeout=120, env=os.environ.copy())


def test_cli_success_and_bad_sources(tmp_path, rng):
    root = image_tree(tmp_path / "src", rng, classes=("a", "b"), train=3, val=1, layout="classes")
    (root / "a" / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    r = _cli(root, tmp_path / "out", "--size", 16, "--workers", 1, "--val-fraction", 0.34, "-q")
    assert r.returncode == 0, r.stderr
    assert "prepared 4 train / 2 val images of 2 classes at 16x16" in r.stdout
    assert "skipped 1 unreadable file(s)" in r.stdout and "junk.png" in r.stdout

    r = _cli(tmp_path / "missing", tmp_path / "o2")
    assert r.returncode == 2 and r.stderr.startswith("prepare: error:") and "no such" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    (root / "empty").mkdir()
    r = _cli(root, tmp_path / "o3")
    assert r.returncode == 2 and "empty class folder" in r.stderr and str(root / "empty") in r.stderr
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "x.txt").write_text("no images")
    r = _cli(tmp_path / "flat", tmp_path / "o4")
    assert r.returncode == 2 and "not an image tree" in r.stderr
