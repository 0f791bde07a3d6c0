"""fc / fc_undo against float64 NumPy references."""
import numpy as np
import pytest

from alexnet_ext import ops
from helpers import (assert_adjoint, assert_close, central_difference, random_indices,
                     results_per_thread_count)
from fc_refs import CASES, assert_undo_matches_reference, make_data, ref_fc, ref_fc_undo, undo_data


@pytest.mark.parametrize("name", CASES)
def test_forward_matches_reference(rng, name):
    x, w, b = make_data(rng, CASES[name])
    d = x.shape[1]
    assert_close(ops.fc(x, w), ref_fc(x, w), d, what="fc")
    y = ops.fc(x, w, b)
    assert y.shape == (x.shape[0], w.shape[0]) and y.dtype == np.float32
    assert_close(y, ref_fc(x, w, b), d, what="fc with bias")


@pytest.mark.parametrize("name", CASES)
def test_undo_matches_reference(rng, name):
    x, w, gy = undo_data(rng, CASES[name])
    gx, gw, gb = ops.fc_undo(gy, x, w)
    assert_undo_matches_reference((gx, gw, gb), gy, x, w)
    none, gw2, gb2 = ops.fc_undo(gy, x, w, need_grad_x=False)
    assert none is None
    np.testing.assert_array_equal(gw2, gw)
    np.testing.assert_array_equal(gb2, gb)


def test_random_shapes(rng):
    for _ in range(20):
        n, d, f = (int(v) for v in rng.integers(1, 70, 3))
        x, w, b = make_data(rng, (n, d, f))
        assert_close(ops.fc(x, w, b), ref_fc(x, w, b), d, what=f"fc {(n, d, f)}")
        gy = rng.standard_normal((n, f)).astype(np.float32)
        for got, ref, red in zip(ops.fc_undo(gy, x, w), ref_fc_undo(gy, x, w), (f, n, n)):
            assert_close(got, ref, red, what=f"fc_undo {(n, d, f)}")


@pytest.mark.parametrize("name", ["odd", "batch1", "parallel_slabs"])
def test_gradients_match_finite_differences(rng, name):
    """FD of the float64 reference forward against the float32 undo kernel."""
    x, w, b = make_data(rng, CASES[name])
    x64, w64, b64 = np.float64(x), np.float64(w), np.float64(b)
    gy = rng.standard_normal((x.shape[0], w.shape[0]))
    gx, gw, gb = ops.fc_undo(gy.astype(np.float32), x, w)
    checks = [
        (lambda v: np.sum(ref_fc(v, w64, b64) * gy), x64, gx),
        (lambda v: np.sum(ref_fc(x64, v, b64) * gy), w64, gw),
        (lambda v: np.sum(ref_fc(x64, w64, v) * gy), b64, gb),
    ]
    for loss, at, grad in checks:
        for idx in random_indices(rng, at.shape, 10):
            fd = central_difference(loss, at, idx, 1e-3)
            assert abs(grad[idx] - fd) <= 1e-4 * (1 + abs(fd)), (idx, grad[idx], fd)


def test_adjoint_identities(rng):
    x, w, _ = make_data(rng, CASES["parallel_slabs"])
    y = ops.fc(x, w)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx, gw, _ = ops.fc_undo(gy, x, w)
    assert_adjoint(y, gy, (x, gx), (w, gw))


def test_activation_reshaped_from_nchw(rng):
    """pool5 (N, 256, 6, 6) into fc6 is x.reshape(N, -1): a view, no copy."""
    a = rng.standard_normal((2, 256, 6, 6)).astype(np.float32)
    w = rng.normal(0, 0.01, (64, 9216)).astype(np.float32)
    x = a.reshape(2, -1)
    assert np.shares_memory(x, a)
    assert_close(ops.fc(x, w), np.einsum("nchw,fchw->nf", np.float64(a),
                                         np.float64(w).reshape(64, 256, 6, 6)), 9216)


def test_thread_counts_agree(rng):
    x, w, b = make_data(rng, (64, 600, 300))
    gy = rng.standard_normal((64, 300)).astype(np.float32)
    res = results_per_thread_count(lambda: (ops.fc(x, w, b),) + ops.fc_undo(gy, x, w), (1, 2, 3))
    refs = (ref_fc(x, w, b),) + ref_fc_undo(gy, x, w)
    for r in res:
        for got, ref, red in zip(r, refs, (600, 300, 64, 64)):
            assert_close(got, ref, red)


# ---------------------------------------------------------------- accumulate form
def test_forward_accumulate_form(rng):
    x, w, b = make_data(rng, CASES["parallel_slabs"])
    ref = ref_fc(x, w, b)
    out = np.full(ref.shape, np.nan, np.float32)
    assert ops.fc(x, w, b, out=out) is out
    assert_close(out, ref, x.shape[1], what="into NaN out")
    prev = rng.standard_normal(ref.shape).astype(np.float32)
    out = prev.copy()
    ops.fc(x, w, b, out=out, scale_targets=0.5, scale_output=-2.0)
    assert_close(out, 0.5 * np.float64(prev) - 2.0 * ref, x.shape[1], what="0.5/-2")


def test_undo_accumulate_form(rng):
    x, w, _ = make_data(rng, CASES["odd"])
    gy = rng.standard_normal((x.shape[0], w.shape[0])).astype(np.float32)
    refs = ref_fc_undo(gy, x, w)
    outs = [np.full(r.shape, np.nan, np.float32) for r in refs]
    got = ops.fc_undo(gy, x, w, grad_x_out=outs[0], grad_w_out=outs[1], grad_b_out=outs[2])
    for g, o, r in zip(got, outs, refs):
        assert g is o
        assert_close(o, r, 50)
    prev = [rng.standard_normal(r.shape).astype(np.float32) for r in refs]
    outs = [p.copy() for p in prev]
    ops.fc_undo(gy, x, w, grad_x_out=outs[0], grad_w_out=outs[1], grad_b_out=outs[2],
                scale_targets=1.0, scale_output=0.25)
    for o, p, r in zip(outs, prev, refs):
        assert_close(o, np.float64(p) + 0.25 * r, 50)


def test_two_columns_sum_into_one_buffer(rng):
    """fc6 reads both columns: two accumulating calls equal one call on the concatenation."""
    xa = rng.standard_normal((4, 30)).astype(np.float32)
    xb = rng.standard_normal((4, 20)).astype(np.float32)
    w = rng.standard_normal((11, 50)).astype(np.float32)
    out = np.full((4, 11), np.nan, np.float32)
    ops.fc(xa, np.ascontiguousarray(w[:, :30]), out=out)
    ops.fc(xb, np.ascontiguousarray(w[:, 30:]), out=out, scale_targets=1.0)
    assert_close(out, ref_fc(np.concatenate([xa, xb], axis=1), w), 50)
    # backward: the weight gradients of two half-batches sum into one buffer
    gy = rng.standard_normal((4, 11)).astype(np.float32)
    x = np.concatenate([xa, xb], axis=1)
    gw, gb = np.empty((11, 50), np.float32), np.empty(11, np.float32)
    ops.fc_undo(gy[:2].copy(), x[:2].copy(), w, need_grad_x=False, grad_w_out=gw, grad_b_out=gb)
    ops.fc_undo(gy[2:].copy(), x[2:].copy(), w, need_grad_x=False, grad_w_out=gw, grad_b_out=gb,
                scale_targets=1.0)
    _, rw, rb = ref_fc_undo(gy, x, w)
    assert_close(gw, rw, 4)
    assert_close(gb, rb, 4)


# ---------------------------------------------------------------- optional PyTorch oracle
@pytest.mark.parametrize("name", ["odd", "fc8_like", "large_d_small_n"])
def test_matches_torch(rng, name):
    torch = pytest.importorskip("torch")
    x, w, b = make_data(rng, CASES[name])
    tx = torch.from_numpy(x).double().requires_grad_()
    tw = torch.from_numpy(w).double().requires_grad_()
    tb = torch.from_numpy(b).double().requires_grad_()
    ty = torch.nn.functional.linear(tx, tw, tb)
    gy = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.from_numpy(gy).double())
    n, d = x.shape
    assert_close(ops.fc(x, w, b), ty.detach().numpy(), d)
    gx, gw, gb = ops.fc_undo(gy, x, w)
    assert_close(gx, tx.grad.numpy(), w.shape[0])
    assert_close(gw, tw.grad.numpy(), n)
    assert_close(gb, tb.grad.numpy(), n)


# ---------------------------------------------------------------- bad input
def test_bad_input_fc(rng):
    x, w, b = make_data(rng, (3, 7, 5))
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        ops.fc(x.astype(np.float64), w)
    with pytest.raises(ValueError, match=r"x: expected 2 dimensions \(N, D\); pass a \(N, C, H, W\)"):
        ops.fc(x.reshape(3, 7, 1, 1), w)
    with pytest.raises(ValueError, match=r"w: expected 2 dimensions \(F, D\)"):
        ops.fc(x, w.reshape(5, 7, 1, 1))
    with pytest.raises(ValueError, match=r"w: expected \(F, 7\)"):
        ops.fc(x, w[:, :6].copy())
    with pytest.raises(ValueError, match="w: expected a C-contiguous"):
        ops.fc(x, np.asfortranarray(w))
    with pytest.raises(ValueError, match=r"b: expected shape \(5,\)"):
        ops.fc(x, w, b[:4])
    with pytest.raises(TypeError, match="b: expected dtype float32"):
        ops.fc(x, w, b.astype(np.float64))
    with pytest.raises(ValueError, match=r"out: expected shape \(3, 5\)"):
        ops.fc(x, w, out=np.empty((5, 3), np.float32))
    with pytest.raises(ValueError, match="scale_targets: a non-zero scale_targets"):
        ops.fc(x, w, scale_targets=1.0)
    with pytest.raises(ValueError, match="scale_output: expected a finite number"):
        ops.fc(x, w, scale_output=float("inf"))
    with pytest.raises(ValueError, match="out: must not share memory with x"):
        sq = rng.standard_normal((3, 3)).astype(np.float32)
        ops.fc(sq, sq, out=sq)
    with pytest.raises(ValueError, match="x: expected a non-empty array"):
        ops.fc(x[:0], w)


def test_bad_input_fc_undo(rng):
    x, w, _ = make_data(rng, (3, 7, 5))
    gy = rng.standard_normal((3, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="x: expected 3 rows to match grad_y's batch of 3"):
        ops.fc_undo(gy, x[:2].copy(), w)
    with pytest.raises(ValueError, match=r"w: expected shape \(5, 7\)"):
        ops.fc_undo(gy, x, w[:4].copy())
    with pytest.raises(ValueError, match=r"grad_y: expected 2 dimensions \(N, F\)"):
        ops.fc_undo(gy.reshape(-1), x, w)
    with pytest.raises(TypeError, match="need_grad_x: expected a bool"):
        ops.fc_undo(gy, x, w, need_grad_x=1)
    with pytest.raises(ValueError, match="grad_x_out: given, but need_grad_x is False"):
        ops.fc_undo(gy, x, w, need_grad_x=False, grad_x_out=np.empty((3, 7), np.float32))
    with pytest.raises(ValueError, match=r"grad_w_out: expected shape \(5, 7\)"):
        ops.fc_undo(gy, x, w, grad_w_out=np.empty((7, 5), np.float32))
    with pytest.raises(ValueError, match="scale_targets: a non-zero scale_targets"):
        ops.fc_undo(gy, x, w, grad_x_out=np.empty((3, 7), np.float32),
                    grad_w_out=np.empty((5, 7), np.float32), scale_targets=1.0)
    with pytest.raises(ValueError, match="grad_x_out: must not share memory with x"):
        ops.fc_undo(gy, x, w, grad_x_out=x)
    buf = np.empty(100, np.float32)
    with pytest.raises(ValueError, match="grad_w_out: must not share memory with grad_b_out"):
        ops.fc_undo(gy, x, w, grad_w_out=buf[:35].reshape(5, 7), grad_b_out=buf[30:35])


def test_core_backstop(rng):
    from alexnet_ext import _core
    x, w, _ = make_data(rng, (3, 7, 5))
    with pytest.raises(ValueError, match=r"out: expected shape \(3, 5\)"):
        _core.cpu.fc_forward(x, w, None, np.empty((3, 4), np.float32), 0.0, 1.0)
    with pytest.raises(ValueError, match=r"w: expected shape \(5, 7\)"):
        _core.cpu.fc_forward(x, w[:, :6].copy(), None, np.empty((3, 5), np.float32), 0.0, 1.0)
    with pytest.raises(ValueError, match=r"bias: expected shape"):
        _core.cpu.fc_forward(x, w, np.ones(4, np.float32), np.empty((3, 5), np.float32), 0.0, 1.0)
    with pytest.raises(ValueError, match=r"x: expected shape \(2, 7\)"):
        _core.cpu.fc_grad_w(np.empty((2, 5), np.float32), x, np.empty((5, 7), np.float32), 0.0, 1.0)
