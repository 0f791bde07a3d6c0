"""BatchLoader: crops, flips, lighting, mean/scale, determinism, workers, failures."""
import os
import signal
import time

import numpy as np
import pytest

from alexnet_ext.data import BatchLoader, Split, open_dataset, write_shards
from alexnet_ext.data.stores import ArrayStore

H = W = 16
CROP = 12


def coded_split(n=48):
    """Image i: channel 0 = row index, channel 1 = column index, channel 2 = i."""
    img = np.empty((n, 3, H, W), np.uint8)
    img[:, 0] = np.arange(H)[:, None]
    img[:, 1] = np.arange(W)[None, :]
    img[:, 2] = np.arange(n)[:, None, None]
    return Split("train", np.arange(n) % 5, ArrayStore(img)), img


def decode(x):
    """(id, top, left, flipped) of a batch element cut from a coded image, checking all pixels."""
    i, top = int(x[2, 0, 0]), int(x[0, 0, 0])
    flipped = bool(x[1, 0, 0] > x[1, 0, -1])
    left = int(x[1, 0, -1] if flipped else x[1, 0, 0])
    expect = np.stack([np.broadcast_to(np.arange(top, top + CROP)[:, None], (CROP, CROP)),
                       np.broadcast_to(np.arange(left, left + CROP)[None, :], (CROP, CROP)),
                       np.full((CROP, CROP), i)]).astype(np.float32)
    np.testing.assert_array_equal(x, expect[:, :, ::-1] if flipped else expect)
    return i, top, left, flipped


ZERO = np.zeros((3, H, W), np.float32)


def collect(loader, epoch, start=0):
    return [(x.copy(), y.copy()) for x, y in loader.epoch(epoch, start)]


def test_train_crops_flips_order_statistics():
    split, _ = coded_split()
    loader = BatchLoader(split, batch_size=8, crop=CROP, mean=ZERO, workers=0, seed=3)
    assert len(loader) == 6
    tops, lefts, flips = [], [], []
    orders = []
    for e in range(12):
        ids = []
        for x, y in loader.epoch(e):
            assert x.shape == (8, 3, CROP, CROP) and x.dtype == np.float32 and x.flags.c_contiguous
            assert y.dtype == np.int64
            for k in range(8):
                i, t, l, f = decode(x[k])
                assert y[k] == split.labels[i]
                ids.append(i)
                tops.append(t), lefts.append(l), flips.append(f)
        assert sorted(ids) == list(range(48))  # each image once per epoch
        orders.append(ids)
    assert orders[0] != orders[1] and orders[0] != list(range(48))
    n = len(tops)
    # Uniform over the 5 positions per axis: every position, counts within 5 sigma of n/5.
    for pos in (tops, lefts):
        counts = np.bincount(pos, minlength=H - CROP + 1)
        assert len(counts) == H - CROP + 1 and np.all(np.abs(counts - n / 5) < 5 * np.sqrt(n * 0.16))
    assert abs(np.mean(flips) - 0.5) < 5 * np.sqrt(0.25 / n)
    nf = BatchLoader(split, batch_size=8, crop=CROP, mean=ZERO, workers=0, flip=False, seed=3)
    assert not any(decode(x[k])[3] for x, _ in nf.epoch(0) for k in range(8))


def test_eval_mode_fixed_centre_keeps_last_batch(rng):
    split, img = coded_split(45)
    mean = rng.uniform(0, 255, (3, H, W)).astype(np.float32)
    loader = BatchLoader(split, batch_size=8, crop=CROP, mean=mean, train=False, scale=0.5, workers=0)
    assert len(loader) == 6
    batches = collect(loader, 0)
    assert [len(y) for _, y in batches] == [8] * 5 + [5]
    x = np.concatenate([b[0] for b in batches])
    o = (H - CROP) // 2
    expect = (img[:, :, o:o + CROP, o:o + CROP] - mean[:, o:o + CROP, o:o + CROP]) * np.float32(0.5)
    np.testing.assert_array_equal(x, expect)
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), split.labels)
    np.testing.assert_array_equal(collect(loader, 7)[0][0], batches[0][0])  # epoch does not matter


def test_mean_subtraction_and_scale_follow_crop_and_flip(rng):
    split, img = coded_split()
    mean = rng.uniform(0, 255, (3, H, W)).astype(np.float32)
    plain = collect(BatchLoader(split, batch_size=8, crop=CROP, mean=ZERO, workers=0, seed=5), 2)
    scaled = collect(BatchLoader(split, batch_size=8, crop=CROP, mean=mean, workers=0, seed=5,
                                 scale=1 / 64), 2)
    for (xp, _), (xs, _) in zip(plain, scaled):
        for k in range(8):
            i, t, l, f = decode(xp[k])
            m = mean[:, t:t + CROP, l:l + CROP]
            m = m[:, :, ::-1] if f else m
            np.testing.assert_allclose(xs[k], (xp[k] - m) / 64, rtol=1e-6, atol=1e-6)


def test_pca_lighting_statistics(rng):
    n = 64
    img = np.full((n, 3, H, W), 100, np.uint8)
    split = Split("train", np.zeros(n, np.int64), ArrayStore(img))
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    vals = np.array([3000.0, 600.0, 150.0])
    loader = BatchLoader(split, batch_size=16, crop=CROP, mean=ZERO, pca=(vals, q), workers=0,
                         lighting=0.1)
    alphas = []
    for e in range(8):
        for x, _ in loader.epoch(e):
            shift = x - 100.0
            # One RGB shift per image, the same at every pixel.
            np.testing.assert_allclose(shift, shift[:, :, :1, :1] + np.zeros_like(shift), atol=1e-4)
            s = shift[:, :, 0, 0].astype(np.float64)  # (B, 3) = P (a * l) / 255
            alphas.append((s * 255.0) @ q / vals)
    a = np.concatenate(alphas)
    assert a.shape == (8 * 64, 3)
    assert np.all(np.abs(a.mean(0)) < 5 * 0.1 / np.sqrt(len(a)))
    assert np.all(np.abs(a.std(0) - 0.1) < 0.02)
    off = BatchLoader(split, batch_size=16, crop=CROP, mean=ZERO, pca=(vals, q), lighting=0, workers=0)
    assert all(np.all(x == 100) for x, _ in off.epoch(0))
    # Turning lighting on does not move the crops: same seed, same positions.
    split2, _ = coded_split()
    a_ = collect(BatchLoader(split2, batch_size=8, crop=CROP, mean=ZERO, workers=0), 1)
    b_ = collect(BatchLoader(split2, batch_size=8, crop=CROP, mean=ZERO, workers=0, flip=False), 1)
    for (xa, _), (xb, _) in zip(a_, b_):
        assert [decode(v)[:3] for v in xa] == [decode(v)[:3] for v in xb]


def test_determinism_seed_epoch_and_resume():
    split, _ = coded_split()
    make = lambda seed: BatchLoader(split, batch_size=8, crop=CROP, mean=ZERO, workers=0, seed=seed)  # noqa: E731
    a, b = collect(make(1), 4), collect(make(1), 4)
    assert all(np.array_equal(x1, x2) and np.array_equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    assert not np.array_equal(a[0][0], collect(make(2), 4)[0][0])
    assert not np.array_equal(a[0][0], collect(make(1), 5)[0][0])
    rest = collect(make(1), 4, start=4)
    assert len(rest) == 2
    for (x1, y1), (x2, y2) in zip(a[4:], rest):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert collect(make(1), 4, start=6) == []


def _shm_names():
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


@pytest.fixture(scope="module")
def shard_set(tmp_path_factory):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (40, 3, H, W), dtype=np.uint8)
    path = write_shards(tmp_path_factory.mktemp("shards"), ["a", "b", "c"],
                        (imgs, rng.integers(0, 3, 40)), shard_size=16)
    return path


def test_workers_give_identical_batches_and_resume(shard_set):
    ds = open_dataset(shard_set)
    split = ds.split("train")
    kw = dict(batch_size=6, crop=CROP, mean=ds.mean, pca=ds.pca, seed=11)
    before = _shm_names()
    ref = collect(BatchLoader(split, workers=0, **kw), 3)
    with BatchLoader(split, workers=2, prefetch=3, **kw) as loader:
        assert len(loader) == 6
        got = collect(loader, 3)
        resumed = collect(loader, 3, start=2)
        # Abandon an epoch half-way, then run a full one: stale batches must not leak in.
        it = loader.epoch(9)
        next(it)
        it.close()
        again = collect(loader, 3)
        assert loader.wait_seconds > 0
    for other in (got, again, resumed):
        base = ref if other is not resumed else ref[2:]
        assert len(other) == len(base)
        for (x1, y1), (x2, y2) in zip(base, other):
            np.testing.assert_array_equal(x1, x2)
            np.testing.assert_array_equal(y1, y2)
    # In-memory data goes through shared memory for the workers: same batches.
    mem = Split("train", split.labels, ArrayStore(split.images(np.arange(len(split)))))
    with BatchLoader(mem, workers=1, **kw) as loader:
        held = [b for b in loader.epoch(3)]  # keep every batch: their slots must not be reused
        for (x1, y1), (x2, y2) in zip(ref, held):
            np.testing.assert_array_equal(x1, x2)
            np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(held[0][0], ref[0][0])  # still readable after close
    assert _shm_names() <= before, "shared memory left behind"
    with pytest.raises(RuntimeError, match="closed"):
        loader.epoch(0)


def test_killed_worker_raises_quickly(shard_set):
    ds = open_dataset(shard_set)
    loader = BatchLoader(ds.split("train"), batch_size=2, crop=CROP, mean=ds.mean, workers=1, prefetch=2)
    it = loader.epoch(0)
    next(it)
    os.kill(loader._workers.procs[0].pid, signal.SIGKILL)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="worker 0 .* killed by signal SIGKILL"):
        for _ in it:
            pass
    assert time.monotonic() - t0 < 5
    with pytest.raises(RuntimeError, match="closed"):
        loader.epoch(1)


def test_worker_exception_is_reported(tmp_path, rng):
    imgs = rng.integers(0, 256, (8, 3, H, W), dtype=np.uint8)
    path = write_shards(tmp_path, ["a"], (imgs, np.zeros(8)), shard_size=4)
    ds = open_dataset(path)
    loader = BatchLoader(ds.split("train"), batch_size=4, crop=CROP, mean=ds.mean, workers=1)
    # The shards vanish after opening: the worker's memory map fails and it reports why.
    (path / "train-00000-images.npy").write_bytes(b"truncated")
    with pytest.raises(RuntimeError, match="(?s)raised an exception.*train-00000-images.npy"):
        list(loader.epoch(0))
    loader.close()


def test_argument_errors():
    split, _ = coded_split(8)
    ok = dict(batch_size=4, crop=CROP, mean=ZERO, workers=0)
    BatchLoader(split, **ok)
    cases = [
        (TypeError, "mean: expected dtype float32", dict(mean=ZERO.astype(np.float64))),
        (ValueError, "mean: expected shape", dict(mean=np.zeros((3, 8, 8), np.float32))),
        (ValueError, "crop: 17 is larger", dict(crop=17)),
        (ValueError, "batch_size: 9 is larger than the split", dict(batch_size=9)),
        (ValueError, "batch_size: expected an int >= 1", dict(batch_size=0)),
        (ValueError, "lighting: expected a number >= 0", dict(lighting=-0.1)),
        (ValueError, "seed: expected an int >= 0", dict(seed=-1)),
        (ValueError, "workers: expected an int >= 0", dict(workers=-1)),
        (TypeError, "train: expected a bool", dict(train=1)),
        (TypeError, "pca: expected a pair", dict(pca=np.eye(3))),
        (ValueError, r"pca\[1\]: expected shape \(3, 3\)", dict(pca=(np.ones(3), np.eye(2)))),
    ]
    for exc, msg, change in cases:
        with pytest.raises(exc, match=msg):
            BatchLoader(split, **{**ok, **change})
    with pytest.raises(TypeError, match="split: expected"):
        BatchLoader(np.zeros((8, 3, H, W), np.uint8), **ok)
    gray = Split("train", np.zeros(8, np.int64), ArrayStore(np.zeros((8, 1, H, W), np.uint8)))
    with pytest.raises(ValueError, match="pca: PCA lighting needs 3-channel"):
        BatchLoader(gray, batch_size=4, crop=CROP, mean=np.zeros((1, H, W), np.float32),
                    pca=(np.ones(3), np.eye(3)))
    loader = BatchLoader(split, **ok)
    with pytest.raises(ValueError, match="start_batch: expected at most 2"):
        loader.epoch(0, start_batch=3)
    with pytest.raises(ValueError, match="epoch: expected an int >= 0"):
        loader.epoch(-1)
