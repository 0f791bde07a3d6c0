"""bfloat16 activations through relu, add, max_pool, avg_pool, response_norm and the fused
response_norm_max_pool on the GPU (float32 math inside,
each stored result rounded once to bf16: csrc/real.h). GPU tests (marker `cuda`).

References are independent of the kernels: float64 computed from the widened bf16 inputs, then
  relu, relu_undo, max_pool (y and switches): exact, bit for bit (selects only);
  add: the float64 sum (exact here: exponents differ by at most 44) rounded once to bf16
       (bf16_rne_f64), bit for bit: csrc/add.h shows the float32 sum rounded to bf16 is that;
  max_pool_undo, avg_pool(+undo), response_norm(+undo): |got - ref| <= E + ulp_bf16(|ref| + E)/2 with E the float32
       computation's error bound (derived at each test), and equal bit for bit to the float32 op
       on the same (bf16-representable) inputs cast to bf16 (the same float32 operations in the
       same order, then one rounding: bf16_rne_reference, not the kernels' cast);
  response_norm_max_pool(+undo): bit for bit the unfused bf16 ops.
"""
import numpy as np
import pytest

from alexnet_ext import _core, cuda, ops
from avg_pool_refs import ref_avg_pool, ref_avg_pool_grad
from cuda_helpers import dev
from lrn_pool_cases import BIG_CASES, lrn_args, random_problem, table_problem, unfused, unfused_grad
from lowp_helpers import bf16_array as bf16, bf16_wide as wide, device_bits as bits
from lowp_helpers import specials as float_specials
from lowp_helpers import (assert_bf16_within, bf16_rne_f64, bf16_rne_reference,
                          gamma32)
from max_pool_refs import ref_max_pool
from pool_cases import CASES, random_geometry
from response_norm_refs import CASES as RN_CASES, HYPER as RN_HYPER, ref_lrn

pytestmark = pytest.mark.cuda

BF16 = np.dtype(cuda.bfloat16)
SIZES = (1, 3, 4, 5, 7, 1027, 4099)  # tails past the last group of four, one and several blocks


def specials(rng, shape):
    return bf16(float_specials(rng, shape))


def assert_bits_or_nan(got, want):
    """Equal bit patterns, except that a NaN may come back as any NaN (the kernels give the quiet
    NaN of its sign)."""
    nan = np.isnan(wide(want))
    np.testing.assert_array_equal(np.isnan(wide(got)), nan)
    np.testing.assert_array_equal(np.asarray(got).view(np.uint16)[~nan],
                                  np.asarray(want).view(np.uint16)[~nan])


# ---------------------------------------------------------------- relu, add
@pytest.mark.parametrize("n", SIZES)
def test_relu_exact(rng, n):
    x = specials(rng, (n,))
    xf = wide(x)
    want = np.where(xf > 0, xf, np.float32(0))
    want[np.isnan(xf)] = np.nan
    y = ops.relu(dev(x))
    assert y.dtype == BF16 and y.shape == x.shape
    assert_bits_or_nan(bits(y), bf16(want))
    np.testing.assert_array_equal(bits(y)[xf == 0], 0)  # -0 becomes +0, as the float32 op does
    assert_bits_or_nan(bits(y), bf16(ops.relu(xf)))  # the float32 op, cast
    gy = specials(rng, (n,))
    gx = ops.relu_undo(dev(gy), y)
    assert_bits_or_nan(bits(gx), bf16(np.where(wide(y.get()) > 0, wide(gy), np.float32(0))))
    assert_bits_or_nan(bits(gx), bf16(ops.relu_undo(wide(gy), wide(y.get()))))


def test_relu_in_place_and_shapes(rng):
    x = specials(rng, (2, 5, 7, 3))
    d = dev(x)
    assert ops.relu(d, out=d) is d
    assert_bits_or_nan(bits(d), bits(ops.relu(dev(x))))
    gy = specials(rng, x.shape)
    g = dev(gy)
    assert ops.relu_undo(g, d, out=g) is g
    assert_bits_or_nan(bits(g), bf16(ops.relu_undo(wide(gy), wide(d.get()))))


def random_exponents(rng, shape, lo, hi):
    """bf16 values of random sign, 8 random significand bits and exponents in [lo, hi]."""
    m = rng.integers(128, 256, size=shape) * rng.choice([-1, 1], size=shape)
    return bf16(np.ldexp(m.astype(np.float64), rng.integers(lo, hi + 1, size=shape) - 7))


@pytest.mark.parametrize("n", SIZES)
def test_add_rounds_the_exact_sum_once(rng, n):
    """Exponents from -20 to 20: gaps up to 40 include the inexact float32 sums (gap > 15) and
    the near cancellations; float64 holds every exact sum (gap <= 44)."""
    a, b = random_exponents(rng, n, -20, 20), random_exponents(rng, n, -20, 20)
    b.reshape(-1)[::5] = bf16(-wide(a).reshape(-1)[::5])  # exact cancellation: +0
    exact = wide(a).astype(np.float64) + wide(b)
    out = ops.add(dev(a), dev(b))
    assert out.dtype == BF16
    np.testing.assert_array_equal(bits(out), bf16_rne_f64(exact))
    np.testing.assert_array_equal(bits(out), bf16_rne_reference(ops.add(wide(a), wide(b))))


def test_add_overflow_specials_in_place(rng):
    big = np.float32(3.3e38)  # bf16 0x7F78; twice it overflows float32 and bf16 alike
    a = bf16([big, big, -big, 1.0, np.inf, np.nan, 0.0, -0.0])
    b = bf16([big, -big, -big, 2.0**-30, 1.0, 1.0, -0.0, -0.0])
    with np.errstate(over="ignore"):
        want = bf16(wide(a) + wide(b))  # float32 sums of these are exact or overflow: no rounding
    da = dev(a)
    assert ops.add(da, dev(b), out=da) is da
    assert_bits_or_nan(bits(da), want)
    np.testing.assert_array_equal(bits(da)[[0, 2, 4]], [0x7F80, 0xFF80, 0x7F80])
    np.testing.assert_array_equal(bits(da)[[6, 7]], [0x0000, 0x8000])


def test_elementwise_out_is_written_not_read(rng):
    """None of these ops has an accumulate form: a NaN-filled out is overwritten everywhere."""
    a, b = random_exponents(rng, 1027, -4, 4), random_exponents(rng, 1027, -4, 4)
    for call, want in ((lambda o: ops.add(dev(a), dev(b), out=o), bf16(wide(a) + wide(b))),
                       (lambda o: ops.relu(dev(a), out=o), bf16(np.maximum(wide(a), 0))),
                       (lambda o: ops.relu_undo(dev(b), dev(a), out=o),
                        bf16(np.where(wide(a) > 0, wide(b), np.float32(0))))):
        out = dev(np.full(a.shape, np.nan, BF16))
        assert call(out) is out
        np.testing.assert_array_equal(bits(out), want.view(np.uint16))


def test_elementwise_dtype_refusals():
    x16, x32 = dev(np.ones((2, 3), BF16)), dev(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match="b: dtype float32 does not match a's bfloat16"):
        ops.add(x16, x32)
    with pytest.raises(TypeError, match="b: dtype bfloat16 does not match a's float32"):
        ops.add(x32, x16)
    with pytest.raises(TypeError, match="out: dtype float32 does not match x's bfloat16"):
        ops.relu(x16, out=x32)
    with pytest.raises(TypeError, match="out: dtype bfloat16 does not match x's float32"):
        ops.relu(x32, out=x16)
    with pytest.raises(TypeError, match="y: dtype float32 does not match grad_y's bfloat16"):
        ops.relu_undo(x16, x32)
    with pytest.raises(TypeError, match="x: bfloat16 runs on the GPU only"):
        ops.relu(np.ones(3, BF16))
    with pytest.raises(TypeError, match="a: bfloat16 runs on the GPU only"):
        ops.add(np.ones(3, BF16), np.ones(3, BF16))
    with pytest.raises(TypeError, match="x: expected dtype float32 \\(or bfloat16 on the GPU\\)"):
        ops.relu(dev(np.ones(3, np.int32)))
    # the binding's own checks, reached by a direct _core call
    with pytest.raises(TypeError, match="x: bfloat16 arrays run on the GPU only"):
        _core.cpu.relu(np.ones(3, BF16), np.ones(3, BF16))
    with pytest.raises(TypeError, match="out"):
        _core.cuda.relu(x16, x32)
    with pytest.raises(TypeError, match="b"):
        _core.cuda.add(x16, x32, x16)


# ---------------------------------------------------------------- max pool
def pool_input(rng, shape, nan=True):
    """bf16 data with many ties (a few exponents, 3 significand bits) and, optionally, NaNs."""
    x = np.ldexp(rng.integers(-8, 8, size=shape).astype(np.float64), rng.integers(-3, 3, size=shape))
    x = x.astype(np.float32)
    if nan:
        x.reshape(-1)[7::97] = np.nan
    return bf16(x)


def pool_cases():
    return list(CASES.items()) + [(f"random{i}", None) for i in range(8)]


def pool_problem(rng, case):
    """(input shape, pooling keyword arguments) of a case of pool_cases.py, or a random one."""
    if case is None:
        return random_geometry(rng)
    return case[:4], dict(size=case[4], stride=case[5], padding=case[6], ceil_mode=case[7])


@pytest.mark.parametrize("name,case", pool_cases())
def test_max_pool_exact(rng, name, case):
    shape, kw = pool_problem(rng, case)
    x = pool_input(rng, shape)
    y, s = ops.max_pool(dev(x), **kw)
    assert y.dtype == BF16
    ref_y, ref_s = ref_max_pool(wide(x), **kw)  # float64: the first maximum, the first NaN
    assert_bits_or_nan(bits(y), bf16(ref_y))
    np.testing.assert_array_equal(s.get(), ref_s)
    y32, s32 = ops.max_pool(wide(x), **kw)  # the float32 op on the same values
    assert_bits_or_nan(bits(y), bf16(y32))
    np.testing.assert_array_equal(s.get(), s32)

    gy = random_exponents(rng, y.shape, -6, 6)
    gx = ops.max_pool_undo(dev(gy), s, image_size=shape[2:])
    assert gx.dtype == BF16 and gx.shape == tuple(shape)
    # float64 scatter of the widened gradients, and of their magnitudes. A pixel takes m <= the
    # number of windows holding it; float32 adds them from 0 in output order: m - 1 roundings,
    # |error| <= gamma_(m-1) * sum|g| (Higham 3.1); gamma_m of the largest m bounds it.
    ref, mag = np.zeros(shape), np.zeros(shape)
    n, c, h, w = shape
    flat_s = ref_s.reshape(n * c, -1)
    for pl, (g, sw) in enumerate(zip(wide(gy).reshape(n * c, -1), flat_s)):
        np.add.at(ref.reshape(n * c, -1)[pl], sw, g)
        np.add.at(mag.reshape(n * c, -1)[pl], sw, np.abs(g))
    m = max(np.bincount(sw, minlength=h * w).max() for sw in flat_s)
    assert_bf16_within(bits(gx), ref, gamma32(m) * mag, "max_pool_undo")
    np.testing.assert_array_equal(
        bits(gx), bf16_rne_reference(ops.max_pool_undo(wide(gy), s32, image_size=shape[2:])))


@pytest.mark.parametrize("index", [np.int32, np.int64])
def test_max_pool_undo_many_terms_per_pixel(rng, index):
    """Arbitrary switches into four pixels: ~20 gradients of mixed exponents per pixel, over
    several chunks of 32 outputs (the float32 workspace), so nearly every sum rounds. Bound: a
    float32 chain of m - 1 additions from the first term, |error| <= gamma_m * sum|g|."""
    n, c, ho, wo, h, w = 2, 3, 9, 9, 8, 8
    s = rng.choice([0, 9, 40, 63], size=(n, c, ho, wo)).astype(index)
    gy = random_exponents(rng, s.shape, -12, 12)
    gx = ops.max_pool_undo(dev(gy), dev(s), image_size=(h, w))
    ref, mag = np.zeros((n * c, h * w)), np.zeros((n * c, h * w))
    for pl, (g, sw) in enumerate(zip(wide(gy).reshape(n * c, -1), s.reshape(n * c, -1))):
        np.add.at(ref[pl], sw, g)
        np.add.at(mag[pl], sw, np.abs(g))
    m = max(np.bincount(sw, minlength=h * w).max() for sw in s.reshape(n * c, -1))
    assert_bf16_within(bits(gx), ref.reshape(n, c, h, w), gamma32(m) * mag.reshape(n, c, h, w),
                       "max_pool_undo")
    np.testing.assert_array_equal(
        bits(gx), bf16_rne_reference(ops.max_pool_undo(wide(gy), s, image_size=(h, w))))


def test_max_pool_undo_int64_switches_and_refusals(rng):
    x = pool_input(rng, (2, 3, 9, 8), nan=False)
    y, s = ops.max_pool(dev(x))
    gy = random_exponents(rng, y.shape, -3, 3)
    s64 = dev(s.get().astype(np.int64))
    gx = ops.max_pool_undo(dev(gy), s64, image_size=(9, 8))
    np.testing.assert_array_equal(bits(gx), bits(ops.max_pool_undo(dev(gy), s, image_size=(9, 8))))
    with pytest.raises(TypeError, match="x: bfloat16 runs on the GPU only"):
        ops.max_pool(x)
    with pytest.raises(TypeError, match="grad_y: bfloat16 runs on the GPU only"):
        ops.max_pool_undo(gy, s.get(), image_size=(9, 8))
    with pytest.raises(TypeError, match="y: expected dtype bfloat16, got float32"):
        _core.cuda.max_pool(dev(x), dev(np.zeros(y.shape, np.float32)), s, _pool_geo(x.shape))
    with pytest.raises(TypeError, match="grad_x: expected dtype bfloat16, got float32"):
        _core.cuda.max_pool_undo(dev(gy), s, dev(np.zeros(x.shape, np.float32)))


def _pool_geo(shape, size=3, stride=2):
    from alexnet_ext.ops import _pool
    return _pool.geometry(*shape, size, size, stride, stride, 0, 0, False)


# ---------------------------------------------------------------- avg pool
@pytest.mark.parametrize("name,case", pool_cases())
def test_avg_pool_bound_and_float32_op(rng, name, case):
    shape, kw = pool_problem(rng, case)
    x = random_exponents(rng, shape, -6, 6)
    y = ops.avg_pool(dev(x), **kw)
    assert y.dtype == BF16
    (kh, kw_), (sh, sw) = (_pair(kw["size"]), _pair(kw["stride"]))
    # Forward, a window of k real pixels: float32 sums them from 0 (k - 1 roundings) and divides
    # by k (one more): |q - mean| <= gamma_k * mean|x| (gamma_(k-1) + u (1 + gamma_(k-1)) <=
    # gamma_k); k <= kh*kw.
    assert_bf16_within(bits(y), ref_avg_pool(wide(x), **kw),
                       gamma32(kh * kw_) * ref_avg_pool(np.abs(wide(x)), **kw), "avg_pool")
    np.testing.assert_array_equal(bits(y), bf16_rne_reference(ops.avg_pool(wide(x), **kw)))

    gy = random_exponents(rng, y.shape, -6, 6)
    gx = ops.avg_pool_undo(dev(gy), image_size=shape[2:], **kw)
    assert gx.dtype == BF16
    # Backward, a pixel held by m windows: m divisions and m - 1 additions in a chain from 0:
    # |error| <= gamma_m * sum |g_w| / count_w, m <= ceil(kh/sh) * ceil(kw/sw).
    m = -(-kh // sh) * -(-kw_ // sw)
    assert_bf16_within(bits(gx), ref_avg_pool_grad(wide(gy), shape[2:], **kw),
                       gamma32(m) * ref_avg_pool_grad(np.abs(wide(gy)), shape[2:], **kw),
                       "avg_pool_undo")
    np.testing.assert_array_equal(
        bits(gx), bf16_rne_reference(ops.avg_pool_undo(wide(gy), image_size=shape[2:], **kw)))


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def test_avg_pool_refusals(rng):
    x = random_exponents(rng, (1, 2, 6, 6), -2, 2)
    with pytest.raises(TypeError, match="x: bfloat16 runs on the GPU only"):
        ops.avg_pool(x, size=2, stride=2)
    with pytest.raises(TypeError, match="grad_y: bfloat16 runs on the GPU only"):
        ops.avg_pool_undo(x[:, :, :3, :3].copy(), image_size=6, size=2, stride=2)
    geo = _pool_geo(x.shape, 2, 2)
    with pytest.raises(TypeError, match="y: expected dtype bfloat16, got float32"):
        _core.cuda.avg_pool(dev(x), dev(np.zeros((1, 2, 3, 3), np.float32)), geo)
    with pytest.raises(TypeError, match="grad_x: expected dtype bfloat16, got float32"):
        _core.cuda.avg_pool_undo(dev(np.zeros((1, 2, 3, 3), BF16)), dev(np.zeros(x.shape, np.float32)), geo)


# ---------------------------------------------------------------- response norm
LRN_CASES = dict(RN_CASES, segments=(1, 70, 3, 3, 5))  # few pixel columns: channel segments


def lrn_undo_ref(gy, x, y, d, size, k, alpha, beta, alpha_over_size):
    """response_norm.h's undo formula in float64 on the op's own inputs (bf16 y and float32 denoms
    as given): (grad_x, |first term| + |second term| with every product taken in magnitude)."""
    gy, x, y, d = (np.float64(v) for v in (gy, x, y, d))
    coef = 2 * (alpha / size if alpha_over_size else alpha) * beta
    c = x.shape[1]
    r = gy * y / d
    t1 = gy * d**-beta
    s, s_abs = np.zeros_like(x), np.zeros_like(x)
    for i in range(c):  # channel i's window holds j: add r_i to each such j
        for j in range(max(0, i - size // 2), min(c - 1, i + (size - 1) // 2) + 1):
            s[:, j] += r[:, i]
            s_abs[:, j] += np.abs(r[:, i])
    return t1 - coef * x * s, np.abs(t1) + coef * np.abs(x) * s_abs


@pytest.mark.parametrize("name", LRN_CASES)
@pytest.mark.parametrize("alpha_over_size", [False, True])
def test_response_norm_bound_and_float32_op(rng, name, alpha_over_size):
    n, c, h, w, size = LRN_CASES[name]
    x = bf16(2 * rng.standard_normal((n, c, h, w)))
    kw = dict(size=size, alpha_over_size=alpha_over_size, **RN_HYPER)
    y, d = ops.response_norm(dev(x), **kw)
    assert y.dtype == BF16 and d.dtype == np.float32
    ry, rd = ref_lrn(wide(x), **kw)
    # denoms: the double k + a*sum (its errors ~2^-53 relative to the window sums) rounded once
    # to float32: within gamma_2 * D. y for beta = 0.75: d's rounding (0.75u after the power),
    # sqrt, sqrt (halved: 0.5u), product, division and the product with x: 6.25u to first order,
    # so the float32 y is within gamma_7 * |y|; then one rounding to bf16.
    assert (np.abs(d.get() - rd) <= gamma32(2) * rd).all()
    assert_bf16_within(bits(y), ry, gamma32(7) * np.abs(ry), "response_norm y")
    y32, d32 = ops.response_norm(dev(wide(x)), **kw)  # the float32 op on the GPU, same values
    np.testing.assert_array_equal(bits(y), bf16_rne_reference(y32.get()))
    np.testing.assert_array_equal(d.get(), d32.get())

    gy = bf16(rng.standard_normal(x.shape))
    gx = ops.response_norm_undo(dev(gy), dev(x), y, d, **kw)
    assert gx.dtype == BF16
    # grad_x = t1 - t2: t1 = gy * d^-0.75 in float32 (gamma_7 as y's), t2 in double (~2^-50
    # relative, for the window sizes here), the difference rounded to float32 (u): within
    # gamma_9 * (|t1| + |t2|) with a spare u for the double sums; then one rounding to bf16.
    ref, mag = lrn_undo_ref(gy, wide(x), wide(y.get()), d.get(), **kw)
    assert_bf16_within(bits(gx), ref, gamma32(9) * mag, "response_norm_undo")
    gx32 = ops.response_norm_undo(dev(wide(gy)), dev(wide(x)), dev(wide(y.get())), d, **kw)
    np.testing.assert_array_equal(bits(gx), bf16_rne_reference(gx32.get()))


@pytest.mark.parametrize("beta", [0.5, 1.0])
def test_response_norm_other_exponents_equal_the_float32_op(rng, beta):
    x = bf16(2 * rng.standard_normal((2, 9, 5, 7)))
    kw = dict(size=5, k=1.5, alpha=0.3, beta=beta)
    y, d = ops.response_norm(dev(x), **kw)
    y32, d32 = ops.response_norm(dev(wide(x)), **kw)
    np.testing.assert_array_equal(bits(y), bf16_rne_reference(y32.get()))
    np.testing.assert_array_equal(d.get(), d32.get())
    gy = bf16(rng.standard_normal(x.shape))
    gx = ops.response_norm_undo(dev(gy), dev(x), y, d, **kw)
    gx32 = ops.response_norm_undo(dev(wide(gy)), dev(wide(x)), dev(wide(y.get())), d, **kw)
    np.testing.assert_array_equal(bits(gx), bf16_rne_reference(gx32.get()))


def test_response_norm_refusals():
    x16, x32 = dev(np.ones((1, 3, 2, 2), BF16)), dev(np.ones((1, 3, 2, 2), np.float32))
    with pytest.raises(TypeError, match="x: bfloat16 runs on the GPU only"):
        ops.response_norm(np.ones((1, 3, 2, 2), BF16))
    with pytest.raises(TypeError, match="x: dtype float32 does not match grad_y's bfloat16"):
        ops.response_norm_undo(x16, x32, x16, x32)
    with pytest.raises(TypeError, match="y: dtype float32 does not match grad_y's bfloat16"):
        ops.response_norm_undo(x16, x16, x32, x32)
    with pytest.raises(TypeError, match="denoms: expected dtype float32, got bfloat16"):
        ops.response_norm_undo(x16, x16, x16, x16)
    with pytest.raises(TypeError, match="y: expected dtype bfloat16, got float32"):
        _core.cuda.response_norm(x16, x32, x32, 5, 2.0, 1e-4, 0.75, False)
    with pytest.raises(TypeError, match="denoms: expected dtype float32, got bfloat16"):
        _core.cuda.response_norm(x16, x16, x16, 5, 2.0, 1e-4, 0.75, False)
    with pytest.raises(TypeError, match="grad_x: expected dtype bfloat16, got float32"):
        _core.cuda.response_norm_undo(x16, x16, x16, x32, x32, 5, 2.0, 1e-4, 0.75, False)


# ---------------------------------------------------------------- response norm + max pool
FUSED = [(name, None) for name in list(CASES) + list(BIG_CASES)] + [
    (f"random{i}", None) for i in range(6)] + [
    ("untileable", ((1, 3, 40, 40), dict(pool_size=33, pool_stride=1)))]  # the unfused fallback


@pytest.mark.parametrize("name,fixed", FUSED)
@pytest.mark.parametrize("alpha_over_size", [False, True])
def test_response_norm_max_pool_equals_unfused(rng, name, fixed, alpha_over_size):
    """Bit for bit the bf16 response_norm then bf16 max_pool (whose numerics the tests above
    bound against float64), forward and backward; the fused kernel pools the rounded values."""
    if fixed is not None:
        x, lrn, pool = 2 * rng.standard_normal(fixed[0]), lrn_args(rng, alpha_over_size), fixed[1]
    elif name.startswith("random"):
        x, lrn, pool = random_problem(rng, alpha_over_size)
    else:
        x, lrn, pool = table_problem(rng, name, alpha_over_size)
    x = dev(bf16(x))
    p, s, d = ops.response_norm_max_pool(x, **lrn, **pool)
    assert p.dtype == BF16 and d.dtype == np.float32
    up, us, ud, uy = unfused(x, lrn, pool)
    np.testing.assert_array_equal(bits(p), bits(up))
    np.testing.assert_array_equal(s.get(), us.get())
    np.testing.assert_array_equal(d.get(), ud.get())
    gy = dev(bf16(rng.standard_normal(p.shape)))
    gx = ops.response_norm_max_pool_undo(gy, s, x, d, **lrn)
    assert gx.dtype == BF16
    np.testing.assert_array_equal(bits(gx), bits(unfused_grad(gy, x, lrn, pool, us, uy, ud)))


def test_response_norm_max_pool_refusals():
    x16 = dev(np.ones((1, 3, 5, 5), BF16))
    p, s, d = ops.response_norm_max_pool(x16)
    with pytest.raises(TypeError, match="x: bfloat16 runs on the GPU only"):
        ops.response_norm_max_pool(np.ones((1, 3, 5, 5), BF16))
    with pytest.raises(TypeError, match="x: dtype bfloat16 does not match grad_y's float32"):
        ops.response_norm_max_pool_undo(dev(np.ones(p.shape, np.float32)), s, x16, d)
    with pytest.raises(TypeError, match="denoms: expected dtype float32, got bfloat16"):
        ops.response_norm_max_pool_undo(p, s, x16, x16)
    with pytest.raises(TypeError, match="pooled: expected dtype bfloat16, got float32"):
        _core.cuda.response_norm_max_pool(x16, dev(np.zeros(p.shape, np.float32)), s, d,
                                          _pool_geo(x16.shape), 5, 2.0, 1e-4, 0.75, False)
    with pytest.raises(TypeError, match="grad_x: expected dtype bfloat16, got float32"):
        _core.cuda.response_norm_max_pool_undo(x16, x16, d, dev(np.zeros(x16.shape, np.float32)),
                                               5, 2.0, 1e-4, 0.75, False)
