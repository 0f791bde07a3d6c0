"""response_norm_max_pool / _undo (the fused norm -> pool) against the unfused ops, bit for bit,
and against float64 references (test_response_norm.py's formulas, written out here)."""
import numpy as np
import pytest

from alexnet_ext import _core, ops
from helpers import pool_geometry, results_per_thread_count
from lrn_pool_cases import (BIG_CASES, HYPER, POOL_CASES, assert_bits, assert_same_training,
                            fused_and_plain_nets, random_problem, table_problem, unfused,
                            unfused_grad)


def _check_equal(x, lrn, pool, rng, what=""):
    p, s, d = ops.response_norm_max_pool(x, **lrn, **pool)
    up, us, ud, uy = unfused(x, lrn, pool)
    assert_bits(p, up, f"pooled {what}")
    assert_bits(s, us, f"switches {what}")
    assert_bits(d, ud, f"denoms {what}")
    gy = rng.standard_normal(p.shape).astype(np.float32)
    gx = ops.response_norm_max_pool_undo(gy, s, x, d, **lrn)
    assert_bits(gx, unfused_grad(gy, x, lrn, pool, us, uy, ud), f"grad_x {what}")


@pytest.mark.parametrize("alpha_over_size", [False, True])
def test_random_problems_equal_the_unfused_ops(rng, alpha_over_size):
    for i in range(60):
        x, lrn, pool = random_problem(rng, alpha_over_size)
        _check_equal(x, lrn, pool, rng, f"#{i} {x.shape} {lrn} {pool}")


@pytest.mark.parametrize("alpha_over_size", [False, True])
@pytest.mark.parametrize("name", list(POOL_CASES) + list(BIG_CASES))
def test_table_equals_the_unfused_ops(rng, name, alpha_over_size):
    x, lrn, pool = table_problem(rng, name, alpha_over_size)
    _check_equal(x, lrn, pool, rng, name)


@pytest.mark.parametrize("beta", [0.5, 1.0, 0.0])
def test_other_exponents_equal_the_unfused_ops(rng, beta):
    """beta != 0.75 goes through powf: same call, same bits as response_norm."""
    for i in range(10):
        x, lrn, pool = random_problem(rng, bool(i % 2), beta)
        _check_equal(x, lrn, pool, rng, f"#{i}")


def test_paper_hyperparameters_on_relu_scale_data(rng):
    x = np.maximum(rng.standard_normal((2, 16, 27, 27)) * 30, 0).astype(np.float32)
    lrn = dict(size=5, k=2.0, alpha=1e-4, beta=0.75)
    _check_equal(x, lrn, dict(pool_size=3, pool_stride=2), rng)


def test_column_blocks_view(rng):
    """Per-column LRN of a (N, K*Cb, H, W) tensor is the op on the (N*K, Cb, H, W) view."""
    n, k, cb, h, w = 3, 2, 5, 13, 13
    x = rng.standard_normal((n, k * cb, h, w)).astype(np.float32)
    lrn = dict(size=5, **HYPER)
    v = x.reshape(n * k, cb, h, w)
    p, s, d = ops.response_norm_max_pool(v, **lrn)
    for col in range(k):
        xc = np.ascontiguousarray(x[:, col * cb:(col + 1) * cb])
        up, us, ud, _ = unfused(xc, lrn, dict(pool_size=3, pool_stride=2, pool_padding=0,
                                              ceil_mode=False))
        assert_bits(p.reshape(n, k * cb, 6, 6)[:, col * cb:(col + 1) * cb], up, "pooled")
        assert_bits(s.reshape(n, k * cb, 6, 6)[:, col * cb:(col + 1) * cb], us, "switches")
        assert_bits(d.reshape(n, k * cb, h, w)[:, col * cb:(col + 1) * cb], ud, "denoms")


def test_ties_keep_the_first_maximum(rng):
    """Planes constant per channel tie everywhere: every switch is its window's first pixel; and
    quantised data ties often: the same switches as max_pool's exact comparison."""
    n, c, h, w = 2, 4, 9, 11
    x = np.broadcast_to(rng.integers(0, 3, (n, c, 1, 1)), (n, c, h, w)).astype(np.float32)
    p, s, d = ops.response_norm_max_pool(x, size=3, **HYPER)
    for oy in range(s.shape[2]):
        for ox in range(s.shape[3]):
            assert np.all(s[:, :, oy, ox] == (2 * oy) * w + 2 * ox)
    q = rng.integers(-2, 3, (2, 6, 15, 14)).astype(np.float32)
    for size in (1, 2, 5):
        _check_equal(q, dict(size=size, **HYPER),
                     dict(pool_size=3, pool_stride=2, pool_padding=1, ceil_mode=True), rng)


def test_nan_and_inf_propagate_as_unfused(rng):
    x = rng.standard_normal((2, 7, 12, 13)).astype(np.float32)
    x[0, 3, 4, 5] = np.nan
    x[1, 0, 0, 0] = np.inf
    x[1, 6, 11, 12] = -np.inf
    for size in (1, 4, 5):
        _check_equal(x, dict(size=size, **HYPER), dict(pool_size=3, pool_stride=2,
                                                       pool_padding=0, ceil_mode=True), rng)


def test_every_output_is_written(rng):
    """Outputs prefilled with NaN (the kernel, called directly) come back fully overwritten:
    denominators of rows and columns no window reaches and of band edges included."""
    x = rng.standard_normal((2, 5, 50, 23)).astype(np.float32)
    for ks, st, pad in ((2, 3, 0), (3, 2, 0), (3, 2, 1), (1, 4, 0)):
        up, us, ud, _ = unfused(x, dict(size=5, **HYPER), dict(pool_size=ks, pool_stride=st,
                                                                pool_padding=pad, ceil_mode=False))
        p = np.full(up.shape, np.nan, np.float32)
        s = np.full(us.shape, -7, np.int32)
        d = np.full(ud.shape, np.nan, np.float32)
        n, c, h, w = x.shape
        geo = pool_geometry((n, c, h, w, ks, ks, st, st, pad, pad) + up.shape[2:])
        _core.cpu.response_norm_max_pool(x, p, s, d, geo, 5, HYPER["k"], HYPER["alpha"],
                                         HYPER["beta"], False)
        assert_bits(p, up, "pooled")
        assert_bits(s, us, "switches")
        assert_bits(d, ud, "denoms")


def test_against_float64_reference(rng):
    """Independent of the unfused ops: float64 LRN, pooled by direct window maxima, and the
    gradient by the chain rule through the switches."""
    n, c, h, w, size = 2, 6, 9, 10, 5
    x = (2 * rng.standard_normal((n, c, h, w))).astype(np.float32)
    a = HYPER["alpha"]
    x64 = np.float64(x)
    d = np.empty_like(x64)
    for i in range(c):
        lo, hi = max(0, i - size // 2), min(c - 1, i + (size - 1) // 2)
        d[:, i] = HYPER["k"] + a * (x64[:, lo:hi + 1] ** 2).sum(1)
    t = x64 * d ** -HYPER["beta"]
    p, s, dd = ops.response_norm_max_pool(x, size=size, **HYPER)
    np.testing.assert_allclose(dd, d, rtol=1e-6)
    ref = np.empty(p.shape)
    for oy in range(p.shape[2]):
        for ox in range(p.shape[3]):
            ref[:, :, oy, ox] = t[:, :, 2 * oy:2 * oy + 3, 2 * ox:2 * ox + 3].max((2, 3))
    np.testing.assert_allclose(p, ref, rtol=1e-6)
    # each switch points at its window's maximum
    flat = t.reshape(n, c, h * w)
    np.testing.assert_allclose(np.take_along_axis(flat, s.reshape(n, c, -1).astype(np.int64), 2)
                               .reshape(p.shape), ref, rtol=1e-6)
    gy = rng.standard_normal(p.shape)
    gt = np.zeros((n, c, h * w))
    for q in range(p.shape[2] * p.shape[3]):
        np.add.at(gt, (np.arange(n)[:, None], np.arange(c)[None], s.reshape(n, c, -1)[:, :, q]),
                  gy.reshape(n, c, -1)[:, :, q])
    gt = gt.reshape(n, c, h, w)
    gx_ref = gt * d ** -HYPER["beta"]
    for i in range(c):
        back = gt[:, i] * (-HYPER["beta"]) * x64[:, i] * d[:, i] ** (-HYPER["beta"] - 1)
        for j in range(max(0, i - size // 2), min(c - 1, i + (size - 1) // 2) + 1):
            gx_ref[:, j] += back * 2 * a * x64[:, j]
    gx = ops.response_norm_max_pool_undo(gy.astype(np.float32), s, x, dd, size=size, **HYPER)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-4, atol=1e-5 * np.abs(gx_ref).max())


def test_same_bits_on_any_thread_count(rng):
    x = rng.standard_normal((3, 6, 60, 41)).astype(np.float32)
    runs = results_per_thread_count(lambda: ops.response_norm_max_pool(x, size=5, **HYPER), (1, 2, 3))
    for r in runs[1:]:
        for a, b, what in zip(r, runs[0], ("pooled", "switches", "denoms")):
            assert_bits(a, b, what)


def test_int64_switches_by_the_switch_dtype_rule(rng):
    x = rng.standard_normal((1, 2, 5, 6)).astype(np.float32)
    _, s, _ = ops.response_norm_max_pool(x)
    assert s.dtype == ops.switch_dtype(5, 6) == np.int32
    p = np.empty((1, 2, 2, 2), np.float32)
    s64 = np.empty((1, 2, 2, 2), np.int64)
    d = np.empty_like(x)
    _core.cpu.response_norm_max_pool(x, p, s64, d, pool_geometry((1, 2, 5, 6, 3, 3, 2, 2, 0, 0,
                                                                  2, 2)), 5, 2.0, 1e-4, 0.75, False)
    assert_bits(s64.astype(np.int32), s, "int64 switches")


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, exc, name", [
    (dict(size=0), ValueError, "size"),
    (dict(k=0.0), ValueError, "k"),
    (dict(alpha=-1.0), ValueError, "alpha"),
    (dict(beta=float("nan")), ValueError, "beta"),
    (dict(alpha_over_size=1), TypeError, "alpha_over_size"),
    (dict(pool_size=0), ValueError, "pool_size"),
    (dict(pool_size=12), ValueError, "pool_size"),
    (dict(pool_stride=0), ValueError, "pool_stride"),
    (dict(pool_padding=2), ValueError, "pool_padding"),
    (dict(pool_size=2.5), TypeError, "pool_size"),
    (dict(ceil_mode="yes"), TypeError, "ceil_mode"),
])
def test_bad_arguments_name_themselves(kwargs, exc, name):
    x = np.zeros((1, 3, 8, 8), np.float32)
    with pytest.raises(exc, match=name):
        ops.response_norm_max_pool(x, **kwargs)


def test_bad_arrays_name_themselves(rng):
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    with pytest.raises(TypeError, match="x"):
        ops.response_norm_max_pool(x.astype(np.float64))
    with pytest.raises(ValueError, match="x"):
        ops.response_norm_max_pool(x[0])
    p, s, d = ops.response_norm_max_pool(x)
    gy = np.ones_like(p)
    with pytest.raises(ValueError, match="denoms"):
        ops.response_norm_max_pool_undo(gy, s, x, d[:, :2])
    with pytest.raises(ValueError, match="grad_y"):
        ops.response_norm_max_pool_undo(gy[:, :2], s[:, :2], x, d)
    with pytest.raises(TypeError, match="switches"):
        ops.response_norm_max_pool_undo(gy, s.astype(np.float32), x, d)
    bad = s.copy()
    bad[0, 1, 2, 0] = 64
    with pytest.raises(ValueError, match="switches"):
        ops.response_norm_max_pool_undo(gy, bad, x, d)
    with pytest.raises(TypeError, match="denoms"):
        ops.response_norm_max_pool_undo(gy, s, x, d.astype(np.float64))


def test_direct_kernel_call_checks_geometry(rng):
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    p = np.empty((1, 3, 3, 3), np.float32)
    s = np.empty((1, 3, 3, 3), np.int32)
    d = np.empty_like(x)
    with pytest.raises(ValueError, match="pool geometry"):  # ho, wo inconsistent with 3x3/2
        _core.cpu.response_norm_max_pool(x, p, s, d, pool_geometry((1, 3, 8, 8, 3, 3, 2, 2, 0, 0,
                                                                    5, 5)), 5, 2.0, 1e-4, 0.75, False)
    with pytest.raises(ValueError, match="size"):
        _core.cpu.response_norm_max_pool(x, p, s, d, pool_geometry((1, 3, 8, 8, 3, 3, 3, 3, 0, 0,
                                                                    2, 2)), 0, 2.0, 1e-4, 0.75, False)
    with pytest.raises(ValueError, match="pooled"):
        _core.cpu.response_norm_max_pool(x, np.empty((1, 3, 4, 4), np.float32), s, d,
                                         pool_geometry((1, 3, 8, 8, 3, 3, 2, 2, 0, 0, 3, 3)),
                                         5, 2.0, 1e-4, 0.75, False)
    with pytest.raises(ValueError, match="denoms"):
        _core.cpu.response_norm_max_pool(x, p, s, d[:, :2].copy(),
                                         pool_geometry((1, 3, 8, 8, 3, 3, 2, 2, 0, 0, 3, 3)),
                                         5, 2.0, 1e-4, 0.75, False)
    with pytest.raises(ValueError, match="grad_norm"):
        _core.cpu.response_norm_max_pool_undo(x[:, :2].copy(), x, d, np.empty_like(x),
                                              5, 2.0, 1e-4, 0.75, False)


# ---------------------------------------------------------------- in the net
@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("model", ["twocol", "interop", "alexnet-small"])
def test_fused_net_equals_the_unfused_net(rng, model, split):
    from alexnet_ext.nn import load_model, parse_model
    from models_fixtures import INTEROP, TWO_COLUMNS
    spec = {"twocol": lambda: parse_model(TWO_COLUMNS, path="twocol.toml"),
            "interop": lambda: parse_model(INTEROP, path="interop.toml"),
            "alexnet-small": lambda: load_model("alexnet-small")}[model]()
    fused, plain = fused_and_plain_nets(spec, split)
    assert_same_training(fused, plain, spec, rng, steps=2 if model != "alexnet-small" else 1)


def test_fused_away_tensor_is_computed_on_demand(rng):
    from alexnet_ext.nn import parse_model
    from helpers import random_images
    from models_fixtures import TWO_COLUMNS
    spec = parse_model(TWO_COLUMNS, path="twocol.toml")
    for split in (False, True):
        fused, plain = fused_and_plain_nets(spec, split)
        x = random_images(rng, spec, 3)
        fused.forward(x)
        plain.forward(x)
        assert all(t.value is None for t in fused._parts["norm1"])   # not computed by forward
        assert_bits(fused.output("norm1"), plain.output("norm1"), "norm1 (on demand)")
        assert_bits(fused.output("pool1"), plain.output("pool1"), "pool1")
        fused.forward(x, until="norm1")
        assert_bits(fused.output("norm1"), plain.output("norm1"), "norm1")
        fused.forward(x, until="pool1")
        assert_bits(fused.output("pool1"), plain.output("pool1"), "pool1 (until)")


def test_no_fusion_when_the_norm_has_another_reader():
    """norm1 read by pool1 and by a second layer: nothing may skip it."""
    from alexnet_ext.nn import Net, parse_model
    from models_fixtures import toml_model
    text = toml_model(
        {"name": "branchy", "channels": 3, "classes": 3},
        [("conv1", "conv", {"input": "data", "filters": 4, "size": 3}),
         ("norm1", "lrn", {"size": 3}),
         ("pool1", "pool", {"size": 3, "stride": 2}),
         ("pool1b", "pool", {"input": "norm1", "mode": "avg", "size": 3, "stride": 2}),
         ("fc2", "fc", {"input": ["pool1", "pool1b"], "outputs": "classes"}),
         ("probs", "softmax", {})],
        data={"image_size": 9, "crop": 9})
    net = Net(parse_model(text, path="branchy.toml"), fuse=True)
    assert not any(layer.kind == "lrn+pool" for layer in net.layers)
    avg = toml_model(
        {"name": "avg", "channels": 3, "classes": 3},
        [("conv1", "conv", {"input": "data", "filters": 4, "size": 3}),
         ("norm1", "lrn", {"size": 3}),
         ("pool1", "pool", {"mode": "avg", "size": 3, "stride": 2}),
         ("fc2", "fc", {"outputs": "classes"}),
         ("probs", "softmax", {})],
        data={"image_size": 9, "crop": 9})
    assert not any(layer.kind == "lrn+pool"
                   for layer in Net(parse_model(avg, path="a.toml"), fuse=True).layers)


def test_fusion_default_is_gpu_only():
    from alexnet_ext.nn import Net, parse_model
    from models_fixtures import TWO_COLUMNS
    spec = parse_model(TWO_COLUMNS, path="twocol.toml")
    assert not any(layer.kind == "lrn+pool" for layer in Net(spec).layers)   # CPU: "auto" = off
    with pytest.raises(ValueError, match="fuse"):
        Net(spec, fuse="yes")
