"""BatchLoader(dtype="uint8"): RawBatch parts (uint8 crops, (top, left, flipped) rows, lighting
shifts) are the float path's draws for the same seed, the same for any worker count and start
batch; the mode can be switched; bad values are refused."""
import numpy as np
import pytest

from alexnet_ext import ops
from alexnet_ext.data import RawBatch
from batch_helpers import loader, random_split


def _copy(batches):
    return [tuple(np.array(a, copy=True) for a in b) for b in batches]


def test_raw_parts_are_the_draws(rng):
    split, img, mean, pca = random_split(rng)
    u = loader(split, mean, pca, dtype="uint8")
    assert u.dtype == "uint8"
    order = u.order(2)
    for b, raw in enumerate(u.epoch(2)):
        assert isinstance(raw, RawBatch) and len(raw) == 4
        x, y, offsets, shift = raw
        assert x.dtype == np.uint8 and x.shape == (8, 3, 9, 9) and x.flags.c_contiguous
        assert offsets.dtype == np.int32 and offsets.shape == (8, 3)
        assert shift.dtype == np.float32 and shift.shape == (8, 3)
        tops, lefts, flips, shifts = u._aug.params(2, b, 8)
        np.testing.assert_array_equal(offsets, np.stack([tops, lefts, flips], 1))
        np.testing.assert_array_equal(shift, shifts)
        for k, i in enumerate(order[b * 8:(b + 1) * 8]):
            t, l, f = offsets[k]
            crop = img[i][:, t:t + 9, l:l + 9]
            np.testing.assert_array_equal(x[k], crop[:, :, ::-1] if f else crop)
            assert y[k] == split.labels[i]


def test_workers_and_start_batch_give_the_same_batches(rng):
    split, _, mean, pca = random_split(rng, n=40)
    inline = _copy(loader(split, mean, pca, dtype="uint8").epoch(1))
    with loader(split, mean, pca, dtype="uint8", workers=2) as w:
        got = _copy(w.epoch(1))
        later = _copy(w.epoch(1, start_batch=2))
        kept = next(iter(w.epoch(1)))          # a batch held while the loader goes on
        more = _copy(w.epoch(1))
        np.testing.assert_array_equal(kept.x, inline[0][0])
    for a, b in zip(got, inline, strict=True):
        for pa, pb in zip(a, b):
            np.testing.assert_array_equal(pa, pb)
    for a, b in zip(later, inline[2:], strict=True):
        for pa, pb in zip(a, b):
            np.testing.assert_array_equal(pa, pb)
    assert len(more) == len(inline)


def test_switching_modes_restarts_workers(rng):
    split, _, mean, pca = random_split(rng, n=40)
    ref = _copy(loader(split, mean, pca).epoch(0))
    with loader(split, mean, pca, workers=1) as w:
        first = _copy(w.epoch(0))
        w.set_dtype("uint8")
        raw = _copy(w.epoch(0))
        w.set_dtype("float32")
        again = _copy(w.epoch(0))
    for (x, y), (rx, ry, ro, rs), (x2, _) in zip(ref, raw, again, strict=True):
        np.testing.assert_array_equal(ops.normalize_batch(rx, mean, ro, rs, scale=1 / 255), x)
        np.testing.assert_array_equal(x2, x)
        np.testing.assert_array_equal(ry, y)
    for (x, _), (x1, _) in zip(ref, first):
        np.testing.assert_array_equal(x1, x)


def test_bad_dtype(rng):
    split, _, mean, pca = random_split(rng)
    with pytest.raises(ValueError, match="dtype: expected 'float32' or 'uint8', got 'float16'"):
        loader(split, mean, pca, dtype="float16")
    u = loader(split, mean, pca)
    with pytest.raises(ValueError, match="dtype: expected"):
        u.set_dtype(np.uint8)
