"""The conv epilogue (csrc/conv.h's ConvEpilogue, conv_impl.cuh's epilogue_store): filter_acts'
activation="relu", img_acts' relu_mask (the ReLU undo folded into imgActs) and out_dtype=bfloat16,
and conv_bias_grad on bfloat16 hid_grads.

The fused ops must be the unfused ones, bit for bit, since the epilogue applies the same selects
(relu.h) to the same float32 value the plain store would have written:
  filter_acts(..., activation="relu")    == ops.relu(filter_acts(...))
  img_acts(..., relu_mask=y)             == ops.relu_undo(img_acts(...), y)
  out_dtype=bfloat16                     == the float32 result rounded to nearest even (ml_dtypes'
                                            astype, independent of csrc/cast.h), a bfloat16 out
                                            read by scale_targets != 0 widened exactly first.
for every accumulate form (st = 0 into a NaN-filled out proves it is never read), both layouts,
every kernel version (set_conv_kernel 1, 2, 3) and precision, and geometries that make the
dispatcher split along K and run imgActs by space-to-depth (its depth_to_space store). The
unfused ops themselves are checked against float64 references in test_conv*.py; here one float64
check per layout on the CPU makes sure the fused relu and mask really act.

bf16 conv_bias_grad: the bf16 values are exact in float32, so the float32 sum of R = N*Ho*Wo
terms in any order is within gamma_R * sum|x| of the exact sum (u = 2^-24, gamma_k =
k u / (1 - k u)); the accumulate form adds two roundings: |got - want| <= gamma_{R+2} (|st t| +
|so| sum|x|).
"""
import ml_dtypes
import numpy as np
import pytest

from alexnet_ext import _core, cuda, ops
from conv_refs import ref_conv, ref_img_grad
from cuda_helpers import kernel_version as _kernel_version

BF16 = np.dtype(ml_dtypes.bfloat16)
# n, c, h, w, f, kh, kw, stride, padding, groups, ceil_mode
CASES = {
    "odd_groups2_stride2x1_ceil": (2, 6, 9, 7, 10, 3, 4, (2, 1), (1, 2), 2, True),
    "pointwise": (2, 5, 6, 5, 7, 1, 1, (1, 1), (0, 0), 1, False),
    # K = 1125 / 1075: split-K at every SM count (tools/cuda_emu/conv_harness.h's kPathCases)
    "splitk_odd_5x5": (2, 45, 7, 7, 43, 5, 5, (1, 1), (2, 2), 1, False),
    "splitk_groups3_stride2": (2, 63, 6, 5, 51, 5, 4, (2, 1), (2, 1), 3, True),
    # few channels per group and a stride: imgActs by space-to-depth (conv1's form) at few SMs
    "s2d_groups2_stride3x2_ceil": (2, 4, 13, 11, 10, 5, 4, (3, 2), (1, 0), 2, True),
}
# (scale_targets, scale_output, target): None = no out given, "nan" = a NaN-filled out
FORMS = {"fresh": (0.0, 1.0, None), "st0_nan_out": (0.0, -0.75, "nan"),
         "accumulate": (0.5, 1.25, "random")}


def _nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def case_data(rng, case, layout):
    """images, filters, bias, hid_grads, relu mask (images-shaped: zeros, negatives, one NaN) and
    the geometry kwargs, in the layout."""
    n, c, h, w, f, kh, kw, stride, padding, groups, ceil = case
    ho = ops.conv_output_size(h, kh, stride[0], padding[0], ceil)
    wo = ops.conv_output_size(w, kw, stride[1], padding[1], ceil)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    k = c // groups * kh * kw
    wt = (rng.standard_normal((f, c // groups, kh, kw)) / np.sqrt(k)).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    gy = rng.standard_normal((n, f, ho, wo)).astype(np.float32)
    mask = rng.standard_normal((n, c, h, w)).astype(np.float32)
    mask[rng.random(mask.shape) < 0.3] = 0.0
    mask.flat[rng.integers(mask.size)] = np.nan  # relu_undo passes nothing at a NaN output
    if layout == "NHWC":
        x, wt, gy, mask = _nhwc(x), _nhwc(wt), _nhwc(gy), _nhwc(mask)
    geo = dict(stride=stride, padding=padding, groups=groups, ceil_mode=ceil, layout=layout)
    return x, wt, b, gy, mask, geo, (h, w)


def _host(a):
    return a if isinstance(a, np.ndarray) else a.get()


def _same_bits(got, want, what):
    got, want = _host(got), _host(want)
    assert got.dtype == want.dtype and got.shape == want.shape, what
    u = np.uint16 if got.dtype == BF16 else np.uint32
    bad = got.view(u) != want.view(u)
    assert not bad.any(), f"{what}: {bad.sum()} of {bad.size} differ, e.g. at " \
                          f"{np.argwhere(bad)[0]}: {got[bad][0]!r} vs {want[bad][0]!r}"


def _target(rng, shape, target, dtype=np.float32):
    if target is None:
        return None
    if target == "nan":
        return np.full(shape, np.nan, dtype)
    return rng.standard_normal(shape).astype(np.float32).astype(dtype)


class _Side:
    """Where a check runs: NumPy arrays (CPU) or DeviceArrays, operands in a precision."""

    def __init__(self, gpu, precision="fp32"):
        self.gpu, self.precision = gpu, precision

    def to(self, a):
        if a is None or not self.gpu:
            return None if a is None else a.copy()  # each call its own out
        return cuda.to_device(np.ascontiguousarray(a))

    def operand(self, a):
        """An operand (images, filters, hid_grads, relu_mask) in the precision's dtype."""
        d = self.to(a)
        return ops.cast(d, cuda.bfloat16) if self.precision == "bf16" else d

    def widened(self, a):
        """An operand as float32 (exactly: the mask of the unfused relu_undo)."""
        return ops.cast(a, np.float32) if self.precision == "bf16" else a


def check_fused_equals_unfused(rng, side, case, layout, name):
    x, wt, b, gy, mask, geo, size = case_data(rng, case, layout)
    xd, wd, gyd, md = (side.operand(a) for a in (x, wt, gy, mask))
    bd = side.to(b)
    kw = dict(geo, precision=side.precision)
    for form, (st, so, target) in FORMS.items():
        what = f"{name} {layout} {side.precision} {form}"
        shape_y = (gy.shape[0],) + gy.shape[1:]
        t0 = _target(rng, shape_y, target)
        plain = ops.filter_acts(xd, wd, bias=bd, out=side.to(t0), scale_targets=st,
                                scale_output=so, **kw)
        fused = ops.filter_acts(xd, wd, bias=bd, out=side.to(t0), scale_targets=st,
                                scale_output=so, activation="relu", **kw)
        assert (_host(plain) < 0).any(), what  # the relu has something to do
        _same_bits(fused, ops.relu(plain), f"filter_acts relu {what}")
        t1 = _target(rng, x.shape, target)
        plain = ops.img_acts(gyd, wd, image_size=size, out=side.to(t1), scale_targets=st,
                             scale_output=so, **kw)
        fused = ops.img_acts(gyd, wd, image_size=size, out=side.to(t1), scale_targets=st,
                             scale_output=so, relu_mask=md, **kw)
        undone = ops.relu_undo(plain, side.widened(md))
        assert (_host(undone) == 0).sum() > (_host(plain) == 0).sum(), what
        _same_bits(fused, undone, f"img_acts relu_mask {what}")


def check_bf16_out(rng, side, case, layout, name):
    """out_dtype=bfloat16 == the float32 result (same epilogue) cast to bf16 by ml_dtypes."""
    x, wt, b, gy, mask, geo, size = case_data(rng, case, layout)
    xd, wd, gyd, md = (side.operand(a) for a in (x, wt, gy, mask))
    bd = side.to(b)
    kw = dict(geo, precision=side.precision)
    calls = {
        "filter_acts": (gy.shape, lambda **k: ops.filter_acts(xd, wd, bias=bd, activation="relu",
                                                              **kw, **k)),
        "filter_acts (no relu)": (gy.shape,
                                  lambda **k: ops.filter_acts(xd, wd, bias=bd, **kw, **k)),
        "img_acts": (x.shape, lambda **k: ops.img_acts(gyd, wd, image_size=size, relu_mask=md,
                                                       **kw, **k)),
    }
    for form, (st, so, target) in FORMS.items():
        for op, (shape, call) in calls.items():
            t16 = _target(rng, shape, target, BF16)
            t32 = None if t16 is None else t16.astype(np.float32)  # exact
            got = call(out=side.to(t16), out_dtype=cuda.bfloat16, scale_targets=st,
                       scale_output=so)
            assert got.dtype == BF16
            f32 = call(out=side.to(t32), scale_targets=st, scale_output=so)
            _same_bits(got, _host(f32).astype(BF16),
                       f"{op} bf16 out {name} {layout} {side.precision} {form}")


# ---------------------------------------------------------------- CPU
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("name", CASES)
def test_cpu_fused_equals_unfused(rng, name, layout):
    check_fused_equals_unfused(rng, _Side(False), CASES[name], layout, name)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_cpu_fused_against_float64(rng, layout):
    """The fused results against float64 references with the relu / mask applied in float64:
    within float32 GEMM error (K terms, gamma_{K+4} sum|a b| with u = 2^-24) and exactly zero where
    the mask or the relu says so."""
    case = CASES["odd_groups2_stride2x1_ceil"]
    x, wt, b, gy, mask, geo, size = case_data(rng, case, layout)
    def back(a):  # to NCHW for the references
        return np.ascontiguousarray(a.transpose(0, 3, 1, 2)) if layout == "NHWC" else a

    xr, wr, gr, mr = back(x), back(wt), back(gy), back(mask)
    stride, padding, groups = case[7], case[8], case[9]
    want = ref_conv(xr, wr, b, stride, padding, groups, True)
    mag = ref_conv(np.abs(xr), np.abs(wr), np.abs(b), stride, padding, groups, True)
    got = back(ops.filter_acts(x, wt, bias=b, activation="relu", **geo))
    k = wr.shape[1] * wr.shape[2] * wr.shape[3]
    gamma = (k + 4) * 2.0**-24 / (1 - (k + 4) * 2.0**-24)
    assert np.all(np.abs(got - np.maximum(want, 0)) <= gamma * mag)
    assert (got == 0).any() and (got > 0).any()
    want_g = ref_img_grad(gr, wr, xr.shape[2:], stride, padding, groups, True)
    mag_g = ref_img_grad(np.abs(gr), np.abs(wr), xr.shape[2:], stride, padding, groups, True)
    got_g = back(ops.img_acts(gy, wt, image_size=size, relu_mask=mask, **geo))
    keep = mr > 0
    assert np.all(got_g[~keep] == 0)
    kd = wr.shape[0] // groups * wr.shape[2] * wr.shape[3]
    gamma = (kd + 4) * 2.0**-24 / (1 - (kd + 4) * 2.0**-24)
    assert np.all(np.abs(got_g[keep] - want_g[keep]) <= gamma * mag_g[keep])
    assert (got_g[keep] != 0).any()


def test_bad_arguments_name_the_argument():
    x = np.ones((2, 3, 6, 6), np.float32)
    w = np.ones((4, 3, 3, 3), np.float32)
    gy = np.ones((2, 4, 4, 4), np.float32)
    for bad in ("gelu", "ReLU", ""):
        with pytest.raises(ValueError, match="activation: expected None or 'relu'"):
            ops.filter_acts(x, w, activation=bad)
    for bad in (True, 1, np.array("relu"), np.array(["relu", "relu"]), b"relu"):
        with pytest.raises(TypeError, match="activation: expected None or 'relu'"):
            ops.filter_acts(x, w, activation=bad)
    for bad in (np.int32, "int8", np.float64, 3, "nonsense"):
        with pytest.raises(TypeError, match="out_dtype: expected None, numpy.float32 or"):
            ops.filter_acts(x, w, out_dtype=bad)
        with pytest.raises(TypeError, match="out_dtype: expected None, numpy.float32 or"):
            ops.img_acts(gy, w, image_size=6, out_dtype=bad)
    for op in (lambda **k: ops.filter_acts(x, w, **k),
               lambda **k: ops.img_acts(gy, w, image_size=6, **k)):
        with pytest.raises(TypeError, match="out_dtype: a bfloat16 result runs on the GPU only"):
            op(out_dtype=cuda.bfloat16)
        np.testing.assert_array_equal(op(out_dtype=np.float32), op())
    # out_dtype=None takes out's dtype: a host bfloat16 out is refused by name
    with pytest.raises(TypeError, match="out: a bfloat16 result runs on the GPU only"):
        ops.filter_acts(x, w, out=np.zeros((2, 4, 4, 4), BF16))
    with pytest.raises(TypeError, match="out: a bfloat16 result runs on the GPU only"):
        ops.img_acts(gy, w, image_size=6, out=np.zeros((2, 3, 6, 6), BF16))
    with pytest.raises(ValueError, match=r"relu_mask: expected shape \(2, 3, 6, 6\)"):
        ops.img_acts(gy, w, image_size=6, relu_mask=np.ones((2, 3, 6, 5), np.float32))
    with pytest.raises(ValueError, match="relu_mask: expected 4 dimensions"):
        ops.img_acts(gy, w, image_size=6, relu_mask=np.ones((2, 3, 36), np.float32))
    with pytest.raises(TypeError, match="relu_mask: expected dtype float32"):
        ops.img_acts(gy, w, image_size=6, relu_mask=np.ones((2, 3, 6, 6), np.float64))
    with pytest.raises(TypeError, match="relu_mask: bfloat16 runs on the GPU only"):
        ops.img_acts(gy, w, image_size=6, relu_mask=np.ones((2, 3, 6, 6), BF16))
    with pytest.raises(TypeError, match="hid_grads: bfloat16 runs on the GPU only"):
        ops.conv_bias_grad(np.ones((2, 4, 4, 4), BF16))
    out = np.empty((2, 3, 6, 6), np.float32)
    with pytest.raises(ValueError, match="out: must not share memory with relu_mask"):
        ops.img_acts(gy, w, image_size=6, relu_mask=out, out=out)
    # the binding alone refuses what the CPU kernels cannot do
    geo = _core.ConvGeometry(n=2, c=3, h=6, w=6, f=4, kh=3, kw=3, sh=1, sw=1, ph=0, pw=0,
                             groups=1, ho=4, wo=4)
    with pytest.raises(TypeError, match="out: bfloat16 arrays run on the GPU only"):
        _core.cpu.filter_acts(x, w, None, np.empty((2, 4, 4, 4), BF16), geo, 0.0, 1.0)
    with pytest.raises(ValueError, match="relu_mask"):
        _core.cpu.img_acts(gy, w, out, geo, 0.0, 1.0, relu_mask=np.ones((2, 3, 6, 5), np.float32))
    with pytest.raises(TypeError, match="relu_mask: bfloat16 arrays run on the GPU only"):
        _core.cpu.img_acts(gy, w, out, geo, 0.0, 1.0, relu_mask=np.ones((2, 3, 6, 6), BF16))
    with pytest.raises(TypeError):  # weightActs has no epilogue
        _core.cpu.weight_acts(x, gy, w.copy(), geo, 0.0, 1.0, relu_mask=x)


# ---------------------------------------------------------------- GPU
# fp32 on each kernel version; tf32 and bf16 (version 3 by precision, whatever the setting)
RUNS = {"fp32_v1": ("fp32", 1), "fp32_v2": ("fp32", 2), "fp32_v3_tf32": ("fp32", 3),
        "tf32": ("tf32", 2), "bf16": ("bf16", 2)}


@pytest.mark.cuda
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("name", CASES)
def test_gpu_fused_equals_unfused(rng, name, run, layout):
    precision, version = RUNS[run]
    before = _core.cuda._conv_path_counts()
    with _kernel_version(version):
        check_fused_equals_unfused(rng, _Side(True, precision), CASES[name], layout, name)
    after = _core.cuda._conv_path_counts()
    assert after["fused"] - before["fused"] == 2 * len(FORMS)  # relu + relu_mask per form
    if name == "splitk_odd_5x5" and layout == "NCHW" and version > 1:
        assert after["split_k"] > before["split_k"], "the split-K reduction's store was not run"


@pytest.mark.cuda
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("run", ["fp32_v1", "fp32_v2", "tf32", "bf16"])
@pytest.mark.parametrize("name", ["odd_groups2_stride2x1_ceil", "splitk_groups3_stride2",
                                  "s2d_groups2_stride3x2_ceil"])
def test_gpu_bf16_out_is_the_rne_cast(rng, name, run, layout):
    precision, version = RUNS[run]
    with _kernel_version(version):
        check_bf16_out(rng, _Side(True, precision), CASES[name], layout, name)


@pytest.mark.cuda
def test_gpu_out_dtype_none_takes_the_dtype_of_out(rng):
    """out_dtype=None with a bfloat16 out: the same bits as out_dtype=bfloat16 (as fc does)."""
    d = cuda.to_device
    x = d(rng.standard_normal((2, 3, 7, 6)).astype(np.float32))
    w = d(rng.standard_normal((5, 3, 3, 2)).astype(np.float32))
    gy = d(rng.standard_normal((2, 5, 5, 5)).astype(np.float32))
    for call, shape in ((lambda **k: ops.filter_acts(x, w, **k), (2, 5, 5, 5)),
                        (lambda **k: ops.img_acts(gy, w, image_size=(7, 6), **k), (2, 3, 7, 6))):
        want = call(out_dtype=cuda.bfloat16).get()
        out = cuda.empty(shape, cuda.bfloat16)
        assert call(out=out) is out
        _same_bits(out.get(), want, "out_dtype=None, bfloat16 out")


@pytest.mark.cuda
def test_gpu_space_to_depth_store(rng):
    """conv1's form (3 channels, 11x11 stride 4) at a size where fp32 imgActs runs by
    space-to-depth at any SM count (1 or 132): its depth_to_space applies the epilogue (relu_mask
    and bf16 out) in every accumulate form."""
    x, wt, b, gy, mask, geo, size = case_data(rng, (16, 3, 63, 63, 32, 11, 11, (4, 4), (2, 2), 1,
                                                    False), "NCHW")
    d = cuda.to_device
    before = _core.cuda._conv_path_counts()
    with _kernel_version(2):
        for form, (st, so, target) in FORMS.items():
            t0 = _target(rng, x.shape, target)
            def call(out, **k):
                return ops.img_acts(d(gy), d(wt), image_size=size, scale_targets=st,
                                    scale_output=so, out=None if out is None else d(out), **geo,
                                    **k)
            plain = call(t0)
            _same_bits(call(t0, relu_mask=d(mask)), ops.relu_undo(plain, d(mask)), f"s2d {form}")
            t16 = None if t0 is None else t0.astype(BF16)
            got = call(t16, relu_mask=d(mask), out_dtype=cuda.bfloat16)
            f32 = call(None if t16 is None else t16.astype(np.float32), relu_mask=d(mask))
            _same_bits(got, f32.get().astype(BF16), f"s2d bf16 out {form}")
    after = _core.cuda._conv_path_counts()
    assert after["s2d"] - before["s2d"] == 4 * len(FORMS), "imgActs did not run by space-to-depth"


@pytest.mark.cuda
def test_gpu_bad_arguments_name_the_argument(rng):
    d = cuda.to_device
    x, w = d(np.ones((2, 3, 6, 6), np.float32)), d(np.ones((4, 3, 3, 3), np.float32))
    gy = d(np.ones((2, 4, 4, 4), np.float32))
    xb, wb, gyb = (ops.cast(a, cuda.bfloat16) for a in (x, w, gy))
    with pytest.raises(TypeError, match="out: expected dtype bfloat16"):
        ops.filter_acts(x, w, out=cuda.empty((2, 4, 4, 4), np.float32), out_dtype=cuda.bfloat16)
    with pytest.raises(TypeError, match="out: expected dtype float32, got bfloat16"):
        ops.filter_acts(x, w, out=cuda.empty((2, 4, 4, 4), cuda.bfloat16), out_dtype=np.float32)
    with pytest.raises(TypeError, match="relu_mask: dtype bfloat16 does not match hid_grads's float32"):
        ops.img_acts(gy, w, image_size=6, relu_mask=xb)
    with pytest.raises(TypeError, match="relu_mask: dtype float32 does not match hid_grads's bfloat16"):
        ops.img_acts(gyb, wb, image_size=6, relu_mask=x)
    with pytest.raises(ValueError, match=r"relu_mask: expected shape \(2, 3, 6, 6\)"):
        ops.img_acts(gyb, wb, image_size=6, relu_mask=ops.cast(d(np.ones((2, 3, 6, 5), np.float32)),
                                                               cuda.bfloat16))
    with pytest.raises(TypeError, match="mix host"):
        ops.img_acts(gy, w, image_size=6, relu_mask=np.ones((2, 3, 6, 6), np.float32))
    with pytest.raises(ValueError, match="scale_targets: a non-zero scale_targets"):
        ops.filter_acts(x, w, out_dtype=cuda.bfloat16, scale_targets=1.0)


@pytest.mark.cuda
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("shape", [(3, 5, 7, 9), (40, 6, 3, 5), (2, 1, 1, 1)])
def test_gpu_bf16_conv_bias_grad_within_bound(rng, shape, layout):
    hid = rng.standard_normal(shape).astype(np.float32).astype(BF16)
    n, f = shape[0], shape[1]
    hid_l = _nhwc(hid) if layout == "NHWC" else hid
    exact = hid.astype(np.float64).sum(axis=(0, 2, 3))
    mag = np.abs(hid.astype(np.float64)).sum(axis=(0, 2, 3))
    r = n * shape[2] * shape[3]
    gamma = (r + 2) * 2.0**-24 / (1 - (r + 2) * 2.0**-24)
    for st, so, target in FORMS.values():
        t0 = _target(rng, (f,), target)
        out = None if t0 is None else cuda.to_device(t0)
        got = ops.conv_bias_grad(cuda.to_device(hid_l), out=out, scale_targets=st,
                                 scale_output=so, layout=layout)
        assert got.dtype == np.float32
        base = 0.0 if st == 0 else st * t0.astype(np.float64)
        want = base + so * exact
        assert np.all(np.abs(got.get() - want) <= gamma * (np.abs(base) + abs(so) * mag)), \
            (got.get(), want)
        # the same sums as the float32 op on the widened values, bit for bit
        out32 = None if t0 is None else cuda.to_device(t0)
        _same_bits(got, ops.conv_bias_grad(cuda.to_device(hid_l.astype(np.float32)), out=out32,
                                           scale_targets=st, scale_output=so, layout=layout),
                   f"bf16 vs fp32 conv_bias_grad {shape} {layout}")
