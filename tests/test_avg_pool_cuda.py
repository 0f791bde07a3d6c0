"""avg_pool / avg_pool_undo on the GPU: equal to the CPU kernels bit for bit over the case table
of pool_cases.py (the same float operations in the same order)."""
import numpy as np
import pytest

from alexnet_ext import _core, ops
from cuda_helpers import dev
from helpers import assert_close
from helpers import pool_geometry
from pool_cases import CASES
from avg_pool_refs import pool_args, pool_kwargs, ref_avg_pool, ref_avg_pool_grad

cuda = pytest.mark.cuda


@cuda
@pytest.mark.parametrize("name", CASES)
def test_equals_cpu(rng, name):
    case = CASES[name]
    x = rng.standard_normal(case[:4]).astype(np.float32)
    kw = pool_kwargs(case)
    y = ops.avg_pool(x, **kw)
    yd = ops.avg_pool(dev(x), **kw)
    np.testing.assert_array_equal(yd.get(), y)
    assert_close(yd.get(), ref_avg_pool(x, **kw), pool_args(case))
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx = ops.avg_pool_undo(gy, image_size=case[2:4], **kw)
    gxd = ops.avg_pool_undo(dev(gy), image_size=case[2:4], **kw)
    np.testing.assert_array_equal(gxd.get(), gx)
    assert_close(gxd.get(), ref_avg_pool_grad(gy, case[2:4], **kw), pool_args(case))


@cuda
def test_random_geometries(rng):
    for _ in range(30):
        kh, kw = (int(v) for v in rng.integers(1, 6, size=2))
        sh, sw = (int(v) for v in rng.integers(1, 5, size=2))
        ph, pw = int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1))
        h = int(rng.integers(max(1, kh - 2 * ph), 16))
        w = int(rng.integers(max(1, kw - 2 * pw), 16))
        args = dict(size=(kh, kw), stride=(sh, sw), padding=(ph, pw), ceil_mode=bool(rng.integers(0, 2)))
        x = rng.standard_normal((int(rng.integers(1, 3)), int(rng.integers(1, 5)), h, w)).astype(np.float32)
        y = ops.avg_pool(x, **args)
        np.testing.assert_array_equal(ops.avg_pool(dev(x), **args).get(), y, err_msg=str(args))
        gy = rng.standard_normal(y.shape).astype(np.float32)
        np.testing.assert_array_equal(ops.avg_pool_undo(dev(gy), image_size=(h, w), **args).get(),
                                      ops.avg_pool_undo(gy, image_size=(h, w), **args), err_msg=str(args))


@cuda
def test_large_batch(rng):
    x = rng.standard_normal((16, 64, 27, 27)).astype(np.float32)
    kw = dict(size=3, stride=2, padding=1, ceil_mode=True)
    y = ops.avg_pool(x, **kw)
    np.testing.assert_array_equal(ops.avg_pool(dev(x), **kw).get(), y)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(ops.avg_pool_undo(dev(gy), image_size=27, **kw).get(),
                                  ops.avg_pool_undo(gy, image_size=27, **kw))


@cuda
def test_bad_input_and_backstop(rng):
    x = dev(rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    with pytest.raises(ValueError, match="padding: expected at most half"):
        ops.avg_pool(x, size=3, stride=2, padding=2)
    y = ops.avg_pool(x, size=3, stride=2)
    with pytest.raises(ValueError, match=r"grad_y: expected shape \(2, 3, 4, 4\)"):
        ops.avg_pool_undo(y, image_size=9, size=3, stride=2)
    t = (2, 3, 8, 8, 3, 3, 2, 2, 0, 0, 3, 3)
    geo = pool_geometry(t)
    with pytest.raises(ValueError, match="inconsistent sizes"):
        _core.cuda.avg_pool(x, y, pool_geometry(t[:10] + (5, 5)))
    with pytest.raises(ValueError, match="y: expected shape"):
        _core.cuda.avg_pool(x, dev(np.empty((2, 3, 4, 4), np.float32)), geo)
    with pytest.raises(ValueError, match="grad_x: expected shape"):
        _core.cuda.avg_pool_undo(y, dev(np.empty((2, 3, 8, 9), np.float32)), geo)
