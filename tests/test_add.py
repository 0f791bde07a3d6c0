"""add against NumPy: exact float32 sums, in place, bad input."""
import numpy as np
import pytest

from alexnet_ext import ops
from add_refs import SHAPES, make_pair


@pytest.mark.parametrize("name", SHAPES)
def test_matches_numpy_exactly(rng, name):
    a, b = make_pair(rng, SHAPES[name])
    y = ops.add(a, b)
    assert y.dtype == np.float32 and y.shape == a.shape
    # float32 + float32 rounded once: NumPy's float32 add is the reference, bit for bit.
    np.testing.assert_array_equal(y, a + b)
    # and within half an ulp of the exact (float64) sum
    exact = np.float64(a) + np.float64(b)
    assert np.all(np.abs(np.float64(y) - exact) <= 0.5 * np.spacing(np.abs(y)).astype(np.float64))


def test_in_place_either_side(rng):
    a, b = make_pair(rng, (3, 11, 5))
    want = a + b
    a1 = a.copy()
    assert ops.add(a1, b, out=a1) is a1
    np.testing.assert_array_equal(a1, want)
    b1 = b.copy()
    assert ops.add(a, b1, out=b1) is b1
    np.testing.assert_array_equal(b1, want)


def test_special_values(rng):
    a = np.array([np.inf, -np.inf, np.nan, 1.0, -0.0, 3e38], np.float32)
    b = np.array([1.0, np.inf, 2.0, -1.0, -0.0, 3e38], np.float32)
    y = ops.add(a, b)
    with np.errstate(over="ignore", invalid="ignore"):   # inf - inf and 3e38 + 3e38, on purpose
        np.testing.assert_array_equal(y, a + b)
    assert np.signbit(y[4])  # -0 + -0 = -0


def test_bad_input(rng):
    a, b = make_pair(rng, (4, 5))
    with pytest.raises(TypeError, match="a"):
        ops.add(a.astype(np.float64), b)
    with pytest.raises(ValueError, match="b"):
        ops.add(a, b[:, :4].copy())
    with pytest.raises(ValueError, match="out"):
        ops.add(a, b, out=np.empty((5, 4), np.float32))
    with pytest.raises(ValueError, match="out"):
        ops.add(a, b, out=a[::-1])  # overlaps a but is not a itself
    with pytest.raises(ValueError, match="contiguous"):
        ops.add(a[:, ::2], b[:, ::2])
