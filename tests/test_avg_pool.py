"""avg_pool / avg_pool_undo against float64 NumPy references."""
import numpy as np
import pytest

import alexnet_ext
from alexnet_ext import ops
from helpers import assert_close, central_difference, random_indices, results_per_thread_count
from helpers import pool_geometry
from pool_cases import CASES, random_geometry
from avg_pool_refs import pool_args, pool_kwargs, ref_avg_pool, ref_avg_pool_grad


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize("name", CASES)
def test_forward_matches_reference(rng, name):
    case = CASES[name]
    x = rng.standard_normal(case[:4]).astype(np.float32)
    y = ops.avg_pool(x, **pool_kwargs(case))
    assert y.dtype == np.float32
    assert_close(y, ref_avg_pool(x, **pool_kwargs(case)), pool_args(case))


@pytest.mark.parametrize("name", CASES)
def test_backward_matches_reference(rng, name):
    case = CASES[name]
    y = ref_avg_pool(np.zeros(case[:4]), **pool_kwargs(case))
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx = ops.avg_pool_undo(gy, image_size=case[2:4], **pool_kwargs(case))
    assert gx.shape == case[:4]
    assert_close(gx, ref_avg_pool_grad(gy, case[2:4], **pool_kwargs(case)), pool_args(case))


def test_padding_and_overhang_not_counted(rng):
    """Constant input: every window's mean is the constant, however it is clipped."""
    x = np.full((1, 2, 7, 8), 3.0, np.float32)
    for kw in (dict(size=3, stride=2, padding=1, ceil_mode=True),
               dict(size=(5, 4), stride=(3, 3), padding=(2, 2), ceil_mode=True)):
        np.testing.assert_array_equal(ops.avg_pool(x, **kw), 3.0)
    # the corner window of a padded 3x3 holds 4 real pixels: divide by 4, not 9
    x = rng.standard_normal((1, 1, 4, 4)).astype(np.float32)
    y = ops.avg_pool(x, size=3, stride=1, padding=1)
    assert abs(y[0, 0, 0, 0] - np.float64(x[0, 0, :2, :2]).mean()) < 1e-6


def test_random_geometries(rng):
    for _ in range(30):
        shape, kw_args = random_geometry(rng)
        h, w = shape[2:]
        kh, kw = kw_args["size"]
        x = rng.standard_normal(shape).astype(np.float32)
        y = ops.avg_pool(x, **kw_args)
        assert_close(y, ref_avg_pool(x, **kw_args), kh * kw, what=str(kw_args))
        gy = rng.standard_normal(y.shape).astype(np.float32)
        assert_close(ops.avg_pool_undo(gy, image_size=(h, w), **kw_args),
                     ref_avg_pool_grad(gy, (h, w), **kw_args), kh * kw, what=str(kw_args))


@pytest.mark.parametrize("name", CASES)
def test_undo_is_exact_adjoint(rng, name):
    """<avg_pool(x), g> == <x, avg_pool_undo(g)>."""
    case = CASES[name]
    x = rng.standard_normal(case[:4]).astype(np.float32)
    y = ops.avg_pool(x, **pool_kwargs(case))
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx = ops.avg_pool_undo(gy, image_size=case[2:4], **pool_kwargs(case))
    lhs, rhs = np.vdot(np.float64(y), np.float64(gy)), np.vdot(np.float64(x), np.float64(gx))
    assert abs(lhs - rhs) <= 1e-5 * np.linalg.norm(y) * np.linalg.norm(gy)


@pytest.mark.parametrize("name", ["alexnet_pool5_13", "padding_non_square", "ceil_mode_padding"])
def test_gradient_matches_finite_differences(rng, name):
    case = CASES[name]
    x = rng.standard_normal(case[:4])
    gy = rng.standard_normal(ref_avg_pool(x, **pool_kwargs(case)).shape)
    gx = ops.avg_pool_undo(gy.astype(np.float32), image_size=case[2:4], **pool_kwargs(case))
    loss = lambda xv: np.sum(ref_avg_pool(xv, **pool_kwargs(case)) * gy)
    for idx in random_indices(rng, x.shape, 12) + [(0, 0, 0, 0), (0, 0) + tuple(s - 1 for s in case[2:4])]:
        fd = central_difference(loss, x, idx, 1e-3)
        assert abs(gx[idx] - fd) <= 1e-5 * (1 + abs(fd)), (idx, gx[idx], fd)


def test_deterministic_across_thread_counts(rng):
    x = rng.standard_normal((3, 5, 27, 27)).astype(np.float32)
    gy = rng.standard_normal((3, 5, 14, 14)).astype(np.float32)
    kw = dict(size=3, stride=2, padding=1)
    runs = results_per_thread_count(
        lambda: (ops.avg_pool(x, **kw), ops.avg_pool_undo(gy, image_size=27, **kw)),
        (1, max(2, alexnet_ext.get_num_threads())))
    for a, b in zip(*runs):
        assert np.array_equal(a, b)


# ---------------------------------------------------------------- optional PyTorch oracle
@pytest.mark.parametrize("name", CASES)
def test_matches_torch(rng, name):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    case = CASES[name]
    kw = pool_kwargs(case)
    x = rng.standard_normal(case[:4]).astype(np.float32)
    tx = torch.from_numpy(x).double().requires_grad_()
    ty = F.avg_pool2d(tx, kw["size"], kw["stride"], kw["padding"], ceil_mode=kw["ceil_mode"],
                      count_include_pad=False)
    gy = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.from_numpy(gy).double())
    assert_close(ops.avg_pool(x, **kw), ty.detach().numpy(), pool_args(case))
    assert_close(ops.avg_pool_undo(gy, image_size=case[2:4], **kw), tx.grad.numpy(), pool_args(case))


# ---------------------------------------------------------------- bad input
def test_bad_input_avg_pool(rng):
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        ops.avg_pool(x.astype(np.float64), size=3, stride=2)
    with pytest.raises(ValueError, match=r"x: expected 4 dimensions \(N, C, H, W\)"):
        ops.avg_pool(x[0], size=3, stride=2)
    with pytest.raises(ValueError, match="x: expected a C-contiguous"):
        ops.avg_pool(x.transpose(0, 1, 3, 2), size=3, stride=2)
    with pytest.raises(TypeError, match="missing 2 required keyword-only arguments"):
        ops.avg_pool(x)
    with pytest.raises(ValueError, match=r"padding: expected at most half the window"):
        ops.avg_pool(x, size=2, stride=2, padding=(0, 2))
    with pytest.raises(ValueError, match=r"size: a 5x10 window is larger than the padded input 8x8"):
        ops.avg_pool(x, size=(5, 10), stride=1)
    with pytest.raises(ValueError, match=r"stride\[0\]: expected an int >= 1, got 0"):
        ops.avg_pool(x, size=3, stride=(0, 1))
    with pytest.raises(TypeError, match="ceil_mode: expected a bool"):
        ops.avg_pool(x, size=3, stride=2, ceil_mode=None)


def test_bad_input_avg_pool_undo(rng):
    gy = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    ops.avg_pool_undo(gy, image_size=8, size=3, stride=2)
    with pytest.raises(ValueError, match=r"grad_y: expected shape \(2, 3, 4, 4\) \(the output size of a 3x3 window"):
        ops.avg_pool_undo(gy, image_size=9, size=3, stride=2)
    with pytest.raises(ValueError, match=r"grad_y: expected shape \(2, 3, 4, 4\)"):
        ops.avg_pool_undo(gy, image_size=8, size=3, stride=2, ceil_mode=True)
    with pytest.raises(TypeError, match="grad_y: expected dtype float32"):
        ops.avg_pool_undo(gy.astype(np.int32), image_size=8, size=3, stride=2)
    with pytest.raises(ValueError, match="image_size: expected an int or a"):
        ops.avg_pool_undo(gy, image_size=(8, 8, 8), size=3, stride=2)
    with pytest.raises(ValueError, match="size: a 3x3 window is larger than the padded input 2x2"):
        ops.avg_pool_undo(gy, image_size=2, size=3, stride=2)
    with pytest.raises(ValueError, match="padding: expected at most half the window"):
        ops.avg_pool_undo(gy, image_size=8, size=3, stride=2, padding=2)


def test_core_backstop(rng):
    from alexnet_ext import _core
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    y = np.empty((2, 3, 3, 3), np.float32)
    t = (2, 3, 8, 8, 3, 3, 2, 2, 0, 0, 3, 3)
    geo = pool_geometry(t)
    _core.cpu.avg_pool(x, y, geo)
    with pytest.raises(ValueError, match="inconsistent sizes"):
        _core.cpu.avg_pool(x, y, pool_geometry(t[:10] + (2, 3)))
    with pytest.raises(ValueError, match="y: expected shape"):
        _core.cpu.avg_pool(x, y[:, :2].copy(), geo)
    with pytest.raises(ValueError, match="grad_x: expected shape"):
        _core.cpu.avg_pool_undo(y, x[:, :, :7].copy(), geo)
    with pytest.raises(ValueError, match="PoolGeometry: expected the 12 fields"):
        pool_geometry(t[:11])
