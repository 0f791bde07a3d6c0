"""Helpers shared by the tests: comparisons and thread-count runs for the kernels; random weights
and batches for the nets."""
import numpy as np
import pytest

import alexnet_ext

EPS32 = float(np.finfo(np.float32).eps)


U32 = 2.0 ** -24  # float32 unit roundoff


def assert_within_sum_bound(actual, expected, abs_sum, terms, what="", sides=1):
    """Componentwise, rigorous: ``|actual - expected| <= sides * gamma(terms) * abs_sum``.

    For a float32 sum of ``terms`` rounded operations in any order (products, partial sums of
    any tree -- split-K included --, a bias add, the accumulate-form store),
    ``|fl(s) - s| <= gamma_n * sum|t_i|`` with ``gamma_n = n u / (1 - n u)``, u = 2^-24 (Higham,
    Accuracy and Stability, 2nd ed., section 3.1). ``abs_sum`` is the same sum over absolute
    values, computed in float64. ``sides=2`` compares two float32 results with each other.
    Unlike a norm-wise sqrt(n) estimate this never fails by chance when outputs cancel.
    """
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what} shape {actual.shape} != {expected.shape}"
    assert np.all(np.isfinite(actual)), f"{what} has non-finite values"
    gamma = terms * U32 / (1 - terms * U32)
    # + a few float64 roundings of the reference itself and of abs_sum
    bound = sides * gamma * np.asarray(abs_sum, dtype=np.float64) * (1 + 1e-12) + 1e-300
    err = np.abs(actual - expected)
    bad = err > bound
    if bad.any():
        i = np.unravel_index(np.argmax(err - bound), err.shape)
        raise AssertionError(f"{what}: {int(bad.sum())} of {err.size} elements beyond the "
                             f"gamma_{terms} bound; worst at {i}: |{actual[i]!r} - "
                             f"{expected[i]!r}| = {err[i]:.3g} > {bound[i]:.3g}")


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


def results_per_thread_count(run, counts):
    """``[run() with the kernels on t CPU threads for t in counts]``; the thread count in force
    before is restored afterwards, also when ``run`` raises."""
    before = alexnet_ext.get_num_threads()
    try:
        results = []
        for t in counts:
            alexnet_ext.set_num_threads(t)
            results.append(run())
        return results
    finally:
        alexnet_ext.set_num_threads(before)


def assert_adjoint(y, gy, *pairs, rtol=1e-5):
    """``<y, gy> == <a, ga>`` for each ``(a, ga)`` in ``pairs``: the undo ops are the adjoints of
    the linear maps ``a -> y`` (within ``rtol * |y| * |gy|``, sums taken in float64)."""
    lhs = np.vdot(np.float64(y), np.float64(gy))
    scale = np.linalg.norm(np.float64(y)) * np.linalg.norm(np.float64(gy))
    for i, (a, ga) in enumerate(pairs):
        rhs = np.vdot(np.float64(a), np.float64(ga))
        assert abs(lhs - rhs) <= rtol * scale, f"pair {i}: <y, gy> = {lhs!r}, <a, ga> = {rhs!r}"


def random_params(net, rng, scale=0.4):
    """Load float32 standard-normal weights times ``scale`` into ``net``; return them as float64."""
    p = {k: (rng.standard_normal(s) * scale).astype(np.float32) for k, s in net.param_shapes.items()}
    net.load_state_dict(p)
    return {k: v.astype(np.float64) for k, v in p.items()}


def random_images(rng, spec, n):
    """``n`` standard-normal float32 inputs of model ``spec``: (n, C, H, W)."""
    return rng.standard_normal((n,) + spec.input_shape).astype(np.float32)


def random_batch(rng, spec, n):
    """``(x, y)``: :func:`random_images`, then int64 labels in ``[0, spec.classes)``."""
    x = random_images(rng, spec, n)
    return x, rng.integers(0, spec.classes, n).astype(np.int64)


def assert_same_params(actual_net, expected_net, kind, rtol, atol_scale, what=""):
    """Every canonical parameter array of ``kind`` ("value", "grad", "velocity") of two nets equal
    within ``rtol`` and an absolute tolerance of ``atol_scale`` times each array's largest entry
    (float32 sums in another order: errors relative to each array's scale)."""
    got, want = actual_net.state_dict(kind), expected_net.state_dict(kind)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=rtol,
                                   atol=atol_scale * np.abs(want[k]).max(), err_msg=f"{what}{k}")


POOL_FIELDS = ("n", "c", "h", "w", "kh", "kw", "sh", "sw", "ph", "pw", "ho", "wo")
CONV_FIELDS = ("n", "c", "h", "w", "f", "kh", "kw", "sh", "sw", "ph", "pw", "groups", "ho", "wo")


def pool_geometry(values):
    """``_core.PoolGeometry`` from its fields in csrc/pool.h order (for direct _core calls)."""
    return alexnet_ext._core.PoolGeometry(**dict(zip(POOL_FIELDS, values)))


def conv_geometry(values):
    """``_core.ConvGeometry`` from its fields in csrc/conv.h order (for direct _core calls)."""
    return alexnet_ext._core.ConvGeometry(**dict(zip(CONV_FIELDS, values)))


def assert_rejects_bad_nchw(op, x, noncontiguous, empty, name="x"):
    """``op`` refuses each way its float32 (N, C, H, W) argument ``name`` can be wrong (``x`` a
    good one; ``noncontiguous`` and ``empty`` views of it), with an error naming the argument."""
    for exc, match, bad in ((TypeError, "expected dtype float32", x.astype(np.float64)),
                            (TypeError, "expected a numpy.ndarray", x.tolist()),
                            (ValueError, r"expected 4 dimensions \(N, C, H, W\)", x[0]),
                            (ValueError, "expected a C-contiguous", noncontiguous),
                            (ValueError, "expected a non-empty array", empty)):
        with pytest.raises(exc, match=f"{name}: {match}"):
            op(bad)
