"""response_norm_max_pool / _undo on the GPU against the CPU (bit for bit: the fused kernel walks
every channel of a pixel in one thread, the CPU's operations in the CPU's order), the fallback for
windows beyond a tile, outputs written in full, and the fused net on the GPU."""
import numpy as np
import pytest

from alexnet_ext import _core, cuda, ops
from cuda_helpers import dev
from helpers import pool_geometry
from lrn_pool_cases import (BIG_CASES, HYPER, POOL_CASES, assert_bits, assert_same_training,
                            fused_and_plain_nets, random_problem, table_problem, unfused,
                            unfused_grad)

pytestmark = pytest.mark.cuda


def _check_gpu_equals_cpu(x, lrn, pool, rng, what=""):
    p, s, d = ops.response_norm_max_pool(x, **lrn, **pool)
    up, us, ud, uy = unfused(x, lrn, pool)          # the CPU's unfused ops: the reference bits
    assert_bits(p, up, f"cpu pooled {what}")
    dx = dev(x)
    pd, sd, dd = ops.response_norm_max_pool(dx, **lrn, **pool)
    assert isinstance(pd, cuda.DeviceArray) and isinstance(sd, cuda.DeviceArray)
    assert_bits(pd.get(), up, f"pooled {what}")
    assert_bits(sd.get(), us, f"switches {what}")
    assert_bits(dd.get(), ud, f"denoms {what}")
    gy = rng.standard_normal(up.shape).astype(np.float32)
    gx = ops.response_norm_max_pool_undo(dev(gy), sd, dx, dd, **lrn)
    assert_bits(gx.get(), unfused_grad(gy, x, lrn, pool, us, uy, ud), f"grad_x {what}")


@pytest.mark.parametrize("alpha_over_size", [False, True])
def test_random_problems_equal_the_cpu(rng, alpha_over_size):
    for i in range(25):
        x, lrn, pool = random_problem(rng, alpha_over_size)
        _check_gpu_equals_cpu(x, lrn, pool, rng, f"#{i} {x.shape} {lrn} {pool}")


@pytest.mark.parametrize("name", list(POOL_CASES) + list(BIG_CASES))
def test_table_equals_the_cpu(rng, name):
    aos = bool(rng.integers(0, 2))
    x, lrn, pool = table_problem(rng, name, aos)
    _check_gpu_equals_cpu(x, lrn, pool, rng, name)


def test_other_exponent_within_powf_last_bit(rng):
    """beta != 0.75 uses powf, whose last bit may differ between the CPU's libm and the GPU."""
    x, lrn, pool = random_problem(rng, False, beta=0.5)
    p, s, d = ops.response_norm_max_pool(x, **lrn, **pool)
    pd, sd, dd = ops.response_norm_max_pool(dev(x), **lrn, **pool)
    np.testing.assert_array_equal(dd.get(), d)  # denoms involve no pow
    np.testing.assert_allclose(pd.get(), p, rtol=2e-7, atol=0)


def test_ties_and_non_finite_values_equal_the_cpu(rng):
    q = rng.integers(-2, 3, (2, 6, 15, 14)).astype(np.float32)
    q[0, 2, 3, 3] = np.nan
    q[1, 5, 14, 13] = np.inf
    for size in (1, 2, 5):
        _check_gpu_equals_cpu(q, dict(size=size, **HYPER),
                              dict(pool_size=3, pool_stride=2, pool_padding=1, ceil_mode=True), rng)


def test_windows_beyond_a_tile_take_the_unfused_kernels(rng):
    """A 35x35 window (over a 1024-pixel tile) runs response_norm + max_pool on the GPU through a
    scratch buffer: the GPU's unfused results exactly, the CPU's within rounding."""
    x = rng.standard_normal((1, 70, 70, 70)).astype(np.float32)  # C >= 64: split channels
    lrn, pool = dict(size=5, **HYPER), dict(pool_size=35, pool_stride=35)
    dx = dev(x)
    pd, sd, dd = ops.response_norm_max_pool(dx, **lrn, **pool)
    y, d = ops.response_norm(dx, **lrn)
    p, s = ops.max_pool(y, size=35, stride=35)
    assert_bits(pd.get(), p.get(), "pooled")
    assert_bits(sd.get(), s.get(), "switches")
    assert_bits(dd.get(), d.get(), "denoms")
    cp, cs, cd, _ = unfused(x, lrn, pool)
    np.testing.assert_allclose(pd.get(), cp, rtol=1e-6)


def test_every_output_is_written(rng):
    x = rng.standard_normal((2, 5, 50, 23)).astype(np.float32)
    n, c, h, w = x.shape
    for ks, st, pad in ((2, 3, 0), (3, 2, 0), (3, 2, 1), (1, 4, 0)):
        up, us, ud, _ = unfused(x, dict(size=5, **HYPER), dict(pool_size=ks, pool_stride=st,
                                                                pool_padding=pad, ceil_mode=False))
        p = dev(np.full(up.shape, np.nan, np.float32))
        s = dev(np.full(us.shape, -7, np.int64))
        d = dev(np.full(ud.shape, np.nan, np.float32))
        geo = pool_geometry((n, c, h, w, ks, ks, st, st, pad, pad) + up.shape[2:])
        _core.cpu.response_norm_max_pool(dev(x), p, s, d, geo, 5, HYPER["k"], HYPER["alpha"],
                                         HYPER["beta"], False)
        assert_bits(p.get(), up, "pooled")
        assert_bits(s.get(), us.astype(np.int64), "switches")
        assert_bits(d.get(), ud, "denoms")


def test_mixing_host_and_device_arrays_is_refused(rng):
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    p, s, d = ops.response_norm_max_pool(dev(x))
    with pytest.raises(TypeError):
        ops.response_norm_max_pool_undo(np.ones(p.shape, np.float32), s, dev(x), d)
    with pytest.raises(TypeError):
        ops.response_norm_max_pool_undo(dev(np.ones(p.shape, np.float32)), s, x, d)


@pytest.mark.parametrize("split", [False, True])
def test_fused_net_on_the_gpu_equals_the_unfused_one(rng, split):
    """Few channels per column: the unfused GPU response norm walks whole pixel columns too, so
    the two GPU nets agree bit for bit."""
    from alexnet_ext.nn import parse_model
    from models_fixtures import TWO_COLUMNS
    spec = parse_model(TWO_COLUMNS, path="twocol.toml")
    fused, plain = fused_and_plain_nets(spec, split, fuse="auto", devices=["cuda"])  # fused on GPUs
    assert_same_training(fused, plain, spec, rng)
