"""layout="NHWC" of max_pool, avg_pool, response_norm and response_norm_max_pool (and their
undos), and the ReLU-undo folds (max_pool_undo(relu_y=...), response_norm_undo(relu=True),
response_norm_max_pool_undo(relu=True)), on the CPU and (marker `cuda`) the GPU.

References:
  - NHWC: the NCHW op on the same values (transposed), which the existing tests check against
    float64 references. Every kernel runs the same float operations in the same order in both
    layouts (strides change, not arithmetic: the pooling windows are scanned in the same order,
    max_pool_undo adds each pixel's gradients in output order, the LRN walks a pixel's channels
    with the same running sum and, on the GPU, the same channel split, which depends on (N, C,
    H*W) only), so outputs, switches and gradients must be equal bit for bit, NaNs included.
    One direct float64 check of NHWC max_pool / avg_pool guards against a shared mistake.
  - The folds: the unfused pair (op undo, then ops.relu_undo), bit for bit: the fold applies
    relu.h's relu_undo_select to the value the unfused undo stores (bf16: before the single
    rounding, which commutes with selecting 0).
  - bf16 (GPU): the NHWC bf16 op equals the NCHW bf16 op bit for bit (same reasoning); the NCHW
    bf16 ops are checked against references in test_bf16_ops_cuda.py.
These ops take no `out` / `scale_targets`, so there is no NaN-filled-out form to test.
"""
import numpy as np
import pytest

from alexnet_ext import cuda, ops
from avg_pool_refs import ref_avg_pool
from cuda_helpers import dev
from lowp_helpers import bf16_rne_reference
from lrn_pool_cases import BIG_CASES, pool_args
from max_pool_refs import ref_max_pool
from pool_cases import CASES, random_geometry

SIDES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
BF16 = np.dtype(cuda.bfloat16)
LRN = dict(k=1.5, alpha=0.3)  # the window term matters (test_response_norm.py's HYPER)


def nhwc(a):
    return np.ascontiguousarray(np.asarray(a).transpose(0, 2, 3, 1))


def nchw(a):
    return np.ascontiguousarray(np.asarray(a).transpose(0, 3, 1, 2))


class Side:
    """Runs ops where the test asks: NumPy arrays in, NumPy arrays out."""

    def __init__(self, side):
        self.gpu = side == "cuda"

    def put(self, a):
        return dev(a) if self.gpu else a

    def __call__(self, op, *arrays, **kw):
        out = op(*(None if a is None else self.put(a) for a in arrays), **kw)
        outs = out if isinstance(out, tuple) else (out,)
        got = tuple(o.get() if self.gpu else o for o in outs)
        return got if isinstance(out, tuple) else got[0]


def assert_bits(got, want, what):
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, \
        (what, got.dtype, want.dtype, got.shape, want.shape)
    view = {2: np.uint16, 4: np.uint32, 8: np.uint64}[got.dtype.itemsize]
    bad = np.flatnonzero(got.view(view) != want.view(view))
    assert bad.size == 0, f"{what}: {bad.size} of {got.size} differ, first at flat {bad[0]}: " \
        f"{got.ravel()[bad[0]]!r} vs {want.ravel()[bad[0]]!r}"


def data(rng, shape, specials=False, dtype=np.float32):
    x = (2 * rng.standard_normal(shape)).astype(np.float32)
    if specials:  # ties (zeros), NaN and inf: switches and NaN propagation must match too
        flat = x.reshape(-1)
        flat[::7] = 0.0
        flat[5::23] = np.nan
        flat[8::29] = np.inf
    if dtype == BF16:
        return bf16_rne_reference(x).view(BF16)
    return x


def relu_of(x):
    """A ReLU output of x's dtype (the fold's input): negatives and NaN to +0 bits."""
    bits = x.view(np.uint16) if x.dtype == BF16 else None
    if bits is not None:
        xf = (bits.astype(np.uint32) << 16).view(np.float32)
        return np.where(xf > 0, bits, np.uint16(0)).astype(np.uint16).view(BF16)
    return np.where(x > 0, x, np.float32(0))


def problems(rng, count=6):
    """(shape NCHW, pool keywords): the pool_cases table and random odd geometries."""
    for name in ("alexnet_pool2_27", "non_square", "padding_non_square", "ceil_mode_overhang",
                 "ceil_mode_padding_drops_last", "ceil_mode_padding", "non_overlapping_gaps",
                 "window_covers_image"):
        n, c, h, w, size, stride, padding, ceil_mode = CASES[name]
        yield (n, c, h, w), dict(size=size, stride=stride, padding=padding, ceil_mode=ceil_mode)
    # channels past one CPU task's block of 16 (csrc/cpu/max_pool.cpp), a ragged last block
    yield (1, 37, 9, 8), dict(size=3, stride=2, padding=1, ceil_mode=True)
    for _ in range(count):
        yield random_geometry(rng)


# ---------------------------------------------------------------- max_pool
def check_max_pool(run, rng, shape, args, dtype=np.float32, relu=False):
    x = data(rng, shape, specials=True, dtype=dtype)
    y, s = run(ops.max_pool, x, **args)
    yt, st = run(ops.max_pool, nhwc(x), layout="NHWC", **args)
    assert_bits(yt, nhwc(y), "y")
    assert_bits(st, nhwc(s), "switches")
    gy = data(rng, y.shape, dtype=dtype)
    ry = relu_of(data(rng, shape, dtype=dtype)) if relu else None
    gx = run(lambda g, sw, r: ops.max_pool_undo(g, sw, image_size=shape[2:], relu_y=r),
             gy, s, ry)
    gxt = run(lambda g, sw, r: ops.max_pool_undo(g, sw, image_size=shape[2:], relu_y=r,
                                                 layout="NHWC"),
              nhwc(gy), st, None if ry is None else nhwc(ry))
    assert_bits(gxt, nhwc(gx), "grad_x")
    return x, y, s, gy, ry, gx


@pytest.mark.parametrize("side", SIDES)
def test_max_pool_nhwc_equals_nchw(rng, side):
    run = Side(side)
    for shape, args in problems(rng):
        check_max_pool(run, rng, shape, args)


@pytest.mark.parametrize("side", SIDES)
def test_max_pool_nhwc_float64_reference(rng, side):
    """Independent of the NCHW kernels: the float64 reference on tie-free data."""
    run = Side(side)
    shape, args = (2, 5, 13, 11), dict(size=3, stride=2, padding=1, ceil_mode=True)
    x = rng.permutation(np.prod(shape)).astype(np.float32).reshape(shape)
    want_y, want_s = ref_max_pool(x.astype(np.float64), **args)
    y, s = run(ops.max_pool, nhwc(x), layout="NHWC", **args)
    np.testing.assert_array_equal(nchw(y), want_y.astype(np.float32))
    np.testing.assert_array_equal(nchw(s), want_s)


@pytest.mark.parametrize("side", SIDES)
def test_max_pool_undo_relu_fold(rng, side):
    """relu_y: max_pool_undo then relu_undo, bit for bit, in both layouts; relu_y both the true
    ReLU output of the pool input (windows of zeros) and unrelated (the mask is applied as such)."""
    run = Side(side)
    for shape, args in problems(rng, 3):
        x = relu_of(data(rng, shape))
        y, s = run(ops.max_pool, x, **args)
        gy = data(rng, y.shape)
        for ry in (x, relu_of(data(rng, shape))):
            for lay, f in (("NCHW", lambda a: a), ("NHWC", nhwc)):
                plain = run(lambda g, sw: ops.max_pool_undo(g, sw, image_size=shape[2:],
                                                            layout=lay), f(gy), f(s))
                want = run(ops.relu_undo, plain, f(ry))
                got = run(lambda g, sw, r: ops.max_pool_undo(g, sw, image_size=shape[2:],
                                                             relu_y=r, layout=lay),
                          f(gy), f(s), f(ry))
                assert_bits(got, want, f"grad_x {lay}")
        assert np.any(run(ops.max_pool_undo, gy, s, image_size=shape[2:]) != 0)


# ---------------------------------------------------------------- avg_pool
def check_avg_pool(run, rng, shape, args, dtype=np.float32):
    x = data(rng, shape, dtype=dtype)
    y = run(ops.avg_pool, x, **args)
    yt = run(ops.avg_pool, nhwc(x), layout="NHWC", **args)
    assert_bits(yt, nhwc(y), "y")
    gy = data(rng, y.shape, dtype=dtype)
    gx = run(ops.avg_pool_undo, gy, image_size=shape[2:], **args)
    gxt = run(ops.avg_pool_undo, nhwc(gy), image_size=shape[2:], layout="NHWC", **args)
    assert_bits(gxt, nhwc(gx), "grad_x")


@pytest.mark.parametrize("side", SIDES)
def test_avg_pool_nhwc_equals_nchw(rng, side):
    run = Side(side)
    for shape, args in problems(rng):
        check_avg_pool(run, rng, shape, args)


@pytest.mark.parametrize("side", SIDES)
def test_avg_pool_nhwc_float64_reference(rng, side):
    """The float64 mean: each output a sum of at most 9 terms then a division, so within
    (9 + 1) * 2^-24 of the sum of magnitudes over the count (float32 rounding of each step)."""
    run = Side(side)
    shape, args = (2, 6, 12, 9), dict(size=3, stride=2, padding=1, ceil_mode=True)
    x = data(rng, shape)
    want = ref_avg_pool(x.astype(np.float64), **args)
    bound = 10 * 2.0**-24 * ref_avg_pool(np.abs(x).astype(np.float64), **args)
    y = nchw(run(ops.avg_pool, nhwc(x), layout="NHWC", **args))
    assert np.all(np.abs(y - want) <= bound)


# ---------------------------------------------------------------- response_norm
def lrn_kw(rng, beta=0.75, aos=False):
    return dict(size=int(rng.integers(1, 9)), beta=beta, alpha_over_size=aos, **LRN)


def check_lrn(run, x, gy, kw):
    y, d = run(ops.response_norm, x, **kw)
    yt, dt = run(ops.response_norm, nhwc(x), layout="NHWC", **kw)
    assert_bits(yt, nhwc(y), "y")
    assert_bits(dt, nhwc(d), "denoms")
    gx = run(ops.response_norm_undo, gy, x, y, d, **kw)
    gxt = run(ops.response_norm_undo, nhwc(gy), nhwc(x), yt, dt, layout="NHWC", **kw)
    assert_bits(gxt, nhwc(gx), "grad_x")
    return y, d, gx


LRN_SHAPES = [(2, 5, 7, 9), (1, 11, 13, 3), (3, 1, 5, 4), (2, 70, 3, 5)]  # last: GPU channel split


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("beta", [0.75, 0.6])
@pytest.mark.parametrize("aos", [False, True])
def test_response_norm_nhwc_equals_nchw(rng, side, beta, aos):
    run = Side(side)
    for shape in LRN_SHAPES:
        x = data(rng, shape, specials=shape[1] < 20)
        check_lrn(run, x, data(rng, shape), lrn_kw(rng, beta, aos))


@pytest.mark.parametrize("side", SIDES)
def test_response_norm_undo_relu_fold(rng, side):
    """relu=True: response_norm_undo then relu_undo (mask x > 0), bit for bit, both layouts."""
    run = Side(side)
    for shape in LRN_SHAPES:
        x, gy, kw = relu_of(data(rng, shape)), data(rng, shape), lrn_kw(rng)
        y, d = run(ops.response_norm, x, **kw)
        for lay, f in (("NCHW", lambda a: a), ("NHWC", nhwc)):
            plain = run(ops.response_norm_undo, f(gy), f(x), f(y), f(d), layout=lay, **kw)
            want = run(ops.relu_undo, plain, f(x))
            got = run(ops.response_norm_undo, f(gy), f(x), f(y), f(d), layout=lay, relu=True,
                      **kw)
            assert_bits(got, want, f"grad_x {lay}")
            assert np.any((plain != 0) & (want == 0))  # the mask did something


# ---------------------------------------------------------------- response_norm_max_pool
def fused_problems(rng, count=4):
    for shape, args in problems(rng, count):
        n, c, h, w = shape
        yield (n, c + int(rng.integers(1, 6)), h, w), pool_args(args)
    for name in ("alexnet_pool1_bands", "tall_ceil_padding"):  # several bands / tiles
        n, c, h, w, size, stride, padding, ceil_mode = BIG_CASES[name]
        yield (n, c, h, w), dict(pool_size=size, pool_stride=stride, pool_padding=padding,
                                 ceil_mode=ceil_mode)
    # a window no GPU tile holds: the GPU's unfused fallback
    yield (1, 3, 40, 1100), dict(pool_size=(3, 1030), pool_stride=2, pool_padding=0,
                                 ceil_mode=False)


def check_fused(run, rng, shape, pool, dtype=np.float32, relu=False):
    x = data(rng, shape, specials=True, dtype=dtype)
    if relu:
        x = relu_of(x)
    kw = lrn_kw(rng)
    p, s, d = run(ops.response_norm_max_pool, x, **kw, **pool)
    pt, st, dt = run(ops.response_norm_max_pool, nhwc(x), layout="NHWC", **kw, **pool)
    assert_bits(pt, nhwc(p), "pooled")
    assert_bits(st, nhwc(s), "switches")
    assert_bits(dt, nhwc(d), "denoms")
    gy = data(rng, p.shape, dtype=dtype)
    gx = run(ops.response_norm_max_pool_undo, gy, s, x, d, relu=relu, **kw)
    gxt = run(ops.response_norm_max_pool_undo, nhwc(gy), st, nhwc(x), dt, layout="NHWC",
              relu=relu, **kw)
    assert_bits(gxt, nhwc(gx), "grad_x")
    return x, gy, s, d, kw, gx


@pytest.mark.parametrize("side", SIDES)
def test_response_norm_max_pool_nhwc_equals_nchw(rng, side):
    run = Side(side)
    for shape, pool in fused_problems(rng):
        if run.gpu and np.prod(shape) > 50_000 and shape[3] < 1000:
            continue  # the emulator is slow; the fallback case stays
        check_fused(run, rng, shape, pool)


@pytest.mark.parametrize("side", SIDES)
def test_response_norm_max_pool_undo_relu_fold(rng, side):
    """relu=True: the fused undo then relu_undo (mask x > 0), bit for bit, both layouts."""
    run = Side(side)
    for shape, pool in list(fused_problems(rng, 2))[:6]:
        x, gy, s, d, kw, gx = check_fused(run, rng, shape, pool, relu=True)
        plain = run(ops.response_norm_max_pool_undo, gy, s, x, d, **kw)
        assert_bits(gx, run(ops.relu_undo, plain, x), "grad_x")


# ---------------------------------------------------------------- bf16 (GPU)
@pytest.mark.cuda
def test_bf16_nhwc_equals_nchw(rng):
    run = Side("cuda")
    for shape, args in list(problems(rng, 2))[:6]:
        check_max_pool(run, rng, shape, args, dtype=BF16)
        check_max_pool(run, rng, shape, args, dtype=BF16, relu=True)
        check_avg_pool(run, rng, shape, args, dtype=BF16)
    for shape in LRN_SHAPES:
        check_lrn(run, data(rng, shape, dtype=BF16), data(rng, shape, dtype=BF16), lrn_kw(rng))
    for shape, pool in list(fused_problems(rng, 2))[:4]:
        check_fused(run, rng, shape, pool, dtype=BF16)


@pytest.mark.cuda
def test_bf16_relu_folds(rng):
    run = Side("cuda")
    shape = (2, 7, 11, 9)
    x = relu_of(data(rng, shape, dtype=BF16))
    kw = lrn_kw(rng)
    for lay, f in (("NCHW", lambda a: a), ("NHWC", nhwc)):
        y, s = run(ops.max_pool, f(x), layout=lay)
        gy = data(rng, y.shape, dtype=BF16)
        ry = f(relu_of(data(rng, shape, dtype=BF16)))
        plain = run(lambda g, sw: ops.max_pool_undo(g, sw, image_size=shape[2:], layout=lay),
                    gy, s)
        got = run(lambda g, sw, r: ops.max_pool_undo(g, sw, image_size=shape[2:], relu_y=r,
                                                     layout=lay), gy, s, ry)
        assert_bits(got, run(ops.relu_undo, plain, ry), f"max_pool_undo {lay}")
        yl, d = run(ops.response_norm, f(x), layout=lay, **kw)
        g2 = data(rng, yl.shape, dtype=BF16)
        plain = run(ops.response_norm_undo, g2, f(x), yl, d, layout=lay, **kw)
        got = run(ops.response_norm_undo, g2, f(x), yl, d, layout=lay, relu=True, **kw)
        assert_bits(got, run(ops.relu_undo, plain, f(x)), f"response_norm_undo {lay}")
        p, s, d = run(ops.response_norm_max_pool, f(x), layout=lay, **kw)
        g3 = data(rng, p.shape, dtype=BF16)
        plain = run(ops.response_norm_max_pool_undo, g3, s, f(x), d, layout=lay, **kw)
        got = run(ops.response_norm_max_pool_undo, g3, s, f(x), d, layout=lay, relu=True, **kw)
        assert_bits(got, run(ops.relu_undo, plain, f(x)), f"response_norm_max_pool_undo {lay}")


# ---------------------------------------------------------------- errors
X = np.zeros((2, 9, 11, 3), np.float32)  # NHWC: N=2, H=9, W=11, C=3


def _calls(layout):
    y, s = ops.max_pool(X, layout="NHWC")
    yl, d = ops.response_norm(X, layout="NHWC")
    p, sp, dp = ops.response_norm_max_pool(X, layout="NHWC")
    return [
        lambda: ops.max_pool(X, layout=layout),
        lambda: ops.max_pool_undo(y, s, image_size=(9, 11), layout=layout),
        lambda: ops.avg_pool(X, size=3, stride=2, layout=layout),
        lambda: ops.avg_pool_undo(y, image_size=(9, 11), size=3, stride=2, layout=layout),
        lambda: ops.response_norm(X, layout=layout),
        lambda: ops.response_norm_undo(X, X, yl, d, layout=layout),
        lambda: ops.response_norm_max_pool(X, layout=layout),
        lambda: ops.response_norm_max_pool_undo(p, sp, X, dp, layout=layout),
    ]


@pytest.mark.parametrize("bad", ["nhwc", "NCWH", "", None, 1])
def test_bad_layout_names_layout(bad):
    for call in _calls(bad):
        with pytest.raises(ValueError, match="^layout: expected 'NCHW' or 'NHWC'"):
            call()


def test_nhwc_shape_errors_name_the_argument():
    y, s = ops.max_pool(X, layout="NHWC")
    assert y.shape == (2, 4, 5, 3)
    with pytest.raises(ValueError, match="^relu_y: expected shape \\(2, 9, 11, 3\\)"):
        ops.max_pool_undo(y, s, image_size=(9, 11), relu_y=nchw(X), layout="NHWC")
    with pytest.raises(ValueError, match="^switches: expected shape"):
        ops.max_pool_undo(y, nchw(s), image_size=(9, 11), layout="NHWC")
    with pytest.raises(ValueError,
                       match="^grad_y: expected shape \\(2, 4, 5, 5\\) \\(the output size"):
        ops.avg_pool_undo(nchw(y), image_size=(9, 11), size=3, stride=2, layout="NHWC")
    yl, d = ops.response_norm(X, layout="NHWC")
    with pytest.raises(ValueError, match="^denoms: expected shape"):
        ops.response_norm_undo(X, X, yl, nchw(d), layout="NHWC")
    with pytest.raises(ValueError, match="^x: expected 4 dimensions.*\\(N, H, W, C\\)"):
        ops.response_norm(X[0], layout="NHWC")
    p, sp, dp = ops.response_norm_max_pool(X, layout="NHWC")
    with pytest.raises(ValueError, match="^grad_y: expected \\(N, C\\) = \\(2, 3\\)"):
        ops.response_norm_max_pool_undo(nchw(p), sp, X, dp, layout="NHWC")
    with pytest.raises(TypeError, match="^relu: expected a bool"):
        ops.response_norm_undo(X, X, yl, d, layout="NHWC", relu=1)


@pytest.mark.parametrize("side", SIDES)
def test_nhwc_bad_switch_names_its_index(side):
    """A switch outside [0, H*W) in NHWC: ValueError naming switches and its (n, oy, ox, c) index
    (on the GPU at the next synchronisation); nothing written out of bounds."""
    run = Side(side)
    y, s = ops.max_pool(X, layout="NHWC")
    s = s.copy()
    s[1, 2, 3, 1] = 99  # H*W = 99
    with pytest.raises(ValueError, match=r"^switches: .*got 99 at index \(1, 2, 3, 1\)"):
        run(lambda g, sw: ops.max_pool_undo(g, sw, image_size=(9, 11), layout="NHWC"), y, s)
        if run.gpu:
            cuda.synchronize()
