"""max_pool / max_pool_undo against float64 NumPy references."""
import numpy as np
import pytest

import alexnet_ext
from alexnet_ext import ops
from helpers import central_difference, random_indices, results_per_thread_count
from helpers import assert_rejects_bad_nchw, pool_geometry
from pool_cases import CASES, random_geometry, ref_out_size, windows
from max_pool_refs import bad_switch_cases, pool_kwargs, ref_max_pool, tie_free


def ref_scatter(gy, s, h, w):
    n, c = gy.shape[:2]
    gx = np.zeros((n, c, h * w))
    for i in range(n):
        for j in range(c):
            np.add.at(gx[i, j], s[i, j].ravel(), np.float64(gy[i, j]).ravel())
    return gx.reshape(n, c, h, w)


@pytest.mark.parametrize("name", CASES)
def test_forward_matches_reference(rng, name):
    case = CASES[name]
    x = tie_free(rng, case[:4])
    y, s = ops.max_pool(x, **pool_kwargs(case))
    ry, rs = ref_max_pool(x, **pool_kwargs(case))
    assert y.shape == ry.shape and s.dtype == np.int32
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(s, rs)


def test_output_sizes():
    assert ops.pool_output_size(55, 3, 2) == 27  # the paper's pool1, pool2, pool5
    assert ops.pool_output_size(27, 3, 2) == 13
    assert ops.pool_output_size(13, 3, 2) == 6
    assert ops.pool_output_size(12, 3, 2) == 5
    assert ops.pool_output_size(12, 3, 2, ceil_mode=True) == 6
    # ceil would give 5 windows; the 5th would start at 8 = H + p, inside the padding only
    assert ops.pool_output_size(6, 2, 2, 1, ceil_mode=True) == 4
    for h in range(1, 30):
        for k in range(1, 6):
            for s in range(1, 5):
                for p in range(k // 2 + 1):
                    if h + 2 * p < k:
                        continue
                    for cm in (False, True):
                        assert ops.pool_output_size(h, k, s, p, cm) == ref_out_size(h, k, s, p, cm)
    with pytest.raises(ValueError, match="larger than the padded input"):
        ops.pool_output_size(3, 5, 1, 0)


def test_random_geometries(rng):
    for _ in range(30):
        shape, kw_args = random_geometry(rng)
        h, w = shape[2:]
        x = tie_free(rng, shape)
        y, s = ops.max_pool(x, **kw_args)
        ry, rs = ref_max_pool(x, **kw_args)
        np.testing.assert_array_equal(y, ry, err_msg=str(kw_args))
        np.testing.assert_array_equal(s, rs, err_msg=str(kw_args))
        gy = rng.standard_normal(y.shape).astype(np.float32)
        np.testing.assert_allclose(ops.max_pool_undo(gy, s, image_size=(h, w)),
                                   ref_scatter(gy, rs, h, w), rtol=1e-6, atol=1e-6)


def test_ties_go_to_first_in_scan_order(rng):
    """Constant input: every switch is its window's first real pixel (top-left, after clipping)."""
    x = np.full((2, 3, 9, 10), 1.5, np.float32)
    kw = dict(size=3, stride=2, padding=1, ceil_mode=True)
    y, s = ops.max_pool(x, **kw)
    assert np.all(y == 1.5)
    for oy, ox, rows, cols in windows(9, 10, **kw):
        assert np.all(s[:, :, oy, ox] == rows.start * 10 + cols.start)
    # few distinct values: many ties inside windows, the reference's np.argmax picks the first
    x = rng.integers(0, 3, (2, 4, 11, 12)).astype(np.float32)
    for kw in (dict(size=3, stride=2), dict(size=(4, 3), stride=(1, 2), padding=(2, 1), ceil_mode=True)):
        y, s = ops.max_pool(x, **kw)
        ry, rs = ref_max_pool(x, **kw)
        np.testing.assert_array_equal(y, ry)
        np.testing.assert_array_equal(s, rs)


def test_padding_never_wins(rng):
    """All-negative input with padding: the padded border (zeros elsewhere) must not be chosen."""
    x = -1.0 - rng.random((2, 3, 7, 8)).astype(np.float32)
    y, s = ops.max_pool(x, size=3, stride=2, padding=1, ceil_mode=True)
    assert np.all(y < -1.0)
    ry, rs = ref_max_pool(x, size=3, stride=2, padding=1, ceil_mode=True)
    np.testing.assert_array_equal(s, rs)
    x = np.full((1, 1, 5, 5), -np.inf, np.float32)  # even -inf beats padding
    y, s = ops.max_pool(x, size=3, stride=2, padding=1)
    assert np.all(y == -np.inf) and np.all((s >= 0) & (s < 25))


def test_nan_propagates(rng):
    x = tie_free(rng, (2, 3, 9, 9))
    x[0, 1, 4, 5] = np.nan
    x[0, 1, 5, 4] = np.nan
    x[1, 2, 0, 0] = np.nan
    y, s = ops.max_pool(x, size=3, stride=2)
    ry, rs = ref_max_pool(x, size=3, stride=2)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ry))
    # windows (1, 2), (2, 1), (2, 2) of plane (0, 1) and (0, 0) of plane (1, 2) hold a NaN
    assert np.isnan(y[0, 1, [1, 2, 2], [2, 1, 2]]).all() and np.isnan(y).sum() == 4
    np.testing.assert_array_equal(s, rs)  # the switch is the first NaN in scan order
    assert s[0, 1, 2, 2] == 4 * 9 + 5 and s[0, 1, 2, 1] == 5 * 9 + 4 and s[1, 2, 0, 0] == 0


def test_undo_matches_reference_scatter(rng):
    for name in ("alexnet_pool2_27", "padding_non_square", "ceil_mode_padding", "window_covers_image"):
        case = CASES[name]
        x = tie_free(rng, case[:4])
        y, s = ops.max_pool(x, **pool_kwargs(case))
        gy = rng.standard_normal(y.shape).astype(np.float32)
        gx = ops.max_pool_undo(gy, s, image_size=case[2:4])
        # overlapping windows share pixels, so sums of two or more float32 values appear
        np.testing.assert_allclose(gx, ref_scatter(gy, s, *case[2:4]), rtol=1e-6, atol=1e-6)
        assert gx.shape == x.shape and gx.dtype == np.float32


@pytest.mark.parametrize("name", CASES)
def test_undo_is_adjoint_of_gather(rng, name):
    """y = gather(x, switches) is linear in x given the switches: <y, g> == <x, undo(g)>."""
    case = CASES[name]
    x = rng.standard_normal(case[:4]).astype(np.float32)
    y, s = ops.max_pool(x, **pool_kwargs(case))
    n, c, h, w = x.shape
    gathered = np.take_along_axis(x.reshape(n, c, -1), s.reshape(n, c, -1), 2).reshape(y.shape)
    np.testing.assert_array_equal(gathered, y)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx = ops.max_pool_undo(gy, s, image_size=(h, w))
    lhs, rhs = np.vdot(np.float64(y), np.float64(gy)), np.vdot(np.float64(x), np.float64(gx))
    assert abs(lhs - rhs) <= 1e-6 * np.linalg.norm(y) * np.linalg.norm(gy)


@pytest.mark.parametrize("name", ["alexnet_pool5_13", "padding_non_square", "ceil_mode_overhang"])
def test_gradient_matches_finite_differences(rng, name):
    """On tie-free input (values 0.25 apart) the max is piecewise linear: steps of 1e-3 stay on
    one piece, so finite differences of the float64 reference are exact up to rounding."""
    case = CASES[name]
    x = tie_free(rng, case[:4])
    y, s = ops.max_pool(x, **pool_kwargs(case))
    gy = rng.standard_normal(y.shape)
    gx = ops.max_pool_undo(gy.astype(np.float32), s, image_size=case[2:4])
    loss = lambda xv: np.sum(ref_max_pool(xv, **pool_kwargs(case))[0] * gy)
    x64 = np.float64(x)
    chosen = [tuple(np.unravel_index(v, case[2:4])) for v in np.unique(s[0, 0])][:6]
    for idx in random_indices(rng, x.shape, 10) + [(0, 0) + rc for rc in chosen]:
        fd = central_difference(loss, x64, idx, 1e-3)
        assert abs(gx[idx] - fd) <= 1e-5 * (1 + abs(fd)), (idx, gx[idx], fd)


def test_int64_switches(rng):
    """The kernels are templated on the index type: int64 switches give the same results."""
    from alexnet_ext import _core
    case = CASES["ceil_mode_padding"]
    x = tie_free(rng, case[:4])
    y, s = ops.max_pool(x, **pool_kwargs(case))
    y64 = np.empty_like(y)
    s64 = np.empty(y.shape, np.int64)
    n, c, h, w = x.shape
    _core.cpu.max_pool(x, y64, s64, pool_geometry((n, c, h, w, 3, 4, 3, 2, 1, 2) + y.shape[2:]))
    np.testing.assert_array_equal(y64, y)
    np.testing.assert_array_equal(s64, s)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(ops.max_pool_undo(gy, s64, image_size=(h, w)),
                                  ops.max_pool_undo(gy, s, image_size=(h, w)))


def test_switch_dtype_rule():
    assert ops.switch_dtype(55, 55) == np.int32
    assert ops.switch_dtype(46340, 46340) == np.int32  # 2147395600 pixels
    assert ops.switch_dtype(46341, 46341) == np.int64  # 2147488281 > 2**31 - 1
    assert ops.switch_dtype(1, 2**31 - 1) == np.int32
    assert ops.switch_dtype(1, 2**31) == np.int64


def test_deterministic_across_thread_counts(rng):
    x = rng.standard_normal((3, 5, 27, 27)).astype(np.float32)

    def pool_and_undo():
        y, s = ops.max_pool(x)
        gy = np.ones(y.shape, np.float32) / 3
        return y, s, ops.max_pool_undo(gy, s, image_size=27)

    runs = results_per_thread_count(pool_and_undo, (1, max(2, alexnet_ext.get_num_threads())))
    for a, b in zip(*runs):
        assert np.array_equal(a, b)


# ---------------------------------------------------------------- optional PyTorch oracle
@pytest.mark.parametrize("name", CASES)
def test_matches_torch(rng, name):
    """F.max_pool2d(return_indices=True) returns the same flat indices; its output-size and
    padding rules are the ones documented for ours."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    case = CASES[name]
    x = tie_free(rng, case[:4])
    kw = pool_kwargs(case)
    tx = torch.from_numpy(x).double().requires_grad_()
    ty, ti = F.max_pool2d(tx, kw["size"], kw["stride"], kw["padding"], ceil_mode=kw["ceil_mode"],
                          return_indices=True)
    gy = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.from_numpy(gy).double())
    y, s = ops.max_pool(x, **kw)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(s, ti.numpy())
    np.testing.assert_allclose(ops.max_pool_undo(gy, s, image_size=case[2:4]), tx.grad.numpy(),
                               rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- bad input
def test_bad_switches(rng):
    gy, s, cases = bad_switch_cases(rng)
    for bad, t in cases:
        with pytest.raises(ValueError, match=rf"switches: expected flat indices in \[0, 30\) "
                                             rf".*got {bad} at index \(1, 2, 1, 0\)"):
            ops.max_pool_undo(gy, t, image_size=(5, 6))
    # in range for the stated image size only: a smaller image_size must be caught too
    with pytest.raises(ValueError, match=r"switches: expected flat indices in \[0, 12\)"):
        ops.max_pool_undo(gy, s, image_size=(3, 4))
    with pytest.raises(TypeError, match="switches: expected dtype int32 or int64, got float32"):
        ops.max_pool_undo(gy, s.astype(np.float32), image_size=(5, 6))
    with pytest.raises(TypeError, match="switches: expected dtype int32 or int64, got int16"):
        ops.max_pool_undo(gy, s.astype(np.int16), image_size=(5, 6))
    with pytest.raises(ValueError, match=r"switches: expected shape \(2, 3, 2, 2\) \(the shape of grad_y\)"):
        ops.max_pool_undo(gy, s[:, :, :1].copy(), image_size=(5, 6))
    with pytest.raises(ValueError, match="switches: expected a C-contiguous"):
        ops.max_pool_undo(gy, np.asfortranarray(s), image_size=(5, 6))


def test_bad_input(rng):
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    assert_rejects_bad_nchw(ops.max_pool, x, x[:, :, ::2], x[:, :0])
    with pytest.raises(ValueError, match=r"padding: expected at most half the window .*\(1, 1\) for a 3x3 window\), got \(2, 0\)"):
        ops.max_pool(x, padding=(2, 0))
    with pytest.raises(ValueError, match="padding: expected at most half"):
        ops.max_pool(x, size=(3, 2), padding=(1, 2))
    with pytest.raises(ValueError, match=r"padding\[1\]: expected an int >= 0, got -1"):
        ops.max_pool(x, padding=(0, -1))
    with pytest.raises(ValueError, match=r"size: a 9x9 window is larger than the padded input 8x8"):
        ops.max_pool(x, size=9)
    with pytest.raises(ValueError, match="stride: expected an int >= 1, got 0"):
        ops.max_pool(x, stride=0)
    with pytest.raises(ValueError, match="size: expected an int or a"):
        ops.max_pool(x, size=(3, 3, 3))
    with pytest.raises(TypeError, match="size: expected an int"):
        ops.max_pool(x, size=3.0)
    with pytest.raises(TypeError, match="ceil_mode: expected a bool"):
        ops.max_pool(x, ceil_mode="yes")
    y, s = ops.max_pool(x)
    with pytest.raises(TypeError, match="grad_y: expected dtype float32"):
        ops.max_pool_undo(y.astype(np.float64), s, image_size=8)
    with pytest.raises(ValueError, match=r"image_size\[1\]: expected an int >= 1"):
        ops.max_pool_undo(y, s, image_size=(8, 0))
    with pytest.raises(TypeError, match="image_size: expected an int"):
        ops.max_pool_undo(y, s, image_size=None)
    with pytest.raises(ValueError, match=r"grad_y: expected 4 dimensions"):
        ops.max_pool_undo(y[0], s[0], image_size=8)


def test_core_backstop(rng):
    """Direct calls into _core with inconsistent arguments raise instead of touching memory."""
    from alexnet_ext import _core
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    y = np.empty((2, 3, 3, 3), np.float32)
    s = np.empty((2, 3, 3, 3), np.int32)
    t = (2, 3, 8, 8, 3, 3, 2, 2, 0, 0, 3, 3)
    geo = pool_geometry(t)
    _core.cpu.max_pool(x, y, s, geo)
    with pytest.raises(ValueError, match="inconsistent sizes"):
        _core.cpu.max_pool(x, y, s, pool_geometry(t[:10] + (5, 5)))
    with pytest.raises(ValueError, match="inconsistent sizes"):  # padding above half the window
        _core.cpu.max_pool(x, y, s, pool_geometry((2, 3, 8, 8, 3, 3, 2, 2, 2, 2, 5, 5)))
    with pytest.raises(ValueError, match="x: expected shape"):
        _core.cpu.max_pool(x[:1].copy(), y, s, geo)
    with pytest.raises(ValueError, match="switches: expected shape"):
        _core.cpu.max_pool(x, y, s[:1].copy(), geo)
    with pytest.raises(TypeError, match="switches: expected dtype int32 or int64"):
        _core.cpu.max_pool(x, y, s.astype(np.uint32), geo)
    with pytest.raises(ValueError, match="grad_x: expected shape"):
        _core.cpu.max_pool_undo(y, s, np.empty((2, 4, 8, 8), np.float32))
