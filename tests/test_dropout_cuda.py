"""dropout / dropout_undo on the GPU: the CPU's Philox stream, so the same masks (and values) bit
for bit for the same seed and offset."""
import numpy as np
import pytest

from alexnet_ext import _core, ops
from cuda_helpers import dev, reinterpret, unaligned, window
from dropout_refs import BLOCKS, mask_ref, random_seed, tail_mask, undo_case

cuda = pytest.mark.cuda


def _both(x, to_gpu=dev, **kw):
    y, m = ops.dropout(x, **kw)
    yd, md = ops.dropout(to_gpu(x), **kw)
    return (y, m), (yd.get(), md.get())


@cuda
@pytest.mark.parametrize("shape", [(1,), (5,), (4, 7), (3, 2, 5, 3), (128, 4096), (1, 9216 + 3)])
@pytest.mark.parametrize("p", [0.5, 0.1, 0.9, 1 / 3, 0.0])
def test_mask_equals_cpu(rng, shape, p):
    x = rng.standard_normal(shape).astype(np.float32)
    seed, offset = random_seed(rng), random_seed(rng)
    for to_gpu in (dev, unaligned):
        (y, m), (yd, md) = _both(x, to_gpu, p=p, seed=seed, offset=offset)
        np.testing.assert_array_equal(md, m)
        np.testing.assert_array_equal(yd, y)
    if x.size <= 200:
        np.testing.assert_array_equal(md.ravel(), mask_ref(x.size, p, seed, offset))
    else:
        np.testing.assert_array_equal(md.ravel()[-37:], tail_mask(x.size, 37, p, seed, offset))


@cuda
def test_extreme_seed_and_offset(rng):
    x = rng.standard_normal(64).astype(np.float32)
    (_, m), (_, md) = _both(x, p=0.5, seed=2**64 - 1, offset=2**64 - 1)
    np.testing.assert_array_equal(md, mask_ref(64, 0.5, 2**64 - 1, 2**64 - 1))
    np.testing.assert_array_equal(md, m)


@cuda
@pytest.mark.parametrize("p", [0.5, 0.3, 0.0])
def test_undo_equals_cpu(rng, p):
    x, y, mask, gy, gx = undo_case(rng, (5, 301), p)
    for to_gpu in (dev, unaligned):
        np.testing.assert_array_equal(ops.dropout_undo(to_gpu(gy), to_gpu(mask), p=p).get(), gx)
        np.testing.assert_array_equal(ops.dropout_undo(to_gpu(x), to_gpu(mask), p=p).get(), y)


@cuda
def test_in_place_and_out_buffers(rng):
    x = rng.standard_normal((4, 4097)).astype(np.float32)
    seed = random_seed(rng)
    ref_y, ref_m = ops.dropout(x, p=0.5, seed=seed, offset=3)
    xd = dev(x)
    mask_buf = dev(np.full(x.shape, 7, np.uint8))
    y, m = ops.dropout(xd, p=0.5, seed=seed, offset=3, out=xd, mask_out=mask_buf)
    assert y is xd and m is mask_buf
    np.testing.assert_array_equal(xd.get(), ref_y)
    np.testing.assert_array_equal(mask_buf.get(), ref_m)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    gd = dev(gy)
    assert ops.dropout_undo(gd, m, p=0.5, out=gd) is gd
    np.testing.assert_array_equal(gd.get(), ops.dropout_undo(gy, ref_m, p=0.5))


@cuda
def test_nonfinite_inputs_dropped_to_zero(rng):
    x = np.full(400, np.nan, np.float32)
    (y, m), (yd, md) = _both(x, p=0.5, seed=random_seed(rng))
    np.testing.assert_array_equal(yd, y)
    assert np.all(yd[md == 0] == 0) and np.all(np.isnan(yd[md == 1]))


@cuda
def test_bad_input(rng):
    x = dev(rng.standard_normal((4, 6)).astype(np.float32))
    with pytest.raises(ValueError, match=r"p: expected a drop probability 0 <= p < 1, got 1.0"):
        ops.dropout(x, p=1.0, seed=0)
    with pytest.raises(TypeError, match="mask_out: expected dtype uint8, got float32"):
        ops.dropout(x, p=0.5, seed=0, mask_out=dev(np.zeros((4, 6), np.float32)))
    base = dev(np.zeros(100, np.uint8))
    xm = window(base, 0, (24,))  # uint8 memory seen as the mask
    with pytest.raises(TypeError, match="mix host"):
        ops.dropout(x, p=0.5, seed=0, mask_out=np.zeros((4, 6), np.uint8))
    y, m = ops.dropout(x, p=0.5, seed=1)
    with pytest.raises(ValueError, match=r"mask: expected shape \(4, 6\)"):
        ops.dropout_undo(x, xm, p=0.5)
    buf = dev(np.zeros(30, np.float32))
    with pytest.raises(ValueError, match=r"out: must not share memory with grad_y \(only out=grad_y"):
        ops.dropout_undo(window(buf, 0, (4, 6)), m, p=0.5, out=window(buf, 2, (4, 6)))
    with pytest.raises(ValueError, match="mask_out: must not share memory with x"):
        ops.dropout(window(buf, 0, (4, 6)), p=0.5, seed=0,
                    mask_out=reinterpret(buf, (4, 6), np.uint8))
    with pytest.raises(ValueError, match="mask: shape does not match|mask: expected the shape of x"):
        _core.cuda.dropout(x, x, dev(np.zeros(23, np.uint8)), 0.5, 0, 0)
    with pytest.raises(ValueError, match="p: expected 0 <= p < 1"):
        _core.cuda.dropout(x, x, m, 1.5, 0, 0)


@cuda
@pytest.mark.parametrize("n,k,b", BLOCKS)
def test_blocks_equal_cpu(rng, n, k, b):
    x = rng.standard_normal((n, b)).astype(np.float32)
    for c in range(k):
        y, m = ops.dropout(x, p=0.3, seed=9, offset=2, block=(b, k * b, c * b))
        yd, md = ops.dropout(dev(x), p=0.3, seed=9, offset=2, block=(b, k * b, c * b))
        np.testing.assert_array_equal(md.get(), m)
        np.testing.assert_array_equal(yd.get(), y)


@cuda
@pytest.mark.parametrize("n,k,b", BLOCKS)
def test_blocks_of_a_ranks_samples_equal_cpu(rng, n, k, b):
    """Data parallel: a rank's samples from s0 on, one column's block of each (start past
    stride - row), draw the CPU's mask on the GPU too."""
    x = rng.standard_normal((n, b)).astype(np.float32)
    for s0 in (1, 5):
        for c in range(k):
            block = (b, k * b, s0 * k * b + c * b)
            y, m = ops.dropout(x, p=0.3, seed=9, offset=2, block=block)
            yd, md = ops.dropout(dev(x), p=0.3, seed=9, offset=2, block=block)
            np.testing.assert_array_equal(md.get(), m)
            np.testing.assert_array_equal(yd.get(), y)
