"""`precision=` of filter_acts / img_acts / weight_acts: "tf32" (float32 operands rounded to tf32
by the kernel) and "bf16" (bfloat16 operands), the tensor-core entry points of csrc/conv.h, through
the public ops. Every pass, groups, strides above the filter, padding, ceil_mode, odd sizes, and
each accumulate form: fresh (st 0), st 0 into a NaN-filled `out` (never read), st != 0 (read).

Bound: the products of tf32 or bf16 values are exact in fp32 (11 + 11 and 8 + 8 significant
bits, both <= 24), so the result is an fp32 sum of exact terms, st*target and so*(sum + bias):
|got - want| <= gamma_{K+8} (|st target| + |so| (sum|a b| + |bias|)) with u = 2^-23, twice fp32's
unit roundoff because the tensor cores' accumulation need not round to nearest
(tests/test_conv_cuda_tf32.py; K the reduction length, +8 for bias, scales and store). The
reference is float64 on the operands as the kernel sees them: round_tf32(x) (cvt.rna) for tf32,
the bf16 values themselves for bf16.

The refusals (no silent conversion) run without a GPU on NumPy arrays, and on DeviceArrays.
"""
import numpy as np
import pytest

import alexnet_ext
from alexnet_ext import _core, cuda, ops
from cuda_helpers import dev
from lowp_helpers import round_tf32
from test_conv_cuda_tf32 import CASES, _within, case_data, references

BF16 = np.dtype(cuda.bfloat16)
CASES = {**CASES, "odd_all_axes_groups3_ceil": (3, 6, 7, 10, 9, 3, 4, (2, 3), (1, 2), 3, True)}
# (scale_targets, scale_output, target): None = no out given, "nan" = a NaN-filled out
FORMS = {"fresh": (0.0, 1.0, None), "st0_nan_out": (0.0, -0.75, "nan"),
         "accumulate": (0.5, 1.25, "random")}


def _run(pass_name, a, b, geometry, out, st, so, precision):
    kwargs = dict(geometry, out=out, scale_targets=st, scale_output=so, precision=precision)
    bias, size = kwargs.pop("bias"), kwargs.pop("size")
    if pass_name == "filter_acts":
        return ops.filter_acts(a, b, bias=bias, **kwargs)
    if pass_name == "img_acts":
        return ops.img_acts(a, b, image_size=size, **kwargs)
    return ops.weight_acts(a, b, filter_size=size, **kwargs)


@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
@pytest.mark.parametrize("name", CASES)
def test_every_pass_and_accumulate_form_within_bound(rng, precision, name):
    n, c, h, wd, f, kh, kw, (sh, sw), (ph, pw), groups, ceil = CASES[name]
    x, w, b, gy, ho, wo = case_data(rng, CASES[name])
    if precision == "bf16":
        xd, wdv, gyd = (ops.cast(dev(a), cuda.bfloat16) for a in (x, w, gy))
        xr, wr, gr = (a.get().astype(np.float64) for a in (xd, wdv, gyd))
    else:
        xd, wdv, gyd = dev(x), dev(w), dev(gy)
        xr, wr, gr = (round_tf32(a).astype(np.float64) for a in (x, w, gy))
    want = references(xr, wr, gr, sh, sw, ph, pw, groups)
    mag = references(np.abs(xr), np.abs(wr), np.abs(gr), sh, sw, ph, pw, groups)
    bias = b.astype(np.float64)[None, :, None, None]
    passes = {  # operands, exact result, its magnitude, reduction length, extra kwargs
        "filter_acts": (xd, wdv, want[0] + bias, mag[0] + np.abs(bias), c // groups * kh * kw,
                        dict(bias=dev(b), size=None)),
        "img_acts": (gyd, wdv, want[1], mag[1], f // groups * kh * kw, dict(bias=None, size=(h, wd))),
        "weight_acts": (xd, gyd, want[2], mag[2], n * ho * wo, dict(bias=None, size=(kh, kw))),
    }
    geometry = dict(stride=(sh, sw), padding=(ph, pw), groups=groups, ceil_mode=ceil)
    for form, (st, so, target) in FORMS.items():
        for pass_name, (a, bb, exact, m, k, extra) in passes.items():
            t0 = None
            if target == "nan":
                t0 = np.full(exact.shape, np.nan, np.float32)
            elif target == "random":
                t0 = rng.standard_normal(exact.shape).astype(np.float32)
            out = None if t0 is None else dev(t0)
            got = _run(pass_name, a, bb, {**geometry, **extra}, out, st, so, precision)
            assert got.dtype == np.float32 and (out is None or got is out)
            base = 0.0 if st == 0 else st * t0.astype(np.float64)
            _within(got.get(), base + so * exact, np.abs(base) + abs(so) * m, k,
                    f"{name} {precision} {pass_name} {form}")


@pytest.mark.cuda
def test_precision_is_per_call_and_none_follows_the_dtype(rng):
    """tf32 differs from fp32 (it really rounds), does not depend on set_conv_kernel, and None
    means fp32 for float32 and bf16 for bfloat16 operands (the same bits as naming them)."""
    x = dev(rng.standard_normal((2, 5, 9, 9)).astype(np.float32))
    w = dev(rng.standard_normal((7, 5, 3, 3)).astype(np.float32))
    prev = cuda.get_conv_kernel()
    try:
        tf32 = {}
        for version in (1, 2, 3):
            cuda.set_conv_kernel(version)
            tf32[version] = ops.filter_acts(x, w, precision="tf32").get()
        cuda.set_conv_kernel(2)
        fp32 = ops.filter_acts(x, w).get()
        np.testing.assert_array_equal(ops.filter_acts(x, w, precision="fp32").get(), fp32)
    finally:
        cuda.set_conv_kernel(prev)
    np.testing.assert_array_equal(tf32[1], tf32[2])
    np.testing.assert_array_equal(tf32[1], tf32[3])
    assert np.max(np.abs(tf32[1] - fp32)) > 1e-5 * np.max(np.abs(fp32))
    xb, wb = ops.cast(x, cuda.bfloat16), ops.cast(w, cuda.bfloat16)
    np.testing.assert_array_equal(ops.filter_acts(xb, wb).get(),
                                  ops.filter_acts(xb, wb, precision="bf16").get())


def _refusals(to):
    """Every refusal of the precision contract, on arrays made by `to` (NumPy or device)."""
    f32 = to(np.ones((2, 3, 6, 6), np.float32))
    w32 = to(np.ones((4, 3, 3, 3), np.float32))
    gy32 = to(np.ones((2, 4, 4, 4), np.float32))
    bf = lambda a: ops.cast(a, cuda.bfloat16)  # noqa: E731
    fb, wb, gyb = bf(f32), bf(w32), bf(gy32)
    conv = dict(filter_acts=lambda a, b, **k: ops.filter_acts(a, b, **k),
                img_acts=lambda a, b, **k: ops.img_acts(a, b, image_size=6, **k),
                weight_acts=lambda a, b, **k: ops.weight_acts(a, b, filter_size=3, **k))
    operands = dict(filter_acts=(("images", f32, fb), ("filters", w32, wb)),
                    img_acts=(("hid_grads", gy32, gyb), ("filters", w32, wb)),
                    weight_acts=(("images", f32, fb), ("hid_grads", gy32, gyb)))
    for op, call in conv.items():
        (an, a32, abf), (bn, b32, bbf) = operands[op]
        for bad in ("fp16", "FP32", 3, ""):
            with pytest.raises(ValueError, match="precision: expected None, 'fp32', 'tf32' or 'bf16'"):
                call(a32, b32, precision=bad)
        with pytest.raises(TypeError, match=f"{an}: precision='bf16' takes bfloat16 operands.*ops.cast"):
            call(a32, b32, precision="bf16")
        with pytest.raises(TypeError, match=f"{bn}: dtype bfloat16 does not match {an}'s float32"):
            call(a32, bbf)
        with pytest.raises(TypeError, match=f"{bn}: dtype float32 does not match {an}'s bfloat16"):
            call(abf, b32, precision="bf16")
        for p in ("fp32", "tf32"):
            with pytest.raises(TypeError, match=f"{an}: bfloat16 operands run with precision='bf16'"):
                call(abf, bbf, precision=p)
    return f32, w32, fb, wb, gyb


def test_refusals_on_numpy_arrays():
    f32, w32, fb, wb, gyb = _refusals(lambda a: a)
    for p, a, b in (("tf32", f32, w32), ("bf16", fb, wb), (None, fb, wb)):
        with pytest.raises(ValueError, match=r"precision: '(tf32|bf16)' runs on the GPU only"):
            ops.filter_acts(a, b, precision=p)
    with pytest.raises(TypeError, match="hid_grads: bfloat16 runs on the GPU only.*ops.cast"):
        ops.conv_bias_grad(gyb)
    # the binding alone (no Python checks) still refuses: CPU kernels are fp32 only
    g = ops.filter_acts(f32, w32)
    geo = _core.ConvGeometry(n=2, c=3, h=6, w=6, f=4, kh=3, kw=3, sh=1, sw=1, ph=0, pw=0, groups=1,
                             ho=4, wo=4)
    with pytest.raises(TypeError, match="precision: 'tf32' runs on DeviceArrays only"):
        _core.cpu.filter_acts(f32, w32, None, g, geo, 0.0, 1.0, "tf32")
    with pytest.raises(ValueError, match="precision: expected 'fp32', 'tf32' or 'bf16'"):
        _core.cpu.img_acts(g, w32, f32, geo, 0.0, 1.0, "fp16")
    with pytest.raises(TypeError, match="images: expected dtype float32, got bfloat16"):
        _core.cpu.weight_acts(fb, g, w32, geo, 0.0, 1.0)


@pytest.mark.cuda
def test_refusals_on_device_arrays():
    f32, w32, fb, wb, gyb = _refusals(dev)
    with pytest.raises(TypeError, match="bias: expected dtype float32, got bfloat16"):
        ops.filter_acts(fb, wb, bias=ops.cast(dev(np.ones(4, np.float32)), cuda.bfloat16))
    with pytest.raises(TypeError, match="out: expected dtype float32, got bfloat16"):
        ops.filter_acts(fb, wb, out=cuda.empty((2, 4, 4, 4), cuda.bfloat16), out_dtype=np.float32)
    # (out_dtype=None takes a bfloat16 out's dtype: tests/test_conv_epilogue.py)
    with pytest.raises(TypeError, match="mix host"):
        ops.filter_acts(fb, np.ones((4, 3, 3, 3), BF16))
    # (conv_bias_grad takes bfloat16 hid_grads on the GPU: tests/test_conv_epilogue.py)


def test_bfloat16_is_ml_dtypes():
    import ml_dtypes
    assert cuda.bfloat16 is ml_dtypes.bfloat16 and alexnet_ext.ops.cast is ops.cast
