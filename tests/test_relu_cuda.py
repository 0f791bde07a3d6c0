"""relu / relu_undo on the GPU: equal to the CPU kernels (selects only), aligned (float4) and
unaligned paths, in place."""
import numpy as np
import pytest

from alexnet_ext import _core, ops
from cuda_helpers import dev, unaligned, window
from relu_refs import SHAPES, make_x

cuda = pytest.mark.cuda


@cuda
@pytest.mark.parametrize("name", SHAPES)
@pytest.mark.parametrize("to_gpu", [dev, unaligned])
def test_equals_cpu(rng, name, to_gpu):
    x = make_x(rng, SHAPES[name])
    x.flat[1::11] = np.nan
    x.flat[2::13] = -0.0
    y = ops.relu(x)
    yd = ops.relu(to_gpu(x))
    np.testing.assert_array_equal(yd.get(), y)
    assert np.array_equal(np.signbit(yd.get()), np.signbit(y))  # -0.0 stays the CPU's
    gy = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(ops.relu_undo(to_gpu(gy), to_gpu(y)).get(), ops.relu_undo(gy, y))


@cuda
@pytest.mark.parametrize("n", [1, 3, 4, 5, 1027, 1 << 20])
def test_tails_and_sizes(rng, n):
    x = rng.standard_normal(n).astype(np.float32)
    for to_gpu in (dev, unaligned):
        np.testing.assert_array_equal(ops.relu(to_gpu(x)).get(), np.where(x > 0, x, 0))


@cuda
def test_in_place(rng):
    x = make_x(rng, (3, 50, 7))
    d = dev(x)
    assert ops.relu(d, out=d) is d
    np.testing.assert_array_equal(d.get(), np.where(x > 0, x, 0))
    y = ops.relu(dev(x))
    gy = rng.standard_normal(x.shape).astype(np.float32)
    dg = dev(gy)
    assert ops.relu_undo(dg, y, out=dg) is dg
    np.testing.assert_array_equal(dg.get(), np.where(x > 0, gy, 0))
    assert ops.relu_undo(dev(gy), y, out=y) is y
    np.testing.assert_array_equal(y.get(), np.where(x > 0, gy, 0))


@cuda
def test_out_must_not_partly_overlap(rng):
    base = dev(np.zeros(20, np.float32))
    a, b = window(base, 0, (10,)), window(base, 1, (10,))
    with pytest.raises(ValueError, match=r"out: must not share memory with x \(only out=x itself"):
        ops.relu(a, out=b)
    with pytest.raises(ValueError, match="out: expected shape"):
        ops.relu(a, out=dev(np.zeros(9, np.float32)))
    with pytest.raises(TypeError, match="mix host"):
        ops.relu(a, out=np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="out: shape does not match|out: expected the shape of x"):
        _core.cuda.relu(a, dev(np.zeros(9, np.float32)))
