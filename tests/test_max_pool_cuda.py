"""max_pool / max_pool_undo on the GPU: equal to the CPU kernels bit for bit (values, switches,
gradients), over the case table of pool_cases.py."""
import numpy as np
import pytest

from alexnet_ext import _core, ops
from cuda_helpers import dev
from pool_cases import CASES
from helpers import pool_geometry
from max_pool_refs import bad_switch_cases, pool_kwargs, ref_max_pool, tie_free

cuda = pytest.mark.cuda


def _both_forward(x, **kw):
    y, s = ops.max_pool(x, **kw)
    yd, sd = ops.max_pool(dev(x), **kw)
    assert sd.dtype == s.dtype and yd.shape == y.shape
    return (y, s), (yd.get(), sd.get())


def _undo_both(gy, s, image_size):
    gx = ops.max_pool_undo(gy, s, image_size=image_size)
    gxd = ops.max_pool_undo(dev(gy), dev(s), image_size=image_size)
    return gx, gxd.get()


@cuda
@pytest.mark.parametrize("name", CASES)
def test_equals_cpu(rng, name):
    case = CASES[name]
    for x in (tie_free(rng, case[:4]),
              rng.integers(0, 3, case[:4]).astype(np.float32)):  # many ties inside windows
        (y, s), (yd, sd) = _both_forward(x, **pool_kwargs(case))
        np.testing.assert_array_equal(yd, y)
        np.testing.assert_array_equal(sd, s)
        ry, rs = ref_max_pool(x, **pool_kwargs(case))
        np.testing.assert_array_equal(sd, rs)
        gy = rng.standard_normal(y.shape).astype(np.float32)
        gx, gxd = _undo_both(gy, s, case[2:4])
        np.testing.assert_array_equal(gxd, gx)  # same additions in the same order


@cuda
def test_nan_and_padding_rules(rng):
    x = tie_free(rng, (2, 3, 9, 9))
    x[0, 1, 4, 5] = np.nan
    x[0, 1, 5, 4] = np.nan
    x[1, 2, 0, 0] = np.nan
    (y, s), (yd, sd) = _both_forward(x, size=3, stride=2)
    np.testing.assert_array_equal(yd, y)  # NaN == NaN for assert_array_equal
    np.testing.assert_array_equal(sd, s)
    x = -1.0 - rng.random((2, 3, 7, 8)).astype(np.float32)
    (y, s), (yd, sd) = _both_forward(x, size=3, stride=2, padding=1, ceil_mode=True)
    np.testing.assert_array_equal(sd, s)
    assert np.all(yd < -1.0)
    x = np.full((1, 1, 5, 5), -np.inf, np.float32)
    (y, s), (yd, sd) = _both_forward(x, size=3, stride=2, padding=1)
    np.testing.assert_array_equal(sd, s)


@cuda
def test_alexnet_pool1_batch(rng):
    """A real pool1 (N=8 of the paper's 128, 96 maps, 55x55 -> 27x27): many planes per launch."""
    x = rng.standard_normal((8, 96, 55, 55)).astype(np.float32)
    (y, s), (yd, sd) = _both_forward(x)
    np.testing.assert_array_equal(yd, y)
    np.testing.assert_array_equal(sd, s)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx, gxd = _undo_both(gy, s, 55)
    np.testing.assert_array_equal(gxd, gx)


@cuda
def test_undo_follows_any_in_range_switch_like_the_cpu(rng):
    """The undo honours every switch in [0, H*W) the way the CPU does, in output order, even
    switches outside their own window and many outputs naming one pixel (long runs of equal
    switches inside one warp's 32 outputs, and across them)."""
    n, c, h, w, ho, wo = 2, 3, 8, 10, 9, 11  # ho <= h + 1: grad_y a pooling could give
    gy = rng.standard_normal((n, c, ho, wo)).astype(np.float32)
    for s in (rng.integers(0, h * w, (n, c, ho, wo)),
              rng.integers(0, 3, (n, c, ho, wo)),
              np.zeros((n, c, ho, wo), np.int64)):
        for dtype in (np.int32, np.int64):
            gx, gxd = _undo_both(gy, s.astype(dtype), (h, w))
            np.testing.assert_array_equal(gxd, gx)


@cuda
def test_int64_switches(rng):
    case = CASES["ceil_mode_padding"]
    x = tie_free(rng, case[:4])
    y, s = ops.max_pool(x, **pool_kwargs(case))
    n, c, h, w = x.shape
    y64, s64 = dev(np.empty_like(y)), dev(np.empty(y.shape, np.int64))
    _core.cuda.max_pool(dev(x), y64, s64, pool_geometry((n, c, h, w, 3, 4, 3, 2, 1, 2) + y.shape[2:]))
    np.testing.assert_array_equal(y64.get(), y)
    np.testing.assert_array_equal(s64.get(), s)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx, gxd = _undo_both(gy, s.astype(np.int64), (h, w))
    np.testing.assert_array_equal(gxd, gx)


@cuda
def test_undo_leaves_inputs_unchanged(rng):
    x = rng.standard_normal((2, 5, 13, 13)).astype(np.float32)
    y, s = ops.max_pool(dev(x))
    gy = dev(rng.standard_normal(y.shape).astype(np.float32))
    s0, gy0 = s.get(), gy.get()
    gx = ops.max_pool_undo(gy, s, image_size=13)
    np.testing.assert_array_equal(s.get(), s0)
    np.testing.assert_array_equal(gy.get(), gy0)
    assert gx.shape == x.shape


@cuda
def test_bad_switches(rng):
    """The range check runs on the GPU and raises what the CPU raises (the first bad switch), at
    the next synchronisation (here the get(): the call itself never waits, see
    test_deferred_checks_cuda.py)."""
    gy, s, cases = bad_switch_cases(rng)
    for bad, t in cases:
        t[1, 2, 1, 1] = -5  # a later bad one: not the one reported
        with pytest.raises(ValueError, match=rf"switches: expected flat indices in \[0, 30\) "
                                             rf".*got {bad} at index \(1, 2, 1, 0\)"):
            ops.max_pool_undo(dev(gy), dev(t), image_size=(5, 6)).get()
    with pytest.raises(ValueError, match=r"switches: expected flat indices in \[0, 12\)"):
        ops.max_pool_undo(dev(gy), dev(s), image_size=(3, 4)).get()
    with pytest.raises(TypeError, match="switches: expected dtype int32 or int64, got float32"):
        ops.max_pool_undo(dev(gy), dev(s.astype(np.float32)), image_size=(5, 6))
    with pytest.raises(TypeError, match="mix host"):
        ops.max_pool_undo(dev(gy), s, image_size=(5, 6))
    # after an error the next call works normally
    gx, gxd = _undo_both(gy, s, (5, 6))
    np.testing.assert_array_equal(gxd, gx)


@cuda
def test_core_backstop(rng):
    x = dev(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    y = dev(np.empty((2, 3, 3, 3), np.float32))
    s = dev(np.empty((2, 3, 3, 3), np.int32))
    t = (2, 3, 8, 8, 3, 3, 2, 2, 0, 0, 3, 3)
    geo = pool_geometry(t)
    _core.cuda.max_pool(x, y, s, geo)
    with pytest.raises(ValueError, match="inconsistent sizes"):
        _core.cuda.max_pool(x, y, s, pool_geometry(t[:10] + (5, 5)))
    with pytest.raises(ValueError, match="switches: expected shape"):
        _core.cuda.max_pool(x, y, dev(np.empty((1, 3, 3, 3), np.int32)), geo)
    with pytest.raises(TypeError, match="switches: expected dtype int32 or int64"):
        _core.cuda.max_pool(x, y, dev(np.empty((2, 3, 3, 3), np.uint8)), geo)
    with pytest.raises(ValueError, match="grad_x: expected shape"):
        _core.cuda.max_pool_undo(y, s, dev(np.empty((2, 4, 8, 8), np.float32)))


@cuda
def test_nhwc_undo_follows_any_switch_and_reports_the_first_bad_one(rng):
    """NHWC undo (a warp per (image, channel) plane; grid x over channel blocks of 8, y over
    images): any in-range switches, in output order, equal the CPU's NHWC undo bit for bit, with
    more channels than one block takes and several 32-output chunks per plane; a bad switch is
    reported as the CPU reports it (a second, later one is not)."""
    n, c, h, w, ho, wo = 3, 19, 8, 10, 9, 11
    gy = rng.standard_normal((n, ho, wo, c)).astype(np.float32)
    for s in (rng.integers(0, h * w, (n, ho, wo, c)), rng.integers(0, 3, (n, ho, wo, c)),
              np.zeros((n, ho, wo, c), np.int64)):
        for dtype in (np.int32, np.int64):
            t = s.astype(dtype)
            want = ops.max_pool_undo(gy, t, image_size=(h, w), layout="NHWC")
            got = ops.max_pool_undo(dev(gy), dev(t), image_size=(h, w), layout="NHWC").get()
            np.testing.assert_array_equal(got, want)
    bad = rng.integers(0, h * w, (n, ho, wo, c))
    bad[0, 0, 0, 1] = h * w
    bad[2, ho - 1, wo - 1, c - 1] = -1
    with pytest.raises(ValueError) as on_cpu:
        ops.max_pool_undo(gy, bad, image_size=(h, w), layout="NHWC")
    with pytest.raises(ValueError) as on_gpu:
        ops.max_pool_undo(dev(gy), dev(bad), image_size=(h, w), layout="NHWC").get()
    assert str(on_gpu.value).startswith(str(on_cpu.value)), (str(on_gpu.value), str(on_cpu.value))
    assert "(0, 0, 0, 1)" in str(on_cpu.value) and "2 bad values" in str(on_gpu.value)
