"""ops.normalize_batch on the GPU against the CPU (same bits), a bad offset clamped and raised at
the next synchronisation, and the uint8 path end to end: a uint8 loader through DeviceFeed (copy,
then the kernel on the copy stream) hands out exactly the CPU loader's float32 batches."""
import types

import numpy as np
import pytest

from alexnet_ext import cuda as C
from alexnet_ext import ops
from alexnet_ext.data.device_feed import DeviceFeed
from alexnet_ext.trainer import on_device
from batch_helpers import loader, random_case, random_split

pytestmark = pytest.mark.cuda


def dev(a):
    return C.to_device(a)


@pytest.mark.parametrize("shape", [(5, 3, 6, 7, 9, 11), (2, 1, 1, 1, 1, 1), (3, 3, 33, 17, 40, 17)])
@pytest.mark.parametrize("parts", ["all", "no_shift", "no_offsets"])
def test_gpu_equals_cpu(rng, shape, parts):
    x, mean, offsets, shift = random_case(rng, *shape)
    if parts == "no_shift":
        shift = None
    if parts == "no_offsets":
        offsets = None
    want = ops.normalize_batch(x, mean, offsets, shift, scale=1 / 255)
    got = ops.normalize_batch(dev(x), dev(mean), None if offsets is None else dev(offsets),
                              None if shift is None else dev(shift), scale=1 / 255)
    np.testing.assert_array_equal(got.get(), want)
    out = C.zeros(x.shape)
    assert ops.normalize_batch(dev(x), dev(mean), out=out) is out
    np.testing.assert_array_equal(out.get(), ops.normalize_batch(x, mean))


def test_bad_offsets_are_clamped_and_raised_later(rng):
    x, mean, offsets, shift = random_case(rng, 4, 3, 4, 5, 6, 8)
    offsets[2, 1] = 1000   # would read far past the mean image
    offsets[3, 0] = -7
    out = ops.normalize_batch(dev(x), dev(mean), dev(offsets), dev(shift))   # no raise, no wait
    with pytest.raises(ValueError, match=r"offsets: offsets\[2, 1\] \(crop left\) = 1000 is outside "
                                         r"\[0, 3\].*found on the GPU by normalize_batch \(2 bad"):
        C.synchronize()
    clamped = offsets.copy()
    clamped[2, 1], clamped[3, 0] = 3, 0
    np.testing.assert_array_equal(out.get(), ops.normalize_batch(x, mean, clamped, shift))
    with pytest.raises(TypeError, match="mix host"):
        ops.normalize_batch(dev(x), mean)


@pytest.mark.parametrize("workers,pin", [(0, False), (2, True)])
def test_uint8_loader_through_the_feed_equals_the_cpu_float_loader(rng, workers, pin):
    split, _, mean, pca = random_split(rng, n=40)
    want = [(x.copy(), y.copy()) for e in (0, 1) for x, y in loader(split, mean, pca).epoch(e)]
    got = []
    with loader(split, mean, pca, dtype="uint8", workers=workers) as u:
        with DeviceFeed(0, pin=pin, mean=mean, scale=u.scale) as feed:
            for e in (0, 1):
                for x, y in feed(u.epoch(e)):
                    assert x.dtype == np.float32
                    got.append((ops.add(x, x), y.get()))   # used late, on the compute stream
    assert len(got) == len(want)
    for (x2, y), (wx, wy) in zip(got, want):
        np.testing.assert_array_equal(x2.get(), wx + wx)
        np.testing.assert_array_equal(y, wy)


def test_feed_needs_the_mean_for_uint8_batches(rng):
    split, _, mean, pca = random_split(rng)
    with DeviceFeed(0) as feed:
        with pytest.raises(ValueError, match="mean: a DeviceFeed given uint8 batches"):
            next(iter(feed(loader(split, mean, pca, dtype="uint8").epoch(0))))


def test_on_device_switches_the_loader_to_uint8(rng):
    split, _, mean, pca = random_split(rng)
    f = loader(split, mean, pca)
    want = [x.copy() for x, _ in f.epoch(0)]
    net = types.SimpleNamespace(data=types.SimpleNamespace(device="cuda:0", dtype=np.float32))
    feed = on_device(net, f)
    try:
        assert f.dtype == "uint8"
        for x, w in zip(feed(f.epoch(0)), want, strict=True):
            np.testing.assert_array_equal(x[0].get(), w)
    finally:
        feed.close()
    cpu = types.SimpleNamespace(data=types.SimpleNamespace(device="cpu", dtype=np.float32))
    g = loader(split, mean, pca)
    assert on_device(cpu, g) is None and g.dtype == "float32"


def test_feed_hands_a_bf16_net_its_batches_rounded_once(rng):
    """DeviceFeed(dtype=bfloat16), what a bf16 net's trainer makes: the same kernel rounds the
    finished batch to nearest even as it stores it, so the batch equals the float32 one rounded
    independently (ml_dtypes), bit for bit; float32 host batches stay float32 (the net rounds)."""
    import ml_dtypes
    from alexnet_ext import cuda
    split, _, mean, pca = random_split(rng)
    want = [x.copy() for x, _ in loader(split, mean, pca).epoch(0)]
    u = loader(split, mean, pca, dtype="uint8")
    net = types.SimpleNamespace(data=types.SimpleNamespace(device="cuda:0", dtype=cuda.bfloat16))
    feed = on_device(net, u)
    try:
        got = [x.get() for x, _ in feed(u.epoch(0))]
    finally:
        feed.close()
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == np.dtype(cuda.bfloat16)
        np.testing.assert_array_equal(g.view(np.uint16), w.astype(ml_dtypes.bfloat16).view(np.uint16))
    with pytest.raises(TypeError, match="dtype: expected float32 or bfloat16"):
        DeviceFeed(0, dtype=np.float16)
