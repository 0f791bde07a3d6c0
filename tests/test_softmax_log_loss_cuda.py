"""softmax_log_loss / softmax_log_loss_undo / top_k_errors on the GPU against the CPU kernels and
the float64 references of test_softmax_log_loss.py."""
import math

import numpy as np
import pytest

from alexnet_ext import _core, ops
from alexnet_ext import cuda as C
from cuda_helpers import dev
from helpers import assert_close
from softmax_log_loss_refs import (CASES, cpu_case, make_data, ref_loss, ref_softmax,
                                   ref_top_k_errors)

cuda = pytest.mark.cuda


@cuda
@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_forward_matches_cpu_and_reference(rng, name, dtype):
    z, labels, loss, probs = cpu_case(rng, CASES[name], dtype)
    dloss, dprobs = ops.softmax_log_loss(dev(z), dev(labels))
    assert isinstance(dloss, float) and C.is_device_array(dprobs)
    p = dprobs.get()
    assert_close(p, ref_softmax(z), z.shape[1], what="probs")
    np.testing.assert_allclose(p, probs, rtol=4e-6, atol=1e-30)  # expf: a few ulps apart
    assert math.isclose(dloss, ref_loss(z, labels), rel_tol=1e-6, abs_tol=1e-6)
    assert math.isclose(dloss, loss, rel_tol=1e-6, abs_tol=1e-7)


@cuda
def test_loss_is_deterministic(rng):
    z, labels = make_data(rng, (256, 1000))
    dz, dl = dev(z), dev(labels)
    runs = [ops.softmax_log_loss(dz, dl) for _ in range(3)]
    assert runs[0][0] == runs[1][0] == runs[2][0]
    np.testing.assert_array_equal(runs[0][1].get(), runs[2][1].get())


@cuda
@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_undo_equals_cpu(rng, name, dtype):
    """Given the same probs the undo is elementwise arithmetic: the CPU's bits."""
    z, labels, _, probs = cpu_case(rng, CASES[name], dtype)
    for scale in (None, 2.5):
        g = ops.softmax_log_loss_undo(probs, labels, scale=scale)
        gd = ops.softmax_log_loss_undo(dev(probs), dev(labels), scale=scale)
        np.testing.assert_array_equal(gd.get(), g)
    d = dev(probs)  # in place
    assert ops.softmax_log_loss_undo(d, dev(labels), out=d) is d
    np.testing.assert_array_equal(d.get(), ops.softmax_log_loss_undo(probs, labels))


@cuda
def test_huge_logits_stay_finite(rng):
    n, k = 6, 50
    z = (1e4 * rng.standard_normal((n, k))).astype(np.float32)
    z[0] = 1e4
    z[1, 3] = -3e38
    z[2, :] = -1e4
    labels = rng.integers(0, k, n)
    labels[3] = int(np.argmin(z[3]))
    loss, probs = ops.softmax_log_loss(dev(z), dev(labels))
    p = probs.get()
    assert math.isfinite(loss) and np.all(np.isfinite(p))
    assert math.isclose(loss, ref_loss(z, labels), rel_tol=1e-6)
    np.testing.assert_allclose(p[0], 1 / k, rtol=1e-6)
    assert p[3, labels[3]] == 0.0


@cuda
def test_nan_row_is_nan_like_the_cpu(rng):
    z, labels = make_data(rng, (4, 9))
    z[1, 0] = np.nan  # the CPU's max scan starts here
    z[2, 5] = np.nan
    loss, probs = ops.softmax_log_loss(z, labels)
    dloss, dprobs = ops.softmax_log_loss(dev(z), dev(labels))
    assert math.isnan(loss) and math.isnan(dloss)
    np.testing.assert_array_equal(np.isnan(dprobs.get()), np.isnan(probs))


@cuda
@pytest.mark.parametrize("name", CASES)
def test_top_k_equals_cpu(rng, name):
    z, labels = make_data(rng, CASES[name])
    _, probs = ops.softmax_log_loss(z, labels)
    ks = (1, 2, 5, 13, 1000, 5000)
    got = ops.top_k_errors(dev(probs), dev(labels), ks)
    assert got == ops.top_k_errors(probs, labels, ks)
    assert got == tuple(ref_top_k_errors(probs, labels, k) for k in ks)
    assert all(type(v) is int for v in got)
    ranks, dranks = np.empty(len(labels), np.int64), dev(np.empty(len(labels), np.int64))
    _core.cpu.label_ranks(probs, labels, ranks)
    _core.cuda.label_ranks(dev(probs), dev(labels), dranks)
    np.testing.assert_array_equal(dranks.get(), ranks)


@cuda
def test_top_k_ties_and_nan():
    rng = np.random.default_rng(5)
    probs = rng.integers(0, 4, (300, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 300).astype(np.int32)
    ks = [1, 2, 3, 5, 10, 11]
    assert ops.top_k_errors(dev(probs), dev(labels), ks) == ops.top_k_errors(probs, labels, ks)
    p = np.array([[0.1, 0.6, 0.3], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5], [np.nan, 0.5, 0.5]], np.float32)
    l = np.array([1, 1, 1, 0], np.int64)
    assert ops.top_k_errors(dev(p), dev(l), (1, 2, 3, 4)) == (3, 2, 1, 1)


@cuda
def test_bad_labels_raise_the_cpu_error(rng):
    z, labels = make_data(rng, (4, 10))
    _, probs = ops.softmax_log_loss(dev(z), dev(labels))
    for bad, value in ((10, 10), (-1, -1), (2**40, 2**40)):
        l = labels.copy()
        l[2] = bad
        l[3] = 11  # reported in the count, not by name
        msg = rf"labels: labels\[2\] = {value} is outside \[0, 10\) \(2 bad labels in all\)"
        with pytest.raises(ValueError, match=msg):
            ops.softmax_log_loss(dev(z), dev(l))
        with pytest.raises(ValueError, match=msg):   # raised at the next synchronisation
            ops.softmax_log_loss_undo(probs, dev(l)).get()
        with pytest.raises(ValueError, match=msg):
            ops.top_k_errors(probs, dev(l))
        with pytest.raises(ValueError, match=msg):
            _core.cuda.label_ranks(probs, dev(l), dev(np.empty(4, np.int64)))
    l = labels.astype(np.int32)
    l[0] = -7
    with pytest.raises(ValueError, match=r"labels\[0\] = -7 is outside \[0, 10\) \(1 bad label in all\)"):
        ops.softmax_log_loss(dev(z), dev(l))
    with pytest.raises(TypeError, match="labels: expected dtype int32 or int64, got uint8"):
        ops.softmax_log_loss(dev(z), dev(labels.astype(np.uint8)))
    with pytest.raises(TypeError, match="mix host"):
        ops.softmax_log_loss(dev(z), labels)
    # the device is fine afterwards
    loss, _ = ops.softmax_log_loss(dev(z), dev(labels))
    assert math.isclose(loss, ref_loss(z, labels), rel_tol=1e-6, abs_tol=1e-6)


@cuda
def test_nosync_variant(rng):
    z, labels = make_data(rng, (128, 1000))
    probs, loss = C.empty(z.shape), C.zeros((1,))
    _core.cuda.softmax_log_loss_nosync(dev(z), dev(labels), probs, loss)
    total = ref_loss(z, labels) * z.shape[0]
    assert math.isclose(float(loss.get()[0]), total, rel_tol=1e-6)
    assert_close(probs.get(), ref_softmax(z), 1000)
    labels[7] = 1000
    _core.cuda.softmax_log_loss_nosync(dev(z), dev(labels), probs, loss)
    assert math.isnan(loss.get()[0])  # a bad label: NaN instead of an exception
    with pytest.raises(ValueError, match="loss: expected shape"):
        _core.cuda.softmax_log_loss_nosync(dev(z), dev(labels), probs, C.zeros((2,)))


@cuda
def test_out_must_not_overlap_logits(rng):
    z, labels = make_data(rng, (4, 10))
    dz = dev(z)
    with pytest.raises(ValueError, match="out: must not share memory with logits"):
        ops.softmax_log_loss(dz, dev(labels), out=dz)


@cuda
def test_wait_false_leaves_the_loss_on_the_gpu(rng):
    z = (rng.standard_normal((9, 13)) * 3).astype(np.float32)
    labels = rng.integers(0, 13, 9).astype(np.int64)
    want, probs_cpu = ops.softmax_log_loss(z, labels)
    from alexnet_ext.ops.softmax_log_loss import PendingLoss
    loss, probs = ops.softmax_log_loss(dev(z), dev(labels), wait=False)
    assert isinstance(loss, PendingLoss)
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    np.testing.assert_array_equal(probs.get(), probs_cpu)
    with pytest.raises(ValueError, match="labels"):   # shapes and dtypes are still checked
        ops.softmax_log_loss(dev(z), dev(labels[:5]), wait=False)

