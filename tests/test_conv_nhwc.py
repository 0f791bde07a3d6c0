"""`layout="NHWC"` of filter_acts / img_acts / weight_acts / conv_bias_grad: images (N, H, W, C),
hidden acts/grads (N, Ho, Wo, F), filters (F, kh, kw, C/groups), dense. CPU (NumPy, fp32) and GPU
(DeviceArrays, fp32 / tf32 / bf16), every pass, channel counts per group that are multiples of 8
and odd ones (3, 5), groups, strides, padding, ceil_mode, and each accumulate form: fresh,
st 0 into a NaN-filled `out` (never read), st != 0 (read). On the GPU tf32/bf16 run version 3 for
every pass (filterActs/imgActs: the NHWC gather, weightActs: the NHWC kernel), fp32 version 1.

References: float64 by windows (test_conv_cuda_tf32.references) on the operands as the kernel
sees them (round_tf32 for tf32, the bf16 values for bf16), in NCHW, transposed to NHWC; every
4-d array (images, hid, and filters (F, Cg, kh, kw) -> (F, kh, kw, Cg)) moves its axis 1 last.

Bounds: fp32 (CPU sgemm, GPU loops): an fp32 sum of K exact-or-rounded products plus bias,
scales and store, any order: |err| <= gamma_{K+8} (|st t| + |so| (sum|a b| + |bias|)),
u = 2^-24 (helpers.assert_within_sum_bound, Higham 3.1). tf32/bf16: products of tf32 (11 bits)
or bf16 (8 bits) operands are exact in fp32, so the same sum bound holds; it is checked with
version 3's bound (u = 2^-23, tensor-core accumulation need not round to nearest;
test_conv_cuda_tf32._within), the bound the NCHW op meets too. NHWC vs the NCHW op on the
transposed arrays: both within their bound of the same exact value, so within the sum of the
two bounds of each other.
"""
import numpy as np
import pytest

from alexnet_ext import cuda, ops
from cuda_helpers import dev, window
from helpers import assert_within_sum_bound
from lowp_helpers import round_tf32
from test_conv_cuda_tf32 import _within, case_data, references



def case(n, c, hw, f, k, stride=(1, 1), padding=(0, 0), groups=1, ceil_mode=False):
    """A test_conv_cuda_tf32-style case tuple (N, C, H, W, F, kh, kw, stride, padding, groups,
    ceil_mode)."""
    return (n, c, *hw, f, *k, stride, padding, groups, ceil_mode)


CASES = {  # channels per group: multiples of 8 (16-byte chunks of bf16) and odd counts
    "cg8_groups2_p1": case(2, 16, (7, 6), 10, (3, 3), padding=(1, 1), groups=2),
    "cg8_groups3_s2": case(2, 24, (8, 9), 9, (3, 3), stride=(2, 2), padding=(1, 0), groups=3),
    "c3_conv1_like_ceil": case(2, 3, (15, 13), 6, (5, 5), (2, 2), (2, 1), ceil_mode=True),
    "c5_odd_nonsquare_ceil": case(1, 5, (9, 10), 7, (3, 2), (2, 1), (0, 1), ceil_mode=True),
    "cg5_groups2_odd": case(2, 10, (6, 7), 4, (2, 3), (1, 2), (1, 1), groups=2),
    "cg16_pointwise_groups2": case(2, 32, (5, 6), 12, (1, 1), groups=2),
    "cg40_stride_gt_kernel": case(1, 40, (11, 11), 16, (2, 2), (3, 3), (0, 1), ceil_mode=True),
    # one tile, K = 1200: the GPU's wave model splits K (NHWC's split reduction: bias[i % F])
    "cg48_split_k": case(2, 48, (7, 7), 40, (5, 5), padding=(2, 2)),
}
# (scale_targets, scale_output, the target's maker: None = no out given)
FORMS = {"fresh": (0.0, 1.0, None),
         "st0_nan_out": (0.0, -0.75, lambda rng, shape: np.full(shape, np.nan, np.float32)),
         "accumulate": (0.5, 1.25,
                        lambda rng, shape: rng.standard_normal(shape).astype(np.float32))}


def nhwc(a):
    """An NCHW-ordered 4-d array (images, hid, or filters (F, Cg, kh, kw)) in NHWC order."""
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def _call(pass_name, a, b, geometry, extra, out, st, so, precision, layout):
    kw = dict(geometry, out=out, scale_targets=st, scale_output=so, precision=precision,
              layout=layout)
    if pass_name == "filter_acts":
        return ops.filter_acts(a, b, bias=extra, **kw)
    if pass_name == "img_acts":
        return ops.img_acts(a, b, image_size=extra, **kw)
    return ops.weight_acts(a, b, filter_size=extra, **kw)


def _setup(rng, case, to, precision):
    """Operands in both layouts (made by `to`: NumPy or device, cast for bf16), the exact
    results and their magnitudes in NHWC, the reduction lengths, the per-pass extras."""
    n, c, h, wd, f, kh, kw, (sh, sw), (ph, pw), groups, ceil = case
    x, w, b, gy, ho, wo = case_data(rng, case)
    if precision == "bf16":
        rounded = [ops.cast(dev(a), cuda.bfloat16).get().astype(np.float64)
                   for a in (x, w, gy)]
    elif precision == "tf32":
        rounded = [round_tf32(a).astype(np.float64) for a in (x, w, gy)]
    else:
        rounded = [a.astype(np.float64) for a in (x, w, gy)]
    xr, wr, gr = rounded
    want = references(xr, wr, gr, sh, sw, ph, pw, groups)
    mag = references(np.abs(xr), np.abs(wr), np.abs(gr), sh, sw, ph, pw, groups)
    bias = b.astype(np.float64)[None, :, None, None]
    want = [want[0] + bias, want[1], want[2]]
    mag = [mag[0] + np.abs(bias), mag[1], mag[2]]

    def make(a):
        d = to(a)
        return ops.cast(d, cuda.bfloat16) if precision == "bf16" else d

    ops_nchw = {k: make(v) for k, v in dict(x=x, w=w, gy=gy).items()}
    ops_nhwc = {k: make(nhwc(v)) for k, v in dict(x=x, w=w, gy=gy).items()}
    passes = {  # operand names, exact NHWC result, magnitude, reduction length, extra argument
        "filter_acts": ("x", "w", nhwc(want[0]), nhwc(mag[0]), c // groups * kh * kw, to(b)),
        "img_acts": ("gy", "w", nhwc(want[1]), nhwc(mag[1]), f // groups * kh * kw, (h, wd)),
        "weight_acts": ("x", "gy", nhwc(want[2]), nhwc(mag[2]), n * ho * wo, (kh, kw)),
    }
    geometry = dict(stride=(sh, sw), padding=(ph, pw), groups=groups, ceil_mode=ceil)
    return ops_nchw, ops_nhwc, passes, geometry


def _check(got, exact, mag, k, precision, what):
    if precision == "fp32":
        assert_within_sum_bound(got, exact, mag, k + 8, what)
    else:
        _within(got, exact, mag, k, what)


def _every_pass_and_form(rng, case, to, back, precision, name):
    ops_nchw, ops_nhwc, passes, geometry = _setup(rng, case, to, precision)
    for form, (st, so, make_target) in FORMS.items():
        for pass_name, (an, bn, exact, mag, k, extra) in passes.items():
            t0 = make_target(rng, exact.shape) if make_target else None
            out = None if t0 is None else to(t0.copy())  # t0 stays the old target
            got = _call(pass_name, ops_nhwc[an], ops_nhwc[bn], geometry, extra, out, st, so,
                        precision, "NHWC")
            assert got.dtype == np.float32 and got.shape == exact.shape
            assert out is None or got is out
            base = 0.0 if st == 0 else st * t0.astype(np.float64)
            bound_mag = np.abs(base) + abs(so) * mag
            what = f"{name} {precision} {pass_name} {form}"
            got = back(got)
            _check(got, base + so * exact, bound_mag, k, precision, what)
            # the NCHW op on the same values, transposed: within the two bounds of each other
            out2 = None if t0 is None else to(np.ascontiguousarray(np.moveaxis(t0, -1, 1)))
            ref = nhwc(back(_call(pass_name, ops_nchw[an], ops_nchw[bn], geometry, extra, out2,
                                  st, so, precision, "NCHW")))
            _check(got, ref.astype(np.float64), 2 * bound_mag, k, precision, what + " vs NCHW")


@pytest.mark.parametrize("name", CASES)
def test_cpu_every_pass_and_form(rng, name):
    _every_pass_and_form(rng, CASES[name], lambda a: a, lambda a: a, "fp32", name)


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
@pytest.mark.parametrize("name", CASES)
def test_gpu_every_pass_precision_and_form(rng, precision, name):
    _every_pass_and_form(rng, CASES[name], dev, lambda a: a.get(), precision, name)


@pytest.mark.cuda
def test_gpu_unaligned_images_take_the_element_wise_gathers(rng):
    """C/groups = 16 allows 16-byte chunks, but images starting 4 bytes past a 16-byte boundary
    must not be fetched so: the element-wise NHWC gathers run instead and fill shared memory with
    the same values, so the result is bit-identical to the aligned one. (tf32: bfloat16
    DeviceArrays cannot be offset views here; both precisions share the alignment test.)"""
    x = rng.standard_normal((2, 6, 7, 32)).astype(np.float32)
    w = dev(rng.standard_normal((12, 3, 3, 16)).astype(np.float32))
    shifted = window(dev(np.concatenate([np.zeros(1, np.float32), x.ravel()])), 1, x.shape)
    assert shifted.ptr % 16 != 0
    kw = dict(padding=1, groups=2, precision="tf32", layout="NHWC")
    want = ops.filter_acts(dev(x), w, **kw).get()
    np.testing.assert_array_equal(ops.filter_acts(shifted, w, **kw).get(), want)


def _bias_grad_case(rng, to, back):
    gy = rng.standard_normal((3, 5, 7, 11)).astype(np.float32)  # (N, Ho, Wo, F)
    exact = gy.astype(np.float64).sum(axis=(0, 1, 2))
    mag = np.abs(gy.astype(np.float64)).sum(axis=(0, 1, 2))
    terms = 3 * 5 * 7 + 8
    assert_within_sum_bound(back(ops.conv_bias_grad(to(gy), layout="NHWC")), exact, mag, terms,
                            "bias grad NHWC")
    t0 = rng.standard_normal(11).astype(np.float32)
    out = to(t0.copy())
    got = ops.conv_bias_grad(to(gy), out=out, scale_targets=0.5, scale_output=-2.0, layout="NHWC")
    assert got is out
    base = 0.5 * t0.astype(np.float64)
    assert_within_sum_bound(back(got), base - 2.0 * exact, np.abs(base) + 2.0 * mag, terms,
                            "bias grad NHWC accumulate")
    nan_out = to(np.full(11, np.nan, np.float32))
    got = back(ops.conv_bias_grad(to(gy), out=nan_out, scale_targets=0.0, layout="NHWC"))
    assert_within_sum_bound(got, exact, mag, terms, "bias grad NHWC NaN out")
    # the NCHW op on the transposed array
    ref = back(ops.conv_bias_grad(to(np.ascontiguousarray(np.moveaxis(gy, -1, 1)))))
    assert_within_sum_bound(got, ref, mag, terms, "bias grad NHWC vs NCHW", sides=2)


def test_cpu_bias_grad(rng):
    _bias_grad_case(rng, lambda a: a, lambda a: a)


@pytest.mark.cuda
def test_gpu_bias_grad(rng):
    _bias_grad_case(rng, dev, lambda a: a.get())


def test_layout_and_shapes_are_checked_in_the_layouts_terms():
    x = np.ones((2, 6, 6, 3), np.float32)   # NHWC images, C = 3
    w = np.ones((4, 3, 3, 3), np.float32)   # (F, kh, kw, Cg)
    gy = np.ones((2, 4, 4, 4), np.float32)  # (N, Ho, Wo, F)
    for bad in ("nchw", "NWHC", None, 3):
        with pytest.raises(ValueError, match="layout: expected 'NCHW' or 'NHWC'"):
            ops.filter_acts(x, w, layout=bad)
        with pytest.raises(ValueError, match="layout: expected 'NCHW' or 'NHWC'"):
            ops.conv_bias_grad(gy, layout=bad)
    with pytest.raises(ValueError, match=r"images: expected 4 dimensions \(N, H, W, C\)"):
        ops.filter_acts(x[0], w, layout="NHWC")
    with pytest.raises(ValueError, match=r"filters: expected 4 dimensions \(F, kh, kw, C/groups\)"):
        ops.filter_acts(x, w[0], layout="NHWC")
    with pytest.raises(ValueError, match=r"hid_grads: expected 4 dimensions \(N, Ho, Wo, F\)"):
        ops.conv_bias_grad(gy[0], layout="NHWC")
    with pytest.raises(ValueError, match="filters: expected 3/1 = 3 input channels per filter"):
        ops.filter_acts(x, np.ones((4, 3, 3, 2), np.float32), layout="NHWC")
    with pytest.raises(ValueError, match="filters: expected 5 filters to match hid_grads' 5 maps"):
        ops.img_acts(np.ones((2, 4, 4, 5), np.float32), w, image_size=6, layout="NHWC")
    with pytest.raises(ValueError, match=r"hid_grads: expected shape .*\(N, Ho, Wo, F\)"):
        ops.img_acts(np.ones((2, 4, 5, 4), np.float32), w, image_size=6, layout="NHWC")
    with pytest.raises(ValueError, match=r"hid_grads: expected shape .*\(N, Ho, Wo, F\)"):
        ops.weight_acts(x, np.ones((2, 5, 4, 4), np.float32), filter_size=3, layout="NHWC")
    with pytest.raises(ValueError, match="out: expected shape"):  # the NCHW shape is refused
        ops.filter_acts(x, w, out=np.ones((2, 4, 4, 4 + 1), np.float32), layout="NHWC")
    # shapes consistent in NHWC: the results have the NHWC shapes
    assert ops.filter_acts(x, w, layout="NHWC").shape == (2, 4, 4, 4)
    assert ops.img_acts(gy, w, image_size=6, layout="NHWC").shape == (2, 6, 6, 3)
    assert ops.weight_acts(x, gy, filter_size=3, layout="NHWC").shape == (4, 3, 3, 3)
    assert ops.conv_bias_grad(gy, layout="NHWC").shape == (4,)


# ---- version 3 (tensor cores) for NHWC imgActs and weightActs: conv_mma.cu's NHWC gather
# (imgActs: k = (ii, jj, f), 16-byte chunks of F/groups channels when a multiple of 8 bf16 /
# 4 tf32) and NHWC weightActs kernel. Same bound as above (_within: gamma_{K+8} with u = 2^-23 on
# the rounded operands). The path is proven by bit identity where the arithmetic is the NCHW
# kernel's: weightActs NHWC sums the same products over r in the same K-steps, tiles and splits as
# NCHW weightActs (only the column order (i, j, c) vs (c, i, j) differs), so NHWC == the NCHW
# result transposed, bit for bit; imgActs likewise when its k orders (ii, jj, f) and (f, ii, jj)
# coincide (one tap per stride phase or one filter per group) and stride 1 (no space-to-depth
# for NCHW). Version 1 (per-element fmaf loops, block sums) would not match bit for bit.
GRAD_CASES = {
    # F/groups = 16: the 16-byte hid_grads chunks, with stride phases, groups and padding
    "fg16_groups2_s2_chunks": case(2, 12, (9, 8), 32, (3, 3), (2, 2), (1, 1), groups=2),
    # F/groups = 5: element-wise; odd sides, ceil_mode, stride 3 > kh = 2 (a phase with no tap)
    "fg5_s3x1_ceil_odd": case(3, 7, (10, 9), 5, (2, 3), (3, 1), (1, 0), ceil_mode=True),
    # more than 128 rows per tile: imgActs M = C/groups = 136, weightActs M = F/groups = 130
    "c136_f130_tiles": case(1, 136, (5, 6), 130, (3, 3), padding=(1, 1)),
    # one filter per group, stride 1: imgActs' k orders coincide (bit identity with NCHW)
    "fg1_groups3_bitwise": case(2, 9, (7, 8), 3, (3, 2), padding=(1, 1), groups=3),
    # 1x1, stride 1, F/groups = 24: one tap (bit identity), chunked gathers, bf16 and tf32
    "pointwise_fg24_bitwise": case(2, 20, (6, 5), 48, (1, 1), groups=2),
}
FORMS_V3 = dict(FORMS, st1=(1.0, 0.5,
                            lambda rng, shape: rng.standard_normal(shape).astype(np.float32)))


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("name", GRAD_CASES)
def test_gpu_nhwc_grads_on_tensor_cores(rng, precision, name):
    case = GRAD_CASES[name]
    f, kh, kw, (sh, sw), _, groups, _ = case[4:]
    ops_nchw, ops_nhwc, passes, geometry = _setup(rng, case, dev, precision)
    same_order = {"weight_acts": True,
                  "img_acts": sh == sw == 1 and (kh == kw == 1 or f // groups == 1)}
    for form, (st, so, make_target) in FORMS_V3.items():
        for pass_name in ("img_acts", "weight_acts"):
            an, bn, exact, mag, k, extra = passes[pass_name]
            t0 = make_target(rng, exact.shape) if make_target else None
            out = None if t0 is None else dev(t0.copy())
            got = _call(pass_name, ops_nhwc[an], ops_nhwc[bn], geometry, extra, out, st, so,
                        precision, "NHWC")
            assert out is None or got is out
            got = got.get()
            base = 0.0 if st == 0 else st * t0.astype(np.float64)
            what = f"{name} {precision} {pass_name} {form}"
            _within(got, base + so * exact, np.abs(base) + abs(so) * mag, k, what)
            if same_order[pass_name]:
                out2 = None if t0 is None else dev(np.ascontiguousarray(np.moveaxis(t0, -1, 1)))
                ref = _call(pass_name, ops_nchw[an], ops_nchw[bn], geometry, extra, out2, st, so,
                            precision, "NCHW").get()
                np.testing.assert_array_equal(got, nhwc(ref), err_msg=what + " vs NCHW bitwise")


@pytest.mark.cuda
def test_gpu_unaligned_hid_grads_take_the_element_wise_gathers(rng):
    """NHWC imgActs with F/groups = 16 (16-byte chunks allowed), but hid_grads starting 4 bytes
    past a 16-byte boundary: the element-wise gathers run and fill shared memory with the same
    values, so the result is bit-identical to the aligned one (as filterActs' test above)."""
    gy = rng.standard_normal((2, 4, 5, 32)).astype(np.float32)  # (N, Ho, Wo, F)
    w = dev(rng.standard_normal((32, 3, 3, 8)).astype(np.float32))  # (F, kh, kw, C/groups)
    shifted = window(dev(np.concatenate([np.zeros(1, np.float32), gy.ravel()])), 1, gy.shape)
    assert shifted.ptr % 16 != 0
    kw = dict(image_size=(8, 9), stride=2, padding=1, groups=2, precision="tf32", layout="NHWC")
    want = ops.img_acts(dev(gy), w, **kw).get()
    np.testing.assert_array_equal(ops.img_acts(shifted, w, **kw).get(), want)
