"""softmax_log_loss / softmax_log_loss_undo / top_k_errors against float64 NumPy references."""
import math

import numpy as np
import pytest

from alexnet_ext import ops
from helpers import assert_close, central_difference, results_per_thread_count
from softmax_log_loss_refs import (CASES, cpu_case, make_data, ref_loss, ref_softmax,
                                   ref_top_k_errors)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_forward_matches_reference(rng, name, dtype):
    z, labels, loss, probs = cpu_case(rng, CASES[name], dtype)
    assert isinstance(loss, float)
    assert probs.dtype == np.float32 and probs.shape == z.shape
    assert_close(probs, ref_softmax(z), z.shape[1], what="probs")
    assert math.isclose(loss, ref_loss(z, labels), rel_tol=1e-6, abs_tol=1e-6)
    np.testing.assert_allclose(np.float64(probs).sum(axis=1), 1.0, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_undo_matches_reference(rng, name, dtype):
    z, labels = make_data(rng, CASES[name], dtype=dtype)
    n, k = z.shape
    _, probs = ops.softmax_log_loss(z, labels)
    onehot = np.eye(k)[labels]
    g = ops.softmax_log_loss_undo(probs, labels)
    np.testing.assert_allclose(g, (np.float64(probs) - onehot) / n, rtol=0, atol=1e-7)
    g2 = ops.softmax_log_loss_undo(probs, labels, scale=2.5)
    np.testing.assert_allclose(g2, (np.float64(probs) - onehot) * 2.5, rtol=0, atol=1e-6)
    np.testing.assert_allclose(g, (ref_softmax(z) - onehot) / n, rtol=0, atol=1e-6 / n)


@pytest.mark.parametrize("name", ["odd", "single", "batch1_k1000"])
def test_gradient_matches_finite_differences(rng, name):
    """FD of the float64 reference mean loss against the float32 undo."""
    z, labels = make_data(rng, CASES[name], scale=1.0)
    _, probs = ops.softmax_log_loss(z, labels)
    g = ops.softmax_log_loss_undo(probs, labels)
    z64 = np.float64(z)
    idx_all = list(np.ndindex(z.shape))
    picks = [idx_all[i] for i in rng.choice(len(idx_all), min(20, len(idx_all)), replace=False)]
    picks += [(i, int(labels[i])) for i in range(min(3, z.shape[0]))]  # the label entries too
    for idx in picks:
        fd = central_difference(lambda v: ref_loss(v, labels), z64, idx, 1e-4)
        assert abs(g[idx] - fd) <= 1e-5 * (1 + abs(fd)) + 1e-7, (idx, g[idx], fd)


def test_huge_logits_stay_finite(rng):
    n, k = 6, 50
    z = (1e4 * rng.standard_normal((n, k))).astype(np.float32)
    z[0] = 1e4  # all equal
    z[1, 3] = -3e38
    z[2, :] = -1e4
    labels = rng.integers(0, k, n)
    labels[3] = int(np.argmin(z[3]))  # the label's probability underflows to 0 in float32
    loss, probs = ops.softmax_log_loss(z, labels)
    assert math.isfinite(loss) and np.all(np.isfinite(probs))
    assert math.isclose(loss, ref_loss(z, labels), rel_tol=1e-6)
    np.testing.assert_allclose(probs[0], 1 / k, rtol=1e-6)
    assert probs[3, labels[3]] == 0.0  # yet its loss term is finite (about 1e4)
    np.testing.assert_allclose(np.float64(probs).sum(axis=1), 1.0, atol=1e-5)
    g = ops.softmax_log_loss_undo(probs, labels)
    assert np.all(np.isfinite(g))


def test_thread_count_does_not_matter(rng):
    z, labels = make_data(rng, (256, 1000))

    def loss_undo_errors():
        loss, probs = ops.softmax_log_loss(z, labels)
        return (loss, probs, ops.softmax_log_loss_undo(probs, labels),
                ops.top_k_errors(probs, labels, (1, 5)))

    res = results_per_thread_count(loss_undo_errors, (1, 2))
    assert res[0][0] == res[1][0] and res[0][3] == res[1][3]
    np.testing.assert_array_equal(res[0][1], res[1][1])
    np.testing.assert_array_equal(res[0][2], res[1][2])


def test_out_buffers_and_in_place(rng):
    z, labels = make_data(rng, (9, 31))
    loss, probs = ops.softmax_log_loss(z, labels)
    out = np.full(z.shape, np.nan, np.float32)
    loss2, p2 = ops.softmax_log_loss(z, labels, out=out)
    assert p2 is out and loss2 == loss
    np.testing.assert_array_equal(out, probs)
    g = ops.softmax_log_loss_undo(probs, labels)
    assert ops.softmax_log_loss_undo(out, labels, out=out) is out
    np.testing.assert_array_equal(out, g)


# ---------------------------------------------------------------- top-k
@pytest.mark.parametrize("name", CASES)
def test_top_k_matches_argsort_reference(rng, name):
    z, labels = make_data(rng, CASES[name])
    _, probs = ops.softmax_log_loss(z, labels)
    ks = (1, 2, 5, 13, 1000, 5000)
    got = ops.top_k_errors(probs, labels, ks)
    assert got == tuple(ref_top_k_errors(probs, labels, k) for k in ks)
    assert all(isinstance(v, int) for v in got)


def test_top_k_with_ties(rng):
    """Quantised scores make ties common: ties count in the label's favour."""
    n, k = 300, 10
    probs = rng.integers(0, 4, (n, k)).astype(np.float32)
    labels = rng.integers(0, k, n).astype(np.int32)
    ks = [1, 2, 3, 5, 10, 11]
    assert ops.top_k_errors(probs, labels, ks) == tuple(
        ref_top_k_errors(probs, labels, j) for j in ks)
    flat = np.ones((4, 6), np.float32)  # all tied: correct for every k
    assert ops.top_k_errors(flat, np.array([0, 1, 2, 5]), [1]) == (0,)


def test_top_k_by_hand():
    probs = np.array([[0.1, 0.6, 0.3],    # label 1 is first
                      [0.5, 0.2, 0.3],    # label 1 is third
                      [0.2, 0.3, 0.5],    # label 1 is second
                      [np.nan, 0.5, 0.5]], np.float32)  # label 0 has a NaN score: wrong
    labels = np.array([1, 1, 1, 0], np.int64)
    assert ops.top_k_errors(probs, labels, (1, 2, 3, 4)) == (3, 2, 1, 1)
    assert ops.top_k_errors(probs, labels) == (3, 1)  # default (1, 5): k=5 clamps to 3


# ---------------------------------------------------------------- optional PyTorch oracle
@pytest.mark.parametrize("name", ["odd", "alexnet_batch", "single"])
def test_matches_torch(rng, name):
    torch = pytest.importorskip("torch")
    z, labels = make_data(rng, CASES[name])
    tz = torch.from_numpy(z).double().requires_grad_()
    tl = torch.nn.functional.cross_entropy(tz, torch.from_numpy(labels))
    tl.backward()
    loss, probs = ops.softmax_log_loss(z, labels)
    assert math.isclose(loss, tl.item(), rel_tol=1e-6, abs_tol=1e-6)
    np.testing.assert_allclose(ops.softmax_log_loss_undo(probs, labels), tz.grad.numpy(),
                               rtol=0, atol=1e-6 / z.shape[0])
    assert_close(probs, torch.softmax(tz, 1).detach().numpy(), z.shape[1])


# ---------------------------------------------------------------- bad input
def test_bad_labels(rng):
    z, labels = make_data(rng, (4, 10))
    for bad, value in ((10, 10), (-1, -1), (2**40, 2**40)):
        l = labels.copy()
        l[2] = bad
        with pytest.raises(ValueError, match=rf"labels: labels\[2\] = {value} is outside \[0, 10\)"):
            ops.softmax_log_loss(z, l)
        _, probs = ops.softmax_log_loss(z, labels)
        with pytest.raises(ValueError, match=rf"labels\[2\] = {value} is outside"):
            ops.softmax_log_loss_undo(probs, l)
        with pytest.raises(ValueError, match=rf"labels\[2\] = {value} is outside"):
            ops.top_k_errors(probs, l)
    with pytest.raises(TypeError, match="labels: expected dtype int32 or int64, got float32"):
        ops.softmax_log_loss(z, labels.astype(np.float32))
    with pytest.raises(TypeError, match="labels: expected dtype int32 or int64, got uint8"):
        ops.softmax_log_loss(z, labels.astype(np.uint8))
    with pytest.raises(TypeError, match="labels: expected a numpy.ndarray"):
        ops.softmax_log_loss(z, labels.tolist())
    with pytest.raises(ValueError, match=r"labels: expected shape \(4,\) \(one per row of logits\)"):
        ops.softmax_log_loss(z, labels[:3])
    with pytest.raises(ValueError, match=r"labels: expected 1 dimensions"):
        ops.softmax_log_loss(z, labels.reshape(4, 1))


def test_bad_input(rng):
    z, labels = make_data(rng, (4, 10))
    with pytest.raises(TypeError, match="logits: expected dtype float32"):
        ops.softmax_log_loss(z.astype(np.float64), labels)
    with pytest.raises(ValueError, match=r"logits: expected 2 dimensions \(N, K\)"):
        ops.softmax_log_loss(z.reshape(4, 10, 1, 1), labels)
    with pytest.raises(ValueError, match="logits: expected a C-contiguous"):
        ops.softmax_log_loss(np.asfortranarray(z), labels)
    with pytest.raises(ValueError, match="out: must not share memory with logits"):
        ops.softmax_log_loss(z, labels, out=z)
    _, probs = ops.softmax_log_loss(z, labels)
    with pytest.raises(ValueError, match="scale: expected a finite number"):
        ops.softmax_log_loss_undo(probs, labels, scale=float("nan"))
    with pytest.raises(ValueError, match=r"out: expected shape \(4, 10\)"):
        ops.softmax_log_loss_undo(probs, labels, out=np.empty((4, 9), np.float32))
    with pytest.raises(ValueError, match="ks: expected a non-empty tuple"):
        ops.top_k_errors(probs, labels, ())
    with pytest.raises(ValueError, match="ks: expected a non-empty tuple"):
        ops.top_k_errors(probs, labels, 5)
    with pytest.raises(ValueError, match=r"ks\[1\]: expected an int >= 1, got 0"):
        ops.top_k_errors(probs, labels, (1, 0))
    with pytest.raises(TypeError, match=r"ks\[0\]: expected an int"):
        ops.top_k_errors(probs, labels, (1.0,))


def test_core_backstop(rng):
    from alexnet_ext import _core
    z, labels = make_data(rng, (4, 10))
    probs = np.empty_like(z)
    labels[1] = 99
    with pytest.raises(ValueError, match=r"labels\[1\] = 99 is outside \[0, 10\)"):
        _core.cpu.softmax_log_loss(z, labels, probs)
    with pytest.raises(ValueError, match=r"labels\[1\] = 99"):
        _core.cpu.label_ranks(z, labels.astype(np.int32), np.empty(4, np.int64))
    with pytest.raises(ValueError, match="labels: expected shape"):
        _core.cpu.softmax_log_loss(z, labels[:3], probs)
    with pytest.raises(TypeError, match="labels: expected dtype int32 or int64"):
        _core.cpu.softmax_log_loss(z, labels.astype(np.float32), probs)


def test_wait_false_changes_nothing_on_the_cpu(rng):
    z = rng.standard_normal((4, 6)).astype(np.float32)
    labels = rng.integers(0, 6, 4).astype(np.int64)
    loss, probs = ops.softmax_log_loss(z, labels, wait=False)
    assert isinstance(loss, float)
    assert loss == ops.softmax_log_loss(z, labels)[0]

