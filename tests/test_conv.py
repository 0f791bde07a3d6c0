"""filter_acts / img_acts / weight_acts / conv_bias_grad against float64 NumPy references."""
import numpy as np
import pytest

from alexnet_ext import ops
from helpers import assert_adjoint, assert_close, central_difference, random_indices
from helpers import conv_geometry
from conv_refs import CASES, make_data, random_case, ref_conv, ref_img_grad, ref_weight_grad
from conv_refs import undo_data


def _k(w):
    return int(np.prod(w.shape[1:]))


@pytest.mark.parametrize("name", CASES)
def test_filter_acts_matches_reference(rng, name):
    x, w, kw = make_data(rng, CASES[name])
    b = rng.standard_normal(w.shape[0]).astype(np.float32)
    assert_close(ops.filter_acts(x, w, **kw), ref_conv(x, w, **kw), _k(w), what="filter_acts")
    assert_close(ops.filter_acts(x, w, bias=b, **kw), ref_conv(x, w, b, **kw), _k(w),
                 what="filter_acts with bias")


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("which", ["img_acts", "weight_acts"])
def test_undo_passes_match_reference(rng, name, which):
    """imgActs against the float64 image gradient (sums of F*kh*kw terms), weightActs against the
    filter gradient (sums of N*Ho*Wo terms)."""
    x, w, kw, gy = undo_data(rng, CASES[name])
    if which == "img_acts":
        got = ops.img_acts(gy, w, image_size=x.shape[2:], **kw)
        ref, terms = ref_img_grad(gy, w, x.shape[2:], **kw), w.shape[0] * w.shape[2] * w.shape[3]
    else:
        got = ops.weight_acts(x, gy, filter_size=w.shape[2:], **kw)
        ref = ref_weight_grad(x, gy, w.shape[2:], **kw)
        terms = gy.shape[0] * gy.shape[2] * gy.shape[3]
    assert_close(got, ref, terms, what=which)


def test_random_geometries(rng):
    for _ in range(25):
        case = random_case(rng)
        x, w, kw = make_data(rng, case)
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
    x, w, kw = make_data(rng, CASES[name])
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
    x, w, kw = make_data(rng, CASES[name])
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
    x, w, kw = make_data(rng, CASES[name])
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
    x, w, kw = make_data(rng, CASES[name])
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
