"""filter_acts / img_acts / weight_acts / conv_bias_grad against float64 NumPy references."""
import numpy as np
import pytest

from alexnet_ext import ops
from helpers import assert_adjoint, assert_close, central_difference, random_indices
from helpers import conv_geometry


# ---------------------------------------------------------------- float64 references (direct)
def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _out_size(size, k, s, p, ceil_mode):
    span = size + 2 * p - k
    return (-(-span // s) if ceil_mode else span // s) + 1


def _padded(x, kh, kw, sh, sw, ph, pw, ceil_mode):
    """x zero-padded so that every (possibly overhanging) window lies inside."""
    n, c, h, w = x.shape
    ho, wo = _out_size(h, kh, sh, ph, ceil_mode), _out_size(w, kw, sw, pw, ceil_mode)
    hp, wp = max(h + 2 * ph, (ho - 1) * sh + kh), max(w + 2 * pw, (wo - 1) * sw + kw)
    xp = np.zeros((n, c, hp, wp))
    xp[:, :, ph:ph + h, pw:pw + w] = x
    return xp, ho, wo


def ref_conv(x, w, b=None, stride=1, padding=0, groups=1, ceil_mode=False):
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    f, cg, kh, kw = w.shape
    xp, ho, wo = _padded(np.float64(x), kh, kw, sh, sw, ph, pw, ceil_mode)
    fg = f // groups
    out = np.zeros((x.shape[0], f, ho, wo))
    for g in range(groups):
        xg = xp[:, g * cg:(g + 1) * cg]
        wg = np.float64(w[g * fg:(g + 1) * fg])
        for i in range(kh):
            for j in range(kw):
                win = xg[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
                out[:, g * fg:(g + 1) * fg] += np.einsum("ncyx,fc->nfyx", win, wg[:, :, i, j])
    if b is not None:
        out += np.float64(b)[None, :, None, None]
    return out


def ref_img_grad(gy, w, image_size, stride=1, padding=0, groups=1, ceil_mode=False):
    """Scatter form of the adjoint: every output gradient flows back along its window."""
    (sh, sw), (ph, pw), (h, wd) = _pair(stride), _pair(padding), _pair(image_size)
    f, cg, kh, kw = w.shape
    n, _, ho, wo = gy.shape
    gxp, _, _ = _padded(np.zeros((n, cg * groups, h, wd)), kh, kw, sh, sw, ph, pw, ceil_mode)
    fg = f // groups
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                contrib = np.einsum("nfyx,fc->ncyx", np.float64(gy[:, g * fg:(g + 1) * fg]),
                                    np.float64(w[g * fg:(g + 1) * fg, :, i, j]))
                gxp[:, g * cg:(g + 1) * cg, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw] += contrib
    return gxp[:, :, ph:ph + h, pw:pw + wd]


def ref_weight_grad(x, gy, filter_size, stride=1, padding=0, groups=1, ceil_mode=False):
    (sh, sw), (ph, pw), (kh, kw) = _pair(stride), _pair(padding), _pair(filter_size)
    n, c, _, _ = x.shape
    f = gy.shape[1]
    cg, fg = c // groups, f // groups
    xp, ho, wo = _padded(np.float64(x), kh, kw, sh, sw, ph, pw, ceil_mode)
    gw = np.zeros((f, cg, kh, kw))
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                win = xp[:, g * cg:(g + 1) * cg, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
                gw[g * fg:(g + 1) * fg, :, i, j] = np.einsum(
                    "ncyx,nfyx->fc", win, np.float64(gy[:, g * fg:(g + 1) * fg]))
    return gw


# ---------------------------------------------------------------- cases
# (N, C, H, W, F, kh, kw, stride, padding, groups, ceil_mode)
CASES = {
    "conv1_11x11_s4": (2, 3, 63, 63, 12, 11, 11, 4, 2, 1, False),
    "conv2_5x5_p2_groups2": (2, 16, 13, 13, 10, 5, 5, 1, 2, 2, False),
    "conv3_3x3_p1": (3, 9, 7, 7, 11, 3, 3, 1, 1, 1, False),
    "batch1": (1, 5, 9, 9, 7, 3, 3, 1, 1, 1, False),
    "non_square": (2, 4, 11, 17, 6, 3, 5, (2, 1), (1, 2), 1, False),
    "odd_channels_groups3": (2, 9, 10, 8, 15, 4, 3, (1, 2), (0, 1), 3, False),
    "ceil_mode_overhang": (2, 3, 12, 13, 5, 3, 3, 2, 0, 1, True),
    "ceil_mode_padded_s4": (1, 3, 30, 29, 4, 11, 11, 4, 2, 1, True),
    "pointwise_1x1": (2, 7, 6, 5, 9, 1, 1, 1, 0, 1, False),
    "filter_covers_image": (2, 3, 5, 5, 4, 5, 5, 1, 0, 1, False),
}


def _data(rng, case):
    n, c, h, w, f, kh, kw, stride, padding, groups, ceil_mode = case
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((f, c // groups, kh, kw)).astype(np.float32)
    kw_args = dict(stride=stride, padding=padding, groups=groups, ceil_mode=ceil_mode)
    return x, wt, kw_args


def _random_case(rng):
    groups = int(rng.integers(1, 4))
    kh, kw = (int(v) for v in rng.integers(1, 7, size=2))
    sh, sw = (int(v) for v in rng.integers(1, 5, size=2))
    ph, pw = (int(v) for v in rng.integers(0, 3, size=2))
    h = int(rng.integers(max(1, kh - 2 * ph), 20))
    w = int(rng.integers(max(1, kw - 2 * pw), 20))
    return (int(rng.integers(1, 4)), groups * int(rng.integers(1, 5)), h, w,
            groups * int(rng.integers(1, 5)), kh, kw, (sh, sw), (ph, pw), groups,
            bool(rng.integers(0, 2)))


def _k(w):
    return int(np.prod(w.shape[1:]))


@pytest.mark.parametrize("name", CASES)
def test_filter_acts_matches_reference(rng, name):
    x, w, kw = _data(rng, CASES[name])
    b = rng.standard_normal(w.shape[0]).astype(np.float32)
    assert_close(ops.filter_acts(x, w, **kw), ref_conv(x, w, **kw), _k(w), what="filter_acts")
    assert_close(ops.filter_acts(x, w, bias=b, **kw), ref_conv(x, w, b, **kw), _k(w),
                 what="filter_acts with bias")


@pytest.mark.parametrize("name", CASES)
def test_img_acts_matches_reference(rng, name):
    x, w, kw = _data(rng, CASES[name])
    gy = rng.standard_normal(ops.filter_acts(x, w, **kw).shape).astype(np.float32)
    got = ops.img_acts(gy, w, image_size=x.shape[2:], **kw)
    assert_close(got, ref_img_grad(gy, w, x.shape[2:], **kw), w.shape[0] * w.shape[2] * w.shape[3],
                 what="img_acts")


@pytest.mark.parametrize("name", CASES)
def test_weight_acts_matches_reference(rng, name):
    x, w, kw = _data(rng, CASES[name])
    gy = rng.standard_normal(ops.filter_acts(x, w, **kw).shape).astype(np.float32)
    got = ops.weight_acts(x, gy, filter_size=w.shape[2:], **kw)
    assert_close(got, ref_weight_grad(x, gy, w.shape[2:], **kw), gy.shape[0] * gy.shape[2] * gy.shape[3],
                 what="weight_acts")


def test_random_geometries(rng):
    for _ in range(25):
        case = _random_case(rng)
        x, w, kw = _data(rng, case)
        y = ops.filter_acts(x, w, **kw)
        assert_close(y, ref_conv(x, w, **kw), _k(w), what=f"filter_acts {case}")
        gy = rng.standard_normal(y.shape).astype(np.float32)
        assert_close(ops.img_acts(gy, w, image_size=x.shape[2:], **kw),
                     ref_img_grad(gy, w, x.shape[2:], **kw), 100, what=f"img_acts {case}")
        assert_close(ops.weight_acts(x, gy, filter_size=w.shape[2:], **kw),
                     ref_weight_grad(x, gy, w.shape[2:], **kw), 100, what=f"weight_acts {case}")


def test_alexnet_conv1_full_size(rng):
    x = rng.standard_normal((2, 3, 224, 224)).astype(np.float32)
    w = rng.normal(0, 0.01, (96, 3, 11, 11)).astype(np.float32)
    y = ops.filter_acts(x, w, stride=4, padding=2)
    assert y.shape == (2, 96, 55, 55)
    assert_close(y, ref_conv(x, w, stride=4, padding=2), 363)


@pytest.mark.parametrize("name", ["conv1_11x11_s4", "odd_channels_groups3", "ceil_mode_overhang"])
def test_gradients_match_finite_differences(rng, name):
    """Finite differences of the float64 reference forward against the float32 undo kernels."""
    x, w, kw = _data(rng, CASES[name])
    x64, w64 = np.float64(x), np.float64(w)
    gy = rng.standard_normal(ops.filter_acts(x, w, **kw).shape)
    gx = ops.img_acts(gy.astype(np.float32), w, image_size=x.shape[2:], **kw)
    gw = ops.weight_acts(x, gy.astype(np.float32), filter_size=w.shape[2:], **kw)
    loss_x = lambda xv: np.sum(ref_conv(xv, w64, **kw) * gy)
    loss_w = lambda wv: np.sum(ref_conv(x64, wv, **kw) * gy)
    for idx in random_indices(rng, x.shape, 12):
        fd = central_difference(loss_x, x64, idx, 1e-3)
        assert abs(gx[idx] - fd) <= 1e-4 * (1 + abs(fd)), (idx, gx[idx], fd)
    for idx in random_indices(rng, w.shape, 12):
        fd = central_difference(loss_w, w64, idx, 1e-3)
        assert abs(gw[idx] - fd) <= 1e-4 * (1 + abs(fd)), (idx, gw[idx], fd)


@pytest.mark.parametrize("name", CASES)
def test_undo_passes_are_exact_adjoints(rng, name):
    """<filter_acts(x, w), g> == <x, img_acts(g, w)> == <w, weight_acts(x, g)>."""
    x, w, kw = _data(rng, CASES[name])
    y = ops.filter_acts(x, w, **kw)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx = ops.img_acts(gy, w, image_size=x.shape[2:], **kw)
    gw = ops.weight_acts(x, gy, filter_size=w.shape[2:], **kw)
    assert_adjoint(y, gy, (x, gx), (w, gw))


def test_bias_grad(rng):
    gy = rng.standard_normal((3, 7, 5, 6)).astype(np.float32)
    assert_close(ops.conv_bias_grad(gy), np.float64(gy).sum(axis=(0, 2, 3)), 90)
    out = rng.standard_normal(7).astype(np.float32)
    expect = 0.5 * np.float64(out) + 2.0 * np.float64(gy).sum(axis=(0, 2, 3))
    assert_close(ops.conv_bias_grad(gy, out=out, scale_targets=0.5, scale_output=2.0), expect, 90)


# ---------------------------------------------------------------- accumulate form
@pytest.mark.parametrize("name", ["conv2_5x5_p2_groups2", "pointwise_1x1", "ceil_mode_overhang"])
def test_accumulate_form(rng, name):
    x, w, kw = _data(rng, CASES[name])
    y = ref_conv(x, w, **kw)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx = ref_img_grad(gy, w, x.shape[2:], **kw)
    gw = ref_weight_grad(x, gy, w.shape[2:], **kw)
    calls = {
        "filter_acts": (lambda **a: ops.filter_acts(x, w, **kw, **a), y),
        "img_acts": (lambda **a: ops.img_acts(gy, w, image_size=x.shape[2:], **kw, **a), gx),
        "weight_acts": (lambda **a: ops.weight_acts(x, gy, filter_size=w.shape[2:], **kw, **a), gw),
    }
    for what, (call, ref) in calls.items():
        # scale_targets 0: out is never read, NaNs in it must vanish.
        out = np.full(ref.shape, np.nan, dtype=np.float32)
        assert call(out=out, scale_targets=0.0, scale_output=1.0) is out
        assert_close(out, ref, 500, what=f"{what} into NaN out")
        # 1/1: out += result.
        prev = rng.standard_normal(ref.shape).astype(np.float32)
        out = prev.copy()
        call(out=out, scale_targets=1.0, scale_output=1.0)
        assert_close(out, np.float64(prev) + ref, 500, what=f"{what} 1/1")
        # general scales.
        out = prev.copy()
        call(out=out, scale_targets=0.5, scale_output=-2.0)
        assert_close(out, 0.5 * np.float64(prev) - 2.0 * ref, 500, what=f"{what} 0.5/-2")


def test_conv3_sums_both_columns_without_copy(rng):
    """conv3 reads both columns: two accumulating calls equal one call on the concatenation."""
    a = rng.standard_normal((2, 6, 7, 7)).astype(np.float32)
    b = rng.standard_normal((2, 6, 7, 7)).astype(np.float32)
    w = rng.standard_normal((8, 12, 3, 3)).astype(np.float32)
    out = np.full((2, 8, 7, 7), np.nan, dtype=np.float32)
    ops.filter_acts(a, np.ascontiguousarray(w[:, :6]), padding=1, out=out, scale_targets=0.0)
    ops.filter_acts(b, np.ascontiguousarray(w[:, 6:]), padding=1, out=out, scale_targets=1.0)
    assert_close(out, ref_conv(np.concatenate([a, b], axis=1), w, padding=1), 108)


# ---------------------------------------------------------------- optional PyTorch oracle
@pytest.mark.parametrize("name", [n for n in CASES if not CASES[n][-1]])
def test_matches_torch(rng, name):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, w, kw = _data(rng, CASES[name])
    tx = torch.from_numpy(x).double().requires_grad_()
    tw = torch.from_numpy(w).double().requires_grad_()
    ty = F.conv2d(tx, tw, stride=kw["stride"], padding=kw["padding"], groups=kw["groups"])
    gy = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.from_numpy(gy).double())
    assert_close(ops.filter_acts(x, w, **kw), ty.detach().numpy(), _k(w))
    assert_close(ops.img_acts(gy, w, image_size=x.shape[2:], **kw), tx.grad.numpy(), 500)
    assert_close(ops.weight_acts(x, gy, filter_size=w.shape[2:], **kw), tw.grad.numpy(), 500)


# ---------------------------------------------------------------- bad input
def test_output_size_helper():
    assert ops.conv_output_size(224, 11, 4, 2) == 55
    assert ops.conv_output_size(27, 5, 1, 2) == 27
    assert ops.conv_output_size(12, 3, 2, 0) == 5
    assert ops.conv_output_size(12, 3, 2, 0, ceil_mode=True) == 6
    with pytest.raises(ValueError, match="larger than the padded input"):
        ops.conv_output_size(3, 5, 1, 0)


def test_bad_input_filter_acts(rng):
    x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    with pytest.raises(TypeError, match="images: expected dtype float32"):
        ops.filter_acts(x.astype(np.float64), w, groups=2)
    with pytest.raises(TypeError, match="images: expected a numpy.ndarray"):
        ops.filter_acts(x.tolist(), w, groups=2)
    with pytest.raises(ValueError, match=r"images: expected 4 dimensions \(N, C, H, W\)"):
        ops.filter_acts(x[0], w, groups=2)
    with pytest.raises(ValueError, match="images: expected a C-contiguous"):
        ops.filter_acts(x[:, :, ::2, ::2], w, groups=2)
    with pytest.raises(ValueError, match="filters: expected 4/2 = 2 input channels"):
        ops.filter_acts(x, w[:, :1].copy(), groups=2)
    with pytest.raises(ValueError, match="not divisible by groups=3"):
        ops.filter_acts(x, w, groups=3)
    with pytest.raises(ValueError, match="filters: a 9x9 window is larger than the padded input"):
        ops.filter_acts(x, rng.standard_normal((6, 4, 9, 9)).astype(np.float32))
    with pytest.raises(ValueError, match=r"stride: expected an int >= 1, got 0"):
        ops.filter_acts(x, w, groups=2, stride=0)
    with pytest.raises(ValueError, match=r"padding\[1\]: expected an int >= 0, got -1"):
        ops.filter_acts(x, w, groups=2, padding=(0, -1))
    with pytest.raises(ValueError, match="stride: expected an int or a"):
        ops.filter_acts(x, w, groups=2, stride=(1, 2, 3))
    with pytest.raises(TypeError, match="groups: expected an int"):
        ops.filter_acts(x, w, groups=2.0)
    with pytest.raises(ValueError, match=r"bias: expected shape \(6,\)"):
        ops.filter_acts(x, w, groups=2, bias=np.ones(5, np.float32))
    with pytest.raises(ValueError, match="out: expected shape"):
        ops.filter_acts(x, w, groups=2, out=np.empty((2, 6, 7, 7), np.float32))
    with pytest.raises(ValueError, match="scale_targets: a non-zero scale_targets"):
        ops.filter_acts(x, w, groups=2, scale_targets=1.0)
    with pytest.raises(ValueError, match="scale_output: expected a finite number"):
        ops.filter_acts(x, w, groups=2, scale_output=float("nan"))
    with pytest.raises(ValueError, match="images: expected a non-empty array"):
        ops.filter_acts(x[:0], w, groups=2)
    ro = np.empty((2, 6, 6, 6), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out: array is read-only"):
        ops.filter_acts(x, w, groups=2, out=ro)


def test_bad_input_img_and_weight_acts(rng):
    x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((2, 6, 6, 6)).astype(np.float32)
    with pytest.raises(ValueError, match="hid_grads: expected shape"):
        ops.img_acts(gy, w, image_size=9)
    with pytest.raises(ValueError, match="filters: expected 6 filters"):
        ops.img_acts(gy, w[:5].copy(), image_size=8)
    with pytest.raises(TypeError, match="image_size: expected an int"):
        ops.img_acts(gy, w, image_size="8")
    with pytest.raises(ValueError, match="image_size: expected an int >= 1"):
        ops.img_acts(gy, w, image_size=0)
    with pytest.raises(ValueError, match="hid_grads: expected shape"):
        ops.weight_acts(x, gy, filter_size=4)
    with pytest.raises(ValueError, match="hid_grads: expected 2 images"):
        ops.weight_acts(x, gy[:1].copy(), filter_size=3)
    with pytest.raises(ValueError, match="out: must not share memory with images"):
        ops.filter_acts(x, rng.standard_normal((4, 4, 1, 1)).astype(np.float32), out=x)


def test_core_backstop_rejects_inconsistent_geometry(rng):
    """A direct call into _core with wrong shapes raises instead of reading out of bounds."""
    from alexnet_ext import _core
    x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    w = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
    out = np.empty((2, 6, 6, 6), np.float32)
    with pytest.raises(ValueError, match="images: expected shape"):
        _core.cpu.filter_acts(x, w, None, out, conv_geometry((3, 4, 8, 8, 6, 3, 3, 1, 1, 0, 0, 1, 6, 6)), 0.0, 1.0)
    with pytest.raises(ValueError, match=r"conv geometry: \(ho, wo\) is not the output size"):
        _core.cpu.filter_acts(x, w, None, out, conv_geometry((2, 4, 8, 8, 6, 3, 3, 1, 1, 0, 0, 1, 9, 9)), 0.0, 1.0)
    with pytest.raises(TypeError):
        _core.cpu.filter_acts(x.astype(np.float64), w, None, out,
                              conv_geometry((2, 4, 8, 8, 6, 3, 3, 1, 1, 0, 0, 1, 6, 6)), 0.0, 1.0)
