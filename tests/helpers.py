"""Comparison helpers for the kernel tests."""
import numpy as np

EPS32 = float(np.finfo(np.float32).eps)


def assert_close(actual, expected, reduction=1, factor=8.0, what=""):
    """float32 result against a float64 reference.

    Bound: ||actual - expected|| / ||expected|| <= factor * eps32 * sqrt(reduction), the growth of
    rounding error in a sum of `reduction` float32 terms. Also checks shape and finiteness.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what} shape {actual.shape} != {expected.shape}"
    assert np.all(np.isfinite(actual)), f"{what} has non-finite values"
    err = np.linalg.norm(actual.astype(np.float64) - expected)
    ref = max(np.linalg.norm(expected), 1e-30)
    bound = factor * EPS32 * np.sqrt(max(reduction, 1))
    assert err / ref <= bound, f"{what} relative error {err / ref:.3g} > {bound:.3g}"


def central_difference(f, x, index, h):
    """d f / d x[index] by central differences; f maps a float64 array to a scalar."""
    xp = x.copy()
    xp[index] += h
    xm = x.copy()
    xm[index] -= h
    return (f(xp) - f(xm)) / (2 * h)


def random_indices(rng, shape, count):
    """`count` random multi-indices into an array of `shape`."""
    flat = rng.choice(int(np.prod(shape)), size=min(count, int(np.prod(shape))), replace=False)
    return [np.unravel_index(i, shape) for i in flat]
