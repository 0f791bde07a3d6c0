"""response_norm / response_norm_undo against float64 NumPy references."""
import numpy as np
import pytest

import alexnet_ext
from alexnet_ext import ops
from helpers import assert_close, central_difference, random_indices, results_per_thread_count
from helpers import assert_rejects_bad_nchw
from response_norm_refs import CASES, HYPER, forward_case, make_data, ref_lrn, ref_lrn_grad


@pytest.mark.parametrize("alpha_over_size", [False, True])
@pytest.mark.parametrize("name", CASES)
def test_forward_matches_reference(rng, name, alpha_over_size):
    x, size, kw, y, d = forward_case(rng, CASES[name], alpha_over_size)
    ry, rd = ref_lrn(x, **kw)
    assert y.dtype == d.dtype == np.float32
    assert_close(d, rd, size, what="denoms")
    assert_close(y, ry, size, what="y")


@pytest.mark.parametrize("alpha_over_size", [False, True])
@pytest.mark.parametrize("name", CASES)
def test_backward_matches_reference(rng, name, alpha_over_size):
    x, size, kw, y, d = forward_case(rng, CASES[name], alpha_over_size)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    assert_close(ops.response_norm_undo(gy, x, y, d, **kw), ref_lrn_grad(gy, x, **kw), 4 * size,
                 what="grad_x")


@pytest.mark.parametrize("beta", [0.75, 0.5, 1.0, 0.0, 2.3])
def test_other_exponents(rng, beta):
    """beta = 0.75 has its own code path; the others go through pow."""
    x, size = make_data(rng, (2, 8, 5, 6, 5))
    kw = dict(size=size, k=1.5, alpha=0.3, beta=beta)
    y, d = ops.response_norm(x, **kw)
    assert_close(y, ref_lrn(x, **kw)[0], size, what="y")
    gy = rng.standard_normal(x.shape).astype(np.float32)
    assert_close(ops.response_norm_undo(gy, x, y, d, **kw), ref_lrn_grad(gy, x, **kw), 4 * size)


def test_paper_hyper_parameters_on_relu_scale_activations(rng):
    """conv2-like input: ReLU outputs large enough for k + 1e-4 * sum to differ clearly from k."""
    x = np.maximum(rng.normal(0, 40, (2, 96, 27, 27)), 0).astype(np.float32)
    y, d = ops.response_norm(x)
    ry, rd = ref_lrn(x)
    assert np.median(rd) > 2.2  # the normalisation is doing something
    assert_close(d, rd, 5)
    assert_close(y, ry, 5)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    assert_close(ops.response_norm_undo(gy, x, y, d), ref_lrn_grad(gy, x), 20)


def _float32_running_denoms(x, size, k, alpha):
    """What a float32 running window sum would give (the failure the kernel must avoid)."""
    c = x.shape[1]
    s = np.zeros(x[:, 0].shape, np.float32)
    out = np.empty(x.shape, np.float32)
    for j in range(min((size - 1) // 2, c)):
        s += x[:, j] ** 2
    for i in range(c):
        if i + (size - 1) // 2 < c:
            s += x[:, i + (size - 1) // 2] ** 2
        if i - size // 2 - 1 >= 0:
            s -= x[:, i - size // 2 - 1] ** 2
        out[:, i] = np.float32(k) + np.float32(alpha) * s
    return out


def test_running_sum_does_not_drift(rng):
    """Blocks of huge channels between moderate ones, paper hyper-parameters: each denom must be
    right to float32 precision on its own, with no residue of the huge squares left behind."""
    c = 240
    mag = np.where(np.arange(c) % 40 < 8, 2e4, 30.0)
    x = (mag[None, :, None, None] * rng.uniform(0.2, 1.5, (2, c, 3, 70))).astype(np.float32)
    y, d = ops.response_norm(x)
    ry, rd = ref_lrn(x)
    naive = np.abs(_float32_running_denoms(x, 5, 2.0, 1e-4) / rd - 1).max()
    assert naive > 1e-4, "the data should defeat a float32 running sum"
    assert np.abs(d / rd - 1).max() < 1e-6
    assert np.abs(y / ry - 1).max() < 1e-6
    gy = rng.standard_normal(x.shape).astype(np.float32)
    gx = ops.response_norm_undo(gy, x, y, d)
    rgx = ref_lrn_grad(gy, x)
    # channel by channel: gradient sizes differ by orders of magnitude between the blocks
    err = np.abs(gx - rgx).max(axis=(0, 2, 3)) / np.abs(rgx).max(axis=(0, 2, 3))
    assert err.max() < 1e-5, err.max()


@pytest.mark.parametrize("name", ["size2_even", "size5_paper", "size_gt_channels", "one_channel"])
@pytest.mark.parametrize("alpha_over_size", [False, True])
def test_gradient_matches_finite_differences(rng, name, alpha_over_size):
    """Finite differences of the float64 reference forward against the float32 undo kernel."""
    x, size = make_data(rng, CASES[name], scale=1.5)
    kw = dict(size=size, alpha_over_size=alpha_over_size, **HYPER)
    y, d = ops.response_norm(x, **kw)
    gy = rng.standard_normal(x.shape)
    gx = ops.response_norm_undo(gy.astype(np.float32), x, y, d, **kw)
    x64 = np.float64(x)
    loss = lambda xv: np.sum(ref_lrn(xv, **kw)[0] * gy)
    for idx in random_indices(rng, x.shape, 15):
        fd = central_difference(loss, x64, idx, 1e-4)
        assert abs(gx[idx] - fd) <= 1e-4 * (1 + abs(fd)), (idx, gx[idx], fd)


def test_undo_leaves_inputs_unchanged(rng):
    x, size = make_data(rng, CASES["size5_paper"])
    x0 = x.copy()
    y, d = ops.response_norm(x, size=size, **HYPER)
    assert np.array_equal(x, x0)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    copies = [a.copy() for a in (gy, x, y, d)]
    gx = ops.response_norm_undo(gy, x, y, d, size=size, **HYPER)
    for a, a0, name in zip((gy, x, y, d), copies, ("grad_y", "x", "y", "denoms")):
        assert np.array_equal(a, a0), f"{name} was modified"
    for a in (gy, x, y, d):
        assert not np.may_share_memory(gx, a)


def test_deterministic_across_thread_counts(rng):
    x, size = make_data(rng, (3, 10, 19, 23, 5))
    gy = rng.standard_normal(x.shape).astype(np.float32)

    def norm_and_undo():
        y, d = ops.response_norm(x, size=size, **HYPER)
        return y, d, ops.response_norm_undo(gy, x, y, d, size=size, **HYPER)

    runs = results_per_thread_count(norm_and_undo, (1, max(2, alexnet_ext.get_num_threads())))
    for a, b in zip(*runs):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@np.errstate(invalid="ignore")  # inf * 0 in the reference
def test_nonfinite_input_reaches_only_its_windows(rng, bad):
    """A NaN or inf in channel 3 affects exactly the channels whose windows hold it, and no
    later channel (a running sum must not keep it after it has left the window)."""
    x, size = make_data(rng, (1, 9, 3, 3, 3))
    x[0, 3, 1, 1] = bad
    y, d = ops.response_norm(x, size=size, **HYPER)
    ry, rd = ref_lrn(x, size=size, **HYPER)
    hit = [2, 3, 4]  # window(i) holds channel 3 for i = 2, 3, 4 (size 3)
    assert not np.isfinite(d[0, hit, 1, 1]).any()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ry))
    mask = np.ones(x.shape, bool)
    mask[0, hit, 1, 1] = False
    assert_close(d[mask], rd[mask], size)
    assert_close(y[mask], ry[mask], size)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    gx = ops.response_norm_undo(gy, x, y, d, size=size, **HYPER)
    # grad_x[j] reads y, denoms of channels j-1..j+1: channels 1..5 at that pixel are spoiled
    mask[0, 1:6, 1, 1] = False
    assert_close(gx[mask], ref_lrn_grad(gy, x, size=size, **HYPER)[mask], 4 * size)


# ---------------------------------------------------------------- optional PyTorch oracle
@pytest.mark.parametrize("name", CASES)
def test_matches_torch(rng, name):
    torch = pytest.importorskip("torch")
    x, size = make_data(rng, CASES[name])
    k, alpha, beta = HYPER["k"], HYPER["alpha"], HYPER["beta"]
    gy = rng.standard_normal(x.shape).astype(np.float32)
    for torch_alpha, ours in ((alpha, dict(alpha=alpha, alpha_over_size=True)),
                              (alpha * size, dict(alpha=alpha, alpha_over_size=False))):
        tx = torch.from_numpy(x).double().requires_grad_()
        ty = torch.nn.LocalResponseNorm(size, torch_alpha, beta, k)(tx)
        ty.backward(torch.from_numpy(gy).double())
        y, d = ops.response_norm(x, size=size, k=k, beta=beta, **ours)
        assert_close(y, ty.detach().numpy(), size, what=f"y {ours}")
        assert_close(ops.response_norm_undo(gy, x, y, d, size=size, k=k, beta=beta, **ours),
                     tx.grad.numpy(), 4 * size, what=f"grad_x {ours}")


# ---------------------------------------------------------------- bad input
def test_bad_input_response_norm(rng):
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    assert_rejects_bad_nchw(ops.response_norm, x, x[:, ::2], x[:0])
    with pytest.raises(ValueError, match="size: expected an int >= 1, got 0"):
        ops.response_norm(x, size=0)
    with pytest.raises(TypeError, match="size: expected an int"):
        ops.response_norm(x, size=5.0)
    with pytest.raises(ValueError, match=r"k: expected a number > 0.0, got 0.0"):
        ops.response_norm(x, k=0)
    with pytest.raises(ValueError, match=r"k: expected a number > 0.0"):
        ops.response_norm(x, k=-2.0)
    with pytest.raises(ValueError, match=r"k: expected a number >= 1.17549e-38"):
        ops.response_norm(x, k=1e-50)
    with pytest.raises(ValueError, match=r"alpha: expected a number >= 0.0"):
        ops.response_norm(x, alpha=-1e-4)
    with pytest.raises(ValueError, match="alpha: expected a finite number"):
        ops.response_norm(x, alpha=float("inf"))
    with pytest.raises(ValueError, match=r"beta: expected a number >= 0.0"):
        ops.response_norm(x, beta=-0.75)
    with pytest.raises(ValueError, match="beta: expected a finite number"):
        ops.response_norm(x, beta=float("nan"))
    with pytest.raises(TypeError, match="beta: expected a number"):
        ops.response_norm(x, beta="0.75")
    with pytest.raises(TypeError, match="alpha_over_size: expected a bool"):
        ops.response_norm(x, alpha_over_size=1)


def test_bad_input_response_norm_undo(rng):
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    y, d = ops.response_norm(x)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    other = rng.standard_normal((2, 4, 5, 6)).astype(np.float32)
    with pytest.raises(ValueError, match=r"x: expected shape \(2, 4, 5, 5\) \(the shape of grad_y\)"):
        ops.response_norm_undo(gy, other, y, d)
    with pytest.raises(ValueError, match=r"y: expected shape \(2, 4, 5, 5\)"):
        ops.response_norm_undo(gy, x, other, d)
    with pytest.raises(ValueError, match=r"denoms: expected shape \(2, 4, 5, 5\)"):
        ops.response_norm_undo(gy, x, y, other)
    with pytest.raises(TypeError, match="grad_y: expected dtype float32"):
        ops.response_norm_undo(gy.astype(np.float16), x, y, d)
    with pytest.raises(TypeError, match="denoms: expected dtype float32"):
        ops.response_norm_undo(gy, x, y, d.astype(np.float64))
    with pytest.raises(ValueError, match=r"y: expected 4 dimensions"):
        ops.response_norm_undo(gy, x, y[0], d)
    with pytest.raises(ValueError, match="size: expected an int >= 1"):
        ops.response_norm_undo(gy, x, y, d, size=-1)
    with pytest.raises(ValueError, match="k: expected a number > 0.0"):
        ops.response_norm_undo(gy, x, y, d, k=0.0)


def test_core_backstop(rng):
    """A direct call into _core with wrong shapes or values raises instead of reading out of bounds."""
    from alexnet_ext import _core
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    small = np.empty((2, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match="y: expected shape"):
        _core.cpu.response_norm(x, small, x.copy(), 5, 2.0, 1e-4, 0.75, False)
    with pytest.raises(ValueError, match="size: expected an int >= 1"):
        _core.cpu.response_norm(x, x.copy(), x.copy(), 0, 2.0, 1e-4, 0.75, False)
    with pytest.raises(ValueError, match="k: expected a finite number > 0"):
        _core.cpu.response_norm(x, x.copy(), x.copy(), 5, float("nan"), 1e-4, 0.75, False)
    with pytest.raises(ValueError, match="denoms: expected shape"):
        _core.cpu.response_norm_undo(x, x, x, small, x.copy(), 5, 2.0, 1e-4, 0.75, False)
    with pytest.raises(TypeError):
        _core.cpu.response_norm(x.astype(np.float64), x.copy(), x.copy(), 5, 2.0, 1e-4, 0.75, False)
