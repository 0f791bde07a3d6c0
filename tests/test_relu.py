"""relu / relu_undo against NumPy references."""
import numpy as np
import pytest

from alexnet_ext import ops
from helpers import results_per_thread_count
from relu_refs import SHAPES, make_x


@pytest.mark.parametrize("name", SHAPES)
def test_relu_matches_reference(rng, name):
    x = make_x(rng, SHAPES[name])
    y = ops.relu(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_array_equal(y, np.where(x > 0, x, 0).astype(np.float32))


@pytest.mark.parametrize("name", SHAPES)
def test_relu_undo_matches_reference(rng, name):
    x = make_x(rng, SHAPES[name])
    y = ops.relu(x)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(ops.relu_undo(gy, y), np.where(x > 0, gy, 0).astype(np.float32))


def test_relu_undo_matches_finite_differences(rng):
    """FD of sum(relu(x) * g) away from the kink equals g where x > 0, else 0."""
    x = rng.standard_normal((4, 9)).astype(np.float64)
    x[np.abs(x) < 0.05] = 0.5  # stay away from the kink so FD is well defined
    gy = rng.standard_normal(x.shape)
    loss = lambda v: np.sum(np.maximum(v, 0) * gy)
    gx = ops.relu_undo(gy.astype(np.float32), ops.relu(x.astype(np.float32)))
    h = 1e-4
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        fd = (loss(xp) - loss(xm)) / (2 * h)
        assert abs(gx[idx] - fd) <= 1e-5 * (1 + abs(fd)), (idx, gx[idx], fd)


def test_relu_in_place(rng):
    x = make_x(rng, (3, 50, 7))
    ref = np.where(x > 0, x, 0)
    assert ops.relu(x, out=x) is x
    np.testing.assert_array_equal(x, ref)


def test_relu_undo_in_place(rng):
    x = make_x(rng, (2, 3, 20, 20))
    y = ops.relu(x)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    ref = np.where(y > 0, gy, 0)
    assert ops.relu_undo(gy, y, out=gy) is gy
    np.testing.assert_array_equal(gy, ref)
    gy2 = rng.standard_normal(x.shape).astype(np.float32)
    ref2 = np.where(y > 0, gy2, 0)
    assert ops.relu_undo(gy2, y, out=y) is y  # overwriting y itself is elementwise-safe too
    np.testing.assert_array_equal(y, ref2)


def test_relu_out_buffer_and_nan(rng):
    x = np.array([-1.0, np.nan, 0.0, -0.0, 2.5, -np.inf, np.inf], dtype=np.float32)
    out = np.full(x.shape, 123.0, dtype=np.float32)
    assert ops.relu(x, out=out) is out
    np.testing.assert_array_equal(out, [0, np.nan, 0, 0, 2.5, 0, np.inf])
    assert np.isnan(out[1])  # a NaN activation stays visible


def test_results_do_not_depend_on_thread_count(rng):
    x = make_x(rng, (4, 96, 55, 55))
    gy = rng.standard_normal(x.shape).astype(np.float32)
    (y1, g1), (y2, g2) = results_per_thread_count(
        lambda: (ops.relu(x), ops.relu_undo(gy, ops.relu(x))), (1, 2))
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(g1, g2)


def test_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = make_x(rng, (3, 8, 5, 5))
    tx = torch.from_numpy(x).requires_grad_()
    ty = torch.relu(tx)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    ty.backward(torch.from_numpy(gy))
    y = ops.relu(x)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(ops.relu_undo(gy, y), tx.grad.numpy())


# ---------------------------------------------------------------- bad input
def test_bad_input(rng):
    x = make_x(rng, (4, 6))
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        ops.relu(x.astype(np.float64))
    with pytest.raises(TypeError, match="x: expected a numpy.ndarray"):
        ops.relu(x.tolist())
    with pytest.raises(ValueError, match="x: expected at least 1 dimension"):
        ops.relu(np.array(3.0, dtype=np.float32))
    with pytest.raises(ValueError, match="x: expected a C-contiguous"):
        ops.relu(x.T)
    with pytest.raises(ValueError, match="x: expected a non-empty array"):
        ops.relu(x[:0])
    with pytest.raises(ValueError, match=r"out: expected shape \(4, 6\)"):
        ops.relu(x, out=np.empty((6, 4), np.float32))
    with pytest.raises(TypeError, match="out: expected dtype float32"):
        ops.relu(x, out=np.empty((4, 6), np.float64))
    with pytest.raises(ValueError, match=r"out: must not share memory with x \(only out=x"):
        big = make_x(rng, (5, 6))
        ops.relu(big[:4], out=big[1:])
    ro = np.empty((4, 6), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out: array is read-only"):
        ops.relu(x, out=ro)
    y = ops.relu(x)
    with pytest.raises(ValueError, match="y: expected shape"):
        ops.relu_undo(x, y[:3])
    with pytest.raises(TypeError, match="y: expected dtype float32"):
        ops.relu_undo(x, y.astype(np.float16))
    with pytest.raises(TypeError, match="grad_y: expected dtype float32"):
        ops.relu_undo(x.astype(np.int32), y)
    with pytest.raises(ValueError, match="out: must not share memory with grad_y"):
        big = make_x(rng, (5, 6))
        ops.relu_undo(big[:4], y, out=big[1:])


def test_core_backstop(rng):
    from alexnet_ext import _core
    x = make_x(rng, (4, 6))
    with pytest.raises(ValueError, match="out: expected the shape of x"):
        _core.cpu.relu(x, np.empty((4, 5), np.float32))
    with pytest.raises(ValueError, match="y: expected the shape of grad_y"):
        _core.cpu.relu_undo(x, np.empty(24, np.float32), np.empty((4, 6), np.float32))
    with pytest.raises(TypeError):
        _core.cpu.relu(x.astype(np.float64), np.empty((4, 6), np.float32))
