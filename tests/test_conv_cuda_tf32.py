"""Version 3 of the CUDA convolution (tensor cores, csrc/cuda/conv_mma.cu) through the public ops:
`cuda.set_conv_kernel(3)` runs filter_acts / img_acts / weight_acts in tf32. Each result is
compared, element by element, with a float64 reference on the tf32-rounded inputs (cvt.rna:
nearest, ties away, 10 mantissa bits) within gamma_{K+8} * (sum|a b| + |bias|), u = 2^-23:
the products of tf32 values are exact in fp32, so only the K-term fp32 accumulation errs
(docs/CUDA_CONV.md, tools/cuda_emu/conv_mma_test.cpp). GPU tests (marker `cuda`); the bf16 path
and every accumulate form are covered by the emulator harness (tests/test_conv_cuda_emu.py).
"""
import numpy as np
import pytest

from alexnet_ext import cuda, ops
from lowp_helpers import round_tf32

pytestmark = pytest.mark.cuda

# (N, C, H, W, F, kh, kw, stride, padding, groups, ceil_mode): tile edges, groups, strides above
# the kernel size (imgActs phases without taps), ceil mode, several K-steps, split-K.
CASES = {
    "conv2_like_groups2": (2, 32, 9, 9, 20, 5, 5, (1, 1), (2, 2), 2, False),
    "fg130_crosses_row_tile": (1, 5, 6, 7, 130, 3, 3, (1, 1), (1, 1), 1, False),
    "stride4_3_ceil": (2, 3, 11, 13, 5, 2, 2, (4, 3), (1, 0), 1, True),
    "conv1_like_11x11_s4": (1, 3, 27, 27, 20, 11, 11, (4, 4), (2, 2), 1, False),
    "long_reduction_split_k": (8, 3, 24, 24, 4, 3, 3, (1, 1), (0, 0), 1, False),
}



def _out(size, k, s, p, ceil):
    span = size + 2 * p - k
    return (-(-span // s) if ceil else span // s) + 1


def case_data(rng, case):
    """Random float32 images, filters, bias and output gradients for a CASES entry; (ho, wo)."""
    n, c, h, wd, f, kh, kw, (sh, sw), (ph, pw), groups, ceil = case
    ho, wo = _out(h, kh, sh, ph, ceil), _out(wd, kw, sw, pw, ceil)
    x = rng.standard_normal((n, c, h, wd)).astype(np.float32)
    w = rng.standard_normal((f, c // groups, kh, kw)).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    gy = rng.standard_normal((n, f, ho, wo)).astype(np.float32)
    return x, w, b, gy, ho, wo


def _padded(x, kh, kw, sh, sw, ph, pw, ho, wo):
    """x zero-padded so that every window of every output pixel lies inside."""
    n, c, h, w = x.shape
    hp, wp = max(h + ph, (ho - 1) * sh + kh), max(w + pw, (wo - 1) * sw + kw)
    xp = np.zeros((n, c, hp, wp))
    xp[:, :, ph:ph + h, pw:pw + w] = x
    return xp


def references(x, w, gy, sh, sw, ph, pw, groups):
    """float64 filter_acts, img_acts, weight_acts by windows (x, w, gy already float64)."""
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    fg, ho, wo = f // groups, gy.shape[2], gy.shape[3]
    xp = _padded(x, kh, kw, sh, sw, ph, pw, ho, wo)
    y, gxp, gw = np.zeros(gy.shape), np.zeros_like(xp), np.zeros(w.shape)
    for g in range(groups):
        cs, fs = slice(g * cg, (g + 1) * cg), slice(g * fg, (g + 1) * fg)
        for i in range(kh):
            for j in range(kw):
                win = xp[:, cs, i:i + (ho - 1) * sh + 1:sh, j:j + (wo - 1) * sw + 1:sw]
                y[:, fs] += np.einsum("ncyx,fc->nfyx", win, w[fs, :, i, j])
                gxp[:, cs, i:i + (ho - 1) * sh + 1:sh, j:j + (wo - 1) * sw + 1:sw] += \
                    np.einsum("nfyx,fc->ncyx", gy[:, fs], w[fs, :, i, j])
                gw[fs, :, i, j] = np.einsum("nfyx,ncyx->fc", gy[:, fs], win)
    return y, gxp[:, :, ph:ph + h, pw:pw + wd], gw


def _within(got, want, mag, terms, what):
    u = 2.0 ** -23
    gamma = (terms + 8) * u / (1 - (terms + 8) * u)
    err = np.abs(got.astype(np.float64) - want)
    bound = gamma * mag + 1e-37
    worst = np.argmax(err - bound)
    assert np.all(np.isfinite(got)) and np.all(err <= bound), \
        f"{what}: |err| {err.flat[worst]:.3g} > bound {bound.flat[worst]:.3g} at {worst}"


@pytest.fixture
def tensor_core_version():
    prev = cuda.get_conv_kernel()
    cuda.set_conv_kernel(3)
    yield
    cuda.set_conv_kernel(prev)


@pytest.mark.parametrize("name", CASES)
def test_tf32_passes_within_accumulation_bound(rng, tensor_core_version, name):
    n, c, h, wd, f, kh, kw, (sh, sw), (ph, pw), groups, ceil = CASES[name]
    x, w, b, gy, ho, wo = case_data(rng, CASES[name])
    kwargs = dict(stride=(sh, sw), padding=(ph, pw), groups=groups, ceil_mode=ceil)
    dev = lambda a: cuda.to_device(np.ascontiguousarray(a))  # noqa: E731
    y = ops.filter_acts(dev(x), dev(w), bias=dev(b), **kwargs).get()
    gx = ops.img_acts(dev(gy), dev(w), image_size=(h, wd), **kwargs).get()
    gw = ops.weight_acts(dev(x), dev(gy), filter_size=(kh, kw), **kwargs).get()
    xr, wr, gr = (round_tf32(a).astype(np.float64) for a in (x, w, gy))
    want = references(xr, wr, gr, sh, sw, ph, pw, groups)
    mag = references(np.abs(xr), np.abs(wr), np.abs(gr), sh, sw, ph, pw, groups)
    bias = b.astype(np.float64)[None, :, None, None]
    _within(y, want[0] + bias, mag[0] + np.abs(bias), c // groups * kh * kw, f"{name} filter_acts")
    _within(gx, want[1], mag[1], f // groups * kh * kw, f"{name} img_acts")
    _within(gw, want[2], mag[2], n * ho * wo, f"{name} weight_acts")
    # tf32 really is in use: the fp32 result of version 2 differs (by far more than fp32 noise).
    cuda.set_conv_kernel(2)
    y2 = ops.filter_acts(dev(x), dev(w), bias=dev(b), **kwargs).get()
    assert np.max(np.abs(y2 - y)) > 1e-5 * np.max(np.abs(y2))
