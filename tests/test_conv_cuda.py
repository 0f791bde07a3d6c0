"""The CUDA convolution (csrc/cuda/conv*.cu) against the float64 references of test_conv.py and the
CPU implementation. Every test needs a GPU (marker `cuda`, skipped otherwise).

Both kernel versions run wherever it matters: 1 = reference (direct loops), 2 = tiled implicit
GEMM (the default, which sums in a different order: tolerances scale with the reduction length).
"""
import numpy as np
import pytest

from alexnet_ext import _shapes as ALEXNET
from alexnet_ext import cuda, ops
from cuda_helpers import kernel_version as _kernel_version
from cuda_helpers import torch_cuda
from helpers import EPS32, assert_close, assert_within_sum_bound, random_indices
from helpers import conv_geometry
from conv_refs import CASES, make_data, random_case, ref_conv, ref_img_grad, ref_weight_grad
from conv_refs import undo_data

pytestmark = pytest.mark.cuda

VERSIONS = (1, 2)


@pytest.fixture(params=VERSIONS, ids=["reference", "fast"])
def version(request):
    prev = cuda.get_conv_kernel()
    cuda.set_conv_kernel(request.param)
    yield request.param
    cuda.set_conv_kernel(prev)


def _dev(a):
    return cuda.to_device(np.ascontiguousarray(a))


def make_pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _k(w):
    return int(np.prod(w.shape[1:]))


def _gpu_passes(x, w, gy, kw, bias=None):
    """filter_acts / img_acts / weight_acts on the GPU, results copied back."""
    y = ops.filter_acts(_dev(x), _dev(w), bias=None if bias is None else _dev(bias), **kw)
    gx = ops.img_acts(_dev(gy), _dev(w), image_size=x.shape[2:], **kw)
    gw = ops.weight_acts(_dev(x), _dev(gy), filter_size=w.shape[2:], **kw)
    assert isinstance(y, cuda.DeviceArray) and isinstance(gx, cuda.DeviceArray)
    return y.get(), gx.get(), gw.get()


def _check_against_reference(rng, case, what=""):
    # Rigorous componentwise bounds (helpers.assert_within_sum_bound): every output is a float32
    # sum of K products; + 3 roundings for the bias add and the accumulate-form store.
    x, w, kw = make_data(rng, case)
    b = rng.standard_normal(w.shape[0]).astype(np.float32)
    y_ref = ref_conv(x, w, b, **kw)
    gy = rng.standard_normal(y_ref.shape).astype(np.float32)
    y, gx, gw = _gpu_passes(x, w, gy, kw, bias=b)
    n, _, ho, wo = gy.shape
    ax, aw, agy = np.abs(x), np.abs(w), np.abs(gy)
    red_x = w.shape[0] // kw["groups"] * w.shape[2] * w.shape[3]
    k_y, k_x, k_w = _k(w) + 3, red_x + 3, n * ho * wo + 3
    abs_y = ref_conv(ax, aw, np.abs(b), **kw)
    abs_x = ref_img_grad(agy, aw, x.shape[2:], **kw)
    abs_w = ref_weight_grad(ax, agy, w.shape[2:], **kw)
    assert_within_sum_bound(y, y_ref, abs_y, k_y, what=f"filter_acts {what}")
    assert_within_sum_bound(gx, ref_img_grad(gy, w, x.shape[2:], **kw), abs_x, k_x,
                            what=f"img_acts {what}")
    assert_within_sum_bound(gw, ref_weight_grad(x, gy, w.shape[2:], **kw), abs_w, k_w,
                            what=f"weight_acts {what}")
    # The CPU implementation (float32 too): both errors add up, hence sides=2.
    assert_within_sum_bound(y, ops.filter_acts(x, w, bias=b, **kw), abs_y, k_y, sides=2,
                            what=f"filter_acts vs CPU {what}")
    assert_within_sum_bound(gx, ops.img_acts(gy, w, image_size=x.shape[2:], **kw), abs_x, k_x,
                            sides=2, what=f"img_acts vs CPU {what}")
    assert_within_sum_bound(gw, ops.weight_acts(x, gy, filter_size=w.shape[2:], **kw), abs_w,
                            k_w, sides=2, what=f"weight_acts vs CPU {what}")
    y_nobias = ops.filter_acts(_dev(x), _dev(w), **kw).get()
    assert_within_sum_bound(y_nobias, ref_conv(x, w, **kw), ref_conv(ax, aw, **kw), k_y,
                            what=f"filter_acts no bias {what}")


@pytest.mark.parametrize("name", CASES)
def test_cases_match_reference(rng, version, name):
    _check_against_reference(rng, CASES[name], name)


def test_random_geometries(rng, version):
    for _ in range(25):
        case = random_case(rng)
        _check_against_reference(rng, case, str(case))


# ---------------------------------------------------------------- float64 at sampled positions
def _sampled_conv(x, w, b, idx, stride, padding, groups):
    """Exact outputs at multi-indices `idx` (n, f, oy, ox) and a per-element error bound."""
    (sh, sw), (ph, pw) = make_pair(stride), make_pair(padding)
    f_all, cg, kh, kw = w.shape
    fg = f_all // groups
    h, wd = x.shape[2:]
    vals, bounds = [], []
    for n, f, oy, ox in idx:
        g = f // fg
        y0, x0 = oy * sh - ph, ox * sw - pw
        ya, yb, xa, xb = max(y0, 0), min(y0 + kh, h), max(x0, 0), min(x0 + kw, wd)
        terms = (np.float64(x[n, g * cg:(g + 1) * cg, ya:yb, xa:xb]) *
                 np.float64(w[f, :, ya - y0:yb - y0, xa - x0:xb - x0]))
        bias = 0.0 if b is None else float(b[f])
        vals.append(terms.sum() + bias)
        bounds.append(8 * EPS32 * np.sqrt(cg * kh * kw) * (np.abs(terms).sum() + abs(bias) + 1e-30))
    return np.array(vals), np.array(bounds)


def _sampled_img_grad(gy, w, idx, image_size, stride, padding, groups):
    """Exact imgActs outputs at (n, c, y, x) by the scatter rule, with error bounds."""
    (sh, sw), (ph, pw) = make_pair(stride), make_pair(padding)
    f_all, cg, kh, kw = w.shape
    fg = f_all // groups
    _, _, ho, wo = gy.shape
    vals, bounds = [], []
    for n, c, y, x in idx:
        g, cc = c // cg, c % cg
        terms = []
        for i in range(kh):
            for j in range(kw):
                ty, tx = y + ph - i, x + pw - j
                if ty < 0 or tx < 0 or ty % sh or tx % sw or ty // sh >= ho or tx // sw >= wo:
                    continue
                terms.append(np.float64(gy[n, g * fg:(g + 1) * fg, ty // sh, tx // sw]) *
                             np.float64(w[g * fg:(g + 1) * fg, cc, i, j]))
        terms = np.concatenate(terms) if terms else np.zeros(1)
        vals.append(terms.sum())
        bounds.append(8 * EPS32 * np.sqrt(fg * kh * kw) * (np.abs(terms).sum() + 1e-30))
    return np.array(vals), np.array(bounds)


def _sampled_weight_grad(x, gy, idx, filter_size, stride, padding, groups):
    """Exact weightActs outputs at (f, c, i, j), with error bounds."""
    (sh, sw), (ph, pw), (kh, kw) = make_pair(stride), make_pair(padding), make_pair(filter_size)
    n, c_all, h, wd = x.shape
    _, f_all, ho, wo = gy.shape
    cg, fg = c_all // groups, f_all // groups
    vals, bounds = [], []
    for f, c, i, j in idx:
        g = f // fg
        oy = np.arange(ho) * sh - ph + i
        ox = np.arange(wo) * sw - pw + j
        vy, vx = (oy >= 0) & (oy < h), (ox >= 0) & (ox < wd)
        win = np.float64(x[:, g * cg + c][:, oy[vy]][:, :, ox[vx]])
        terms = win * np.float64(gy[:, f][:, vy][:, :, vx])
        vals.append(terms.sum())
        bounds.append(8 * EPS32 * np.sqrt(n * ho * wo) * (np.abs(terms).sum() + 1e-30))
    return np.array(vals), np.array(bounds)


def _assert_samples(got, exact, bound, what):
    err = np.abs(np.float64(got) - exact)
    worst = int(np.argmax(err - bound))
    assert np.all(err <= bound), (f"{what}: sample {worst} off by {err[worst]:.3g} "
                                  f"(bound {bound[worst]:.3g}, exact {exact[worst]:.6g})")


# ---------------------------------------------------------------- AlexNet layers at batch 128
@pytest.mark.gpu_scale
@pytest.mark.parametrize("layer", ALEXNET.CONV)
def test_alexnet_layers_batch128(rng, layer):
    L = ALEXNET.CONV[layer]
    xs, ws = L.images(ALEXNET.BATCH), L.filters()
    stride, padding, groups = L.stride, L.padding, L.groups
    kw = dict(stride=stride, padding=padding, groups=groups)
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    y_cpu = ops.filter_acts(x, w, bias=b, **kw)
    gy = rng.standard_normal(y_cpu.shape).astype(np.float32)
    gx_cpu = ops.img_acts(gy, w, image_size=xs[2:], **kw)
    gw_cpu = ops.weight_acts(x, gy, filter_size=ws[2:], **kw)
    n, f, ho, wo = gy.shape
    red_x = f // groups * ws[2] * ws[3]
    iy = random_indices(rng, y_cpu.shape, 48)
    ix = random_indices(rng, xs, 48)
    iw = random_indices(rng, ws, 24)
    exact_y = _sampled_conv(x, w, b, iy, stride, padding, groups)
    exact_x = _sampled_img_grad(gy, w, ix, xs[2:], stride, padding, groups)
    exact_w = _sampled_weight_grad(x, gy, iw, ws[2:], stride, padding, groups)
    dx, dw, db, dgy = _dev(x), _dev(w), _dev(b), _dev(gy)
    for v in (2, 1):
        with _kernel_version(v):
            y = ops.filter_acts(dx, dw, bias=db, **kw).get()
            gx = ops.img_acts(dgy, dw, image_size=xs[2:], **kw).get()
            gw = ops.weight_acts(dx, dgy, filter_size=ws[2:], **kw).get()
        tag = f"{layer} v{v}"
        assert_close(y, y_cpu, _k(w), factor=16, what=f"{tag} filter_acts vs CPU")
        assert_close(gx, gx_cpu, red_x, factor=16, what=f"{tag} img_acts vs CPU")
        assert_close(gw, gw_cpu, n * ho * wo, factor=16, what=f"{tag} weight_acts vs CPU")
        _assert_samples([y[i] for i in iy], *exact_y, f"{tag} filter_acts")
        _assert_samples([gx[i] for i in ix], *exact_x, f"{tag} img_acts")
        _assert_samples([gw[i] for i in iw], *exact_w, f"{tag} weight_acts")
    gb = ops.conv_bias_grad(dgy).get()
    assert_close(gb, np.float64(gy).sum(axis=(0, 2, 3)), n * ho * wo, what=f"{layer} bias grad")


# ---------------------------------------------------------------- accumulate form, bias
@pytest.mark.parametrize("name", ["conv2_5x5_p2_groups2", "pointwise_1x1", "ceil_mode_overhang",
                                  "conv1_11x11_s4"])
def test_accumulate_form(rng, version, name):
    x, w, kw = make_data(rng, CASES[name])
    b = rng.standard_normal(w.shape[0]).astype(np.float32)
    y = ref_conv(x, w, b, **kw)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx = ref_img_grad(gy, w, x.shape[2:], **kw)
    gw = ref_weight_grad(x, gy, w.shape[2:], **kw)
    gb = np.float64(gy).sum(axis=(0, 2, 3))
    dx, dw, db, dgy = _dev(x), _dev(w), _dev(b), _dev(gy)
    calls = {
        "filter_acts": (lambda **a: ops.filter_acts(dx, dw, bias=db, **kw, **a), y),
        "img_acts": (lambda **a: ops.img_acts(dgy, dw, image_size=x.shape[2:], **kw, **a), gx),
        "weight_acts": (lambda **a: ops.weight_acts(dx, dgy, filter_size=w.shape[2:], **kw, **a),
                        gw),
        "conv_bias_grad": (lambda **a: ops.conv_bias_grad(dgy, **a), gb),
    }
    for what, (call, ref) in calls.items():
        # scale_targets 0: out is never read, NaNs in it must vanish.
        out = _dev(np.full(ref.shape, np.nan, dtype=np.float32))
        assert call(out=out, scale_targets=0.0, scale_output=1.0) is out
        assert_close(out.get(), ref, 500, what=f"{what} into NaN out")
        prev = rng.standard_normal(ref.shape).astype(np.float32)
        out = _dev(prev)
        call(out=out, scale_targets=1.0, scale_output=1.0)
        assert_close(out.get(), np.float64(prev) + ref, 500, what=f"{what} 1/1")
        out = _dev(prev)
        call(out=out, scale_targets=0.5, scale_output=-2.0)
        assert_close(out.get(), 0.5 * np.float64(prev) - 2.0 * ref, 500, what=f"{what} 0.5/-2")
    # The inputs are untouched.
    np.testing.assert_array_equal(dx.get(), x)
    np.testing.assert_array_equal(dw.get(), w)
    np.testing.assert_array_equal(dgy.get(), gy)


@pytest.mark.parametrize("shape", [(3, 7, 5, 6), (1, 1, 1, 1), (200, 5, 2, 3),
                                   pytest.param((ALEXNET.BATCH, *ALEXNET.NORM1),
                                                marks=pytest.mark.gpu_scale)])
def test_bias_grad(rng, version, shape):
    gy = rng.standard_normal(shape).astype(np.float32)
    red = shape[0] * shape[2] * shape[3]
    expect = np.float64(gy).sum(axis=(0, 2, 3))
    assert_close(ops.conv_bias_grad(_dev(gy)).get(), expect, red)
    prev = rng.standard_normal(shape[1]).astype(np.float32)
    out = _dev(prev)
    ops.conv_bias_grad(_dev(gy), out=out, scale_targets=0.5, scale_output=2.0)
    assert_close(out.get(), 0.5 * np.float64(prev) + 2.0 * expect, red)


def test_fast_kernels_are_deterministic(rng):
    """Split-K and split bias sums reduce in a fixed order: bitwise-equal reruns."""
    x, w, kw, gy = undo_data(rng, CASES["long_reduction_split_k"])
    dx, dw, dgy = _dev(x), _dev(w), _dev(gy)
    with _kernel_version(2):
        runs = [(ops.filter_acts(dx, dw, **kw).get(),
                 ops.img_acts(dgy, dw, image_size=x.shape[2:], **kw).get(),
                 ops.weight_acts(dx, dgy, filter_size=w.shape[2:], **kw).get(),
                 ops.conv_bias_grad(dgy).get()) for _ in range(3)]
    for later in runs[1:]:
        for a, b in zip(runs[0], later):
            np.testing.assert_array_equal(a, b)


def test_versions_agree_and_switch(rng):
    """The switch really changes kernels (results differ in rounding, agree within bounds)."""
    assert cuda.get_conv_kernel() == 2  # the default
    x, w, kw = make_data(rng, CASES["conv2_5x5_p2_groups2"])
    dx, dw = _dev(x), _dev(w)
    with _kernel_version(1):
        assert cuda.get_conv_kernel() == 1
        y1 = ops.filter_acts(dx, dw, **kw).get()
    y2 = ops.filter_acts(dx, dw, **kw).get()
    assert_close(y1, y2, _k(w), factor=16)
    with pytest.raises(ValueError, match="version must be 1"):
        cuda.set_conv_kernel(4)  # 3 is the tensor-core version
    with pytest.raises(ValueError, match="version must be 1"):
        cuda.set_conv_kernel(0)
    with pytest.raises(TypeError):
        cuda.set_conv_kernel(2.0)


def test_non_default_stream(rng):
    x, w, kw = make_data(rng, CASES["conv3_3x3_p1"])
    gy = rng.standard_normal(ref_conv(x, w, **kw).shape).astype(np.float32)
    dx, dw, dgy = _dev(x), _dev(w), _dev(gy)      # copied on the default stream
    s = cuda.Stream()
    try:
        uploaded = cuda.Event().record()
        with s:
            uploaded.wait()                           # s is not ordered with the default stream
            y = ops.filter_acts(dx, dw, **kw)
            gw = ops.weight_acts(dx, dgy, filter_size=w.shape[2:], **kw)
            y_host, gw_host = y.get(), gw.get()
        s.synchronize()
    finally:
        s.close()
    np.testing.assert_array_equal(y_host, ops.filter_acts(dx, dw, **kw).get())
    np.testing.assert_array_equal(gw_host, ops.weight_acts(dx, dgy, filter_size=w.shape[2:], **kw).get())


# ---------------------------------------------------------------- interop, errors
def test_torch_arrays_zero_copy(rng):
    torch = torch_cuda()
    if not torch.cuda.is_available():
        pytest.skip("PyTorch has no CUDA")
    x = torch.randn(4, 6, 15, 17, device="cuda")
    w = torch.randn(10, 3, 3, 3, device="cuda")
    y = ops.filter_acts(cuda.asarray(x), cuda.asarray(w), stride=2, padding=1, groups=2)
    assert isinstance(y, cuda.DeviceArray)
    t = torch.from_dlpack(y)
    assert t.data_ptr() == y.ptr  # a view, no copy
    xh, wh = x.cpu().numpy(), w.cpu().numpy()
    ref = ref_conv(xh, wh, stride=2, padding=1, groups=2)
    assert_close(t.cpu().numpy(), ref, 27)
    # out= a torch tensor: the kernel writes torch's memory in place.
    out_t = torch.full(tuple(t.shape), float("nan"), device="cuda")
    ops.filter_acts(cuda.asarray(x), cuda.asarray(w), stride=2, padding=1, groups=2,
                    out=cuda.asarray(out_t))
    assert_close(out_t.cpu().numpy(), ref, 27)


def test_bad_device_input(rng):
    from alexnet_ext import _core
    x = _dev(rng.standard_normal((2, 4, 8, 8)).astype(np.float32))
    w = _dev(rng.standard_normal((6, 4, 3, 3)).astype(np.float32))
    out = cuda.empty((2, 6, 6, 6))
    t = (2, 4, 8, 8, 6, 3, 3, 1, 1, 0, 0, 1, 6, 6)
    geo = conv_geometry(t)
    with pytest.raises(ValueError, match="images: expected shape"):
        _core.cuda.filter_acts(x, w, None, out, conv_geometry((3,) + t[1:]), 0.0, 1.0)
    with pytest.raises(ValueError, match=r"conv geometry: \(ho, wo\) is not the output size"):
        _core.cuda.filter_acts(x, w, None, out, conv_geometry(t[:12] + (9, 9)), 0.0, 1.0)
    with pytest.raises(ValueError, match="bias: expected shape"):
        _core.cuda.filter_acts(x, w, cuda.empty((5,)), out, geo, 0.0, 1.0)
    with pytest.raises(TypeError, match="mix host"):
        _core.cuda.filter_acts(x, w, np.zeros(6, np.float32), out, geo, 0.0, 1.0)
    with pytest.raises(TypeError):
        _core.cuda.filter_acts(x, w, None, np.empty((2, 6, 6, 6), np.float32), geo, 0.0, 1.0)
    with pytest.raises(TypeError, match="images: expected dtype float32"):
        _core.cuda.filter_acts(cuda.zeros((2, 4, 8, 8), np.int32), w, None, out, geo, 0.0, 1.0)
    with pytest.raises(ValueError, match="out: expected shape"):
        _core.cuda.weight_acts(x, out, cuda.empty((6, 4, 3, 2)), geo, 0.0, 1.0)
    with pytest.raises(ValueError, match="hid_grads: expected 4 dimensions"):
        _core.cuda.conv_bias_grad(cuda.empty((2, 6)), cuda.empty((6,)), 0.0, 1.0)
    with pytest.raises(TypeError, match="images: expected dtype float32"):
        ops.filter_acts(cuda.zeros((2, 4, 8, 8), np.int32), w)
    with pytest.raises(TypeError, match="mix host"):
        ops.img_acts(out, w.get(), image_size=8)


# ---------------------------------------------------------------- 64-bit indexing
def _pattern(shape, rng, period=10_000_019):
    """Random values repeating with a prime period that aligns with no tensor dimension, cheap to
    make for billions of elements; an index off by a multiple of 2^32 still reads other values."""
    block = rng.standard_normal(period).astype(np.float32)
    return np.resize(block, int(np.prod(shape))).reshape(shape)


def _giant_case(rng, xs, ws, stride, padding, samples):
    x = _pattern(xs, rng)
    w = rng.standard_normal(ws).astype(np.float32)
    dx, dw = _dev(x), _dev(w)
    n, c, h, wd = xs
    ho = ops.conv_output_size(h, ws[2], stride, padding)
    wo = ops.conv_output_size(wd, ws[3], stride, padding)
    kw = dict(stride=stride, padding=padding)
    # Samples everywhere, and where the offsets are largest: the last image's bottom rows.
    iy = random_indices(rng, (n, ws[0], ho, wo), samples)
    iy += [(n - 1, int(rng.integers(ws[0])), ho - 1 - int(rng.integers(8)), int(rng.integers(wo)))
           for _ in range(samples)]
    iy += [(n - 1, ws[0] - 1, ho - 1, wo - 1), (0, 0, 0, 0)]
    ix = random_indices(rng, xs, samples)
    ix += [(n - 1, c - 1, h - 1 - int(rng.integers(8)), int(rng.integers(wd)))
           for _ in range(samples)]
    ix += [(n - 1, c - 1, h - 1, wd - 1)]
    exact_y = _sampled_conv(x, w, None, iy, stride, padding, 1)
    # imgActs writes the large tensor; its hid_grads: one fixed array of the output's shape.
    dgy = ops.filter_acts(dx, dw, **kw)
    gy = dgy.get()
    exact_x = _sampled_img_grad(gy, w, ix, (h, wd), stride, padding, 1)
    del gy
    for v in (2, 1):
        with _kernel_version(v):
            y = ops.filter_acts(dx, dw, **kw).get()
            _assert_samples([y[i] for i in iy], *exact_y, f"filter_acts v{v} {xs}")
            del y
            gx = ops.img_acts(dgy, dw, image_size=(h, wd), **kw).get()
            _assert_samples([gx[i] for i in ix], *exact_x, f"img_acts v{v} {xs}")
            del gx
    del dx, dgy, x
    cuda.empty_cache()


@pytest.mark.slow
@pytest.mark.gpu_scale
def test_tensors_over_2_31_elements(rng):
    """Images of 2.3e9 elements (9.2 GB) on the fast path: column bases and imgActs' output
    offsets past 2^31 (~31 GB of GPU memory). Then 1.1e9 output pixels in one map, beyond the
    fast path's 2^30 tile indexing: the dispatcher falls back to the reference kernels, which
    index in int64 throughout."""
    _giant_case(rng, (3, 3, 16000, 16000), (2, 3, 3, 3), 1, 1, samples=40)
    _giant_case(rng, (1, 1, 33000, 33000), (1, 1, 3, 3), 1, 1, samples=20)
