"""Host side of the bf16 dropout / fc / softmax log-loss / normalize_batch paths (the GPU side is
tests/test_bf16_fc_dropout_softmax_cuda.py): bfloat16 NumPy arrays and bfloat16 outputs are
refused with a TypeError naming the argument (by the Python wrappers and by the bindings
themselves), and dropout_undo's relu_mask fold on float32, bit for bit against dropout_undo followed
by relu_undo and against an independent NumPy reference (the same two float32 operations: one
product, then selects; exact, so no bound is needed).
"""
import ml_dtypes
import numpy as np
import pytest

from alexnet_ext import _core, ops
from dropout_refs import random_seed
from lowp_helpers import specials

BF16 = np.dtype(ml_dtypes.bfloat16)
SIZES = (1, 3, 4, 5, 7, 1027, 4099)


def assert_same_bits(got, want):
    np.testing.assert_array_equal(np.asarray(got).view(np.uint32), np.asarray(want).view(np.uint32))


# ---------------------------------------------------------------- relu_mask fold (float32)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("p", (0.0, 0.5, 0.9))
def test_relu_mask_fold_bit_for_bit(rng, n, p):
    x = specials(rng, (n,))
    r = ops.relu(x)  # the dropout's input, a ReLU output (NaN stays NaN)
    _, mask = ops.dropout(r, p=p, seed=random_seed(rng), offset=int(rng.integers(0, 2**40)))
    gy = specials(rng, (n,))
    got = ops.dropout_undo(gy, mask, p=p, relu_mask=r)
    want = ops.relu_undo(ops.dropout_undo(gy, mask, p=p), r)
    assert_same_bits(got, want)
    # independent: keep where kept and r > 0 (NaN compares False), the float32 product
    scale = np.float32(1.0 / (1.0 - p))
    with np.errstate(invalid="ignore"):
        ref = np.where((mask != 0) & (r > 0), gy * scale, np.float32(0))
    assert_same_bits(got, ref.astype(np.float32))


def test_relu_mask_in_place(rng):
    shape = (3, 5, 7)
    r = ops.relu(specials(rng, shape))
    _, mask = ops.dropout(r, p=0.5, seed=random_seed(rng))
    gy = specials(rng, shape)
    want = ops.relu_undo(ops.dropout_undo(gy, mask, p=0.5), r)
    g2 = gy.copy()
    assert ops.dropout_undo(g2, mask, p=0.5, relu_mask=r, out=g2) is g2
    assert_same_bits(g2, want)
    r2 = r.copy()
    assert ops.dropout_undo(gy, mask, p=0.5, relu_mask=r2, out=r2) is r2
    assert_same_bits(r2, want)
    # no relu_mask and every unit kept with positive input: the gradient times 1 passes
    ones = np.ones(shape, np.uint8)
    assert_same_bits(ops.dropout_undo(gy, ones, p=0.0, relu_mask=np.ones(shape, np.float32)), gy)


def test_relu_mask_bad_arguments(rng):
    gy = rng.standard_normal((4, 6)).astype(np.float32)
    mask = np.ones((4, 6), np.uint8)
    with pytest.raises(ValueError, match="relu_mask"):
        ops.dropout_undo(gy, mask, p=0.5, relu_mask=np.ones((4, 5), np.float32))
    with pytest.raises(TypeError, match="relu_mask"):
        ops.dropout_undo(gy, mask, p=0.5, relu_mask=np.ones((4, 6), np.float64))
    with pytest.raises(TypeError, match="relu_mask"):
        ops.dropout_undo(gy, mask, p=0.5, relu_mask=np.ones((4, 6), BF16))
    with pytest.raises(ValueError, match="out"):  # a shifted view of relu_mask
        big = np.ones(25, np.float32)
        ops.dropout_undo(gy, mask, p=0.5, relu_mask=big[:24].reshape(4, 6),
                         out=big[1:].reshape(4, 6))
    with pytest.raises(TypeError, match="relu_mask"):  # binding's own check
        _core.cpu.dropout_undo(gy, mask, np.empty_like(gy), 0.5, np.ones((4, 6), np.float64))


# ---------------------------------------------------------------- bf16 refused on the host
def _bf16(a):
    return np.asarray(a, np.float32).astype(BF16)


def test_dropout_refuses_bf16_on_host(rng):
    x = _bf16(rng.standard_normal(9))
    with pytest.raises(TypeError, match="^x: bfloat16 runs on the GPU only"):
        ops.dropout(x, p=0.5, seed=1)
    with pytest.raises(TypeError, match="^grad_y: bfloat16 runs on the GPU only"):
        ops.dropout_undo(x, np.ones(9, np.uint8), p=0.5)
    with pytest.raises(TypeError, match="^out: bfloat16"):
        ops.dropout(np.ones(9, np.float32), p=0.5, seed=1, out=x)
    # the bindings refuse on their own (with_real), naming the argument
    with pytest.raises(TypeError, match="^x: bfloat16 arrays run on the GPU only"):
        _core.cpu.dropout(x, x.copy(), np.empty(9, np.uint8), 0.5, 1, 0)
    with pytest.raises(TypeError, match="^grad_y: bfloat16 arrays run on the GPU only"):
        _core.cpu.dropout_undo(x, np.ones(9, np.uint8), x.copy(), 0.5)


def test_fc_refuses_bf16_on_host(rng):
    x, w = _bf16(rng.standard_normal((3, 5))), _bf16(rng.standard_normal((4, 5)))
    gy = _bf16(rng.standard_normal((3, 4)))
    with pytest.raises(TypeError, match="^x: bfloat16 runs on the GPU only"):
        ops.fc(x, w)
    with pytest.raises(TypeError, match="^grad_y: bfloat16 runs on the GPU only"):
        ops.fc_undo(gy, x, w)
    xf, wf = np.float32(x), np.float32(w)
    with pytest.raises(TypeError, match="^w: "):
        ops.fc(xf, w)
    with pytest.raises(TypeError, match="^out_dtype: a bfloat16 output needs bfloat16 operands"):
        ops.fc(xf, wf, out_dtype=BF16)
    with pytest.raises(TypeError, match="^out .bfloat16.: a bfloat16 output"):
        ops.fc(xf, wf, out=np.empty((3, 4), BF16))
    with pytest.raises(TypeError, match="^grad_x_dtype: a bfloat16 output"):
        ops.fc_undo(np.float32(gy), xf, wf, grad_x_dtype=BF16)
    with pytest.raises(TypeError, match="^out_dtype: expected None, numpy.float32 or bfloat16"):
        ops.fc(xf, wf, out_dtype=np.float64)
    with pytest.raises(TypeError, match="^out_dtype: expected None"):
        ops.fc(xf, wf, out_dtype="not a dtype")
    # explicit float32 is the default
    np.testing.assert_array_equal(ops.fc(xf, wf, out_dtype=np.float32), ops.fc(xf, wf))
    with pytest.raises(TypeError, match="^x: bfloat16 arrays run on the GPU only"):
        _core.cpu.fc_forward(x, w, None, np.empty((3, 4), np.float32), 0.0, 1.0)
    with pytest.raises(TypeError, match="^grad_y: bfloat16 arrays run on the GPU only"):
        _core.cpu.fc_grad_b(gy, np.empty(4, np.float32), 0.0, 1.0)


def test_softmax_refuses_bf16_on_host(rng):
    logits = _bf16(rng.standard_normal((3, 5)))
    labels = np.array([0, 4, 2], np.int64)
    with pytest.raises(TypeError, match="^logits: bfloat16 runs on the GPU only"):
        ops.softmax_log_loss(logits, labels)
    _, probs = ops.softmax_log_loss(np.float32(logits), labels)
    with pytest.raises(TypeError, match="^out_dtype: a bfloat16 output runs on the GPU only"):
        ops.softmax_log_loss_undo(probs, labels, out_dtype=BF16)
    with pytest.raises(TypeError, match="^out .bfloat16.: a bfloat16 output runs on the GPU only"):
        ops.softmax_log_loss_undo(probs, labels, out=np.empty((3, 5), BF16))
    with pytest.raises(TypeError, match="^logits: bfloat16 arrays run on the GPU only"):
        _core.cpu.softmax_log_loss(logits, labels, np.empty((3, 5), np.float32))
    with pytest.raises(TypeError, match="^out: bfloat16 arrays run on the GPU only"):
        _core.cpu.softmax_log_loss_undo(probs, labels, np.empty((3, 5), BF16), 1.0)


def test_normalize_batch_refuses_bf16_on_host(rng):
    x = rng.integers(0, 256, (2, 3, 4, 5), dtype=np.uint8)
    mean = rng.standard_normal((3, 4, 5)).astype(np.float32)
    with pytest.raises(TypeError, match="^out_dtype: a bfloat16 output runs on the GPU only"):
        ops.normalize_batch(x, mean, out_dtype=BF16)
    with pytest.raises(TypeError, match="^out_dtype: expected None"):
        ops.normalize_batch(x, mean, out_dtype=np.uint8)
    with pytest.raises(TypeError, match="^out: bfloat16 arrays run on the GPU only"):
        _core.cpu.normalize_batch(x, mean, None, None, 1.0, np.empty((2, 3, 4, 5), BF16))
