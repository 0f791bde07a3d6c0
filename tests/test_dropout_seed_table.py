"""ops.dropout(seed=(table, i)): the seed read from memory when the kernel runs (what a captured
CUDA graph replays with) gives exactly the mask and output of that seed passed as an int, on the
CPU and (DeviceArrays) on the GPU; bad tables raise naming the argument."""
import numpy as np
import pytest

from alexnet_ext import cuda as C
from alexnet_ext import ops


def _table(rng):
    # int64 bits of uint64 seeds: a negative int64 is a seed >= 2**63
    return np.array([rng.integers(0, 2**62), -5, rng.integers(0, 2**31)], np.int64)


@pytest.mark.parametrize("block", [None, (6, 10, 2), (5, 7, 1)])   # aligned and scattered layouts
def test_a_seed_in_memory_draws_the_mask_of_that_seed(rng, block):
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    table = _table(rng)
    for i in range(len(table)):
        seed = int(table[i]) % 2**64
        y, m = ops.dropout(x, p=0.4, seed=(table, i), offset=9, block=block)
        y_want, m_want = ops.dropout(x, p=0.4, seed=seed, offset=9, block=block)
        np.testing.assert_array_equal(m, m_want)
        np.testing.assert_array_equal(y, y_want)


@pytest.mark.cuda
def test_a_seed_in_device_memory_draws_the_mask_of_that_seed(rng):
    x = rng.standard_normal((5, 37)).astype(np.float32)
    table = _table(rng)
    dt, dx = C.to_device(table), C.to_device(x)
    for i in range(len(table)):
        y, m = ops.dropout(dx, p=0.5, seed=(dt, i))
        y_want, m_want = ops.dropout(x, p=0.5, seed=int(table[i]) % 2**64)
        np.testing.assert_array_equal(m.get(), m_want)
        np.testing.assert_array_equal(y.get(), y_want)
    with pytest.raises(TypeError, match="mix"):
        ops.dropout(dx, p=0.5, seed=(table, 0))


def test_bad_seed_tables_raise_naming_the_argument(rng):
    x = rng.standard_normal((2, 8)).astype(np.float32)
    with pytest.raises(ValueError, match=r"seed\[0\]: expected a 1-D int64"):
        ops.dropout(x, p=0.5, seed=(np.zeros(3, np.int32), 0))
    with pytest.raises(ValueError, match=r"seed\[0\]: expected a 1-D int64"):
        ops.dropout(x, p=0.5, seed=(np.zeros((1, 3), np.int64), 0))
    with pytest.raises(ValueError, match=r"seed\[1\]: expected an int <= 2"):
        ops.dropout(x, p=0.5, seed=(np.zeros(3, np.int64), 3))
    with pytest.raises(TypeError, match=r"seed\[0\]: expected an int64 array"):
        ops.dropout(x, p=0.5, seed=([1, 2], 0))
    with pytest.raises(TypeError, match="seed: expected an int or a"):
        ops.dropout(x, p=0.5, seed=(np.zeros(3, np.int64), 0, 1))
    mask = np.empty(x.shape, np.uint8)
    with pytest.raises(ValueError, match="must not share memory"):
        ops.dropout(x, p=0.5, seed=(mask.view(np.int64).reshape(-1), 0), mask_out=mask)
