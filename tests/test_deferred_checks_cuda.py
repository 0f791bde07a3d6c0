"""No host wait inside a training step: max_pool_undo, softmax_log_loss_undo (and
normalize_batch, softmax_log_loss(wait=False)) only queue work, their range checks included; a
bad switch, label or offset is raised as the op's ValueError at the next synchronisation (the
loss read, a get(), synchronize()). Under tools/cuda_emu queued work runs only when something
waits, so a stream that still has work after the calls proves that none of them waited."""
import numpy as np
import pytest

import alexnet_ext
from alexnet_ext import _core
from alexnet_ext import cuda as C
from alexnet_ext import ops

pytestmark = pytest.mark.cuda


def _step_inputs(rng, bad_switch=None, bad_label=None):
    x = rng.standard_normal((2, 3, 7, 7)).astype(np.float32)
    y, sw = ops.max_pool(x)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    if bad_switch is not None:
        sw = sw.copy()
        sw[1, 0, 2, 1] = bad_switch
    logits = rng.standard_normal((4, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 4)
    bad_labels = labels.copy()
    if bad_label is not None:
        bad_labels[1] = bad_label
    crops = rng.integers(0, 256, (4, 3, 5, 5), dtype=np.uint8)
    mean = rng.uniform(0, 255, (3, 8, 8)).astype(np.float32)
    offsets = np.array([[0, 1, 0], [3, 3, 1], [2, 0, 1], [1, 2, 0]], np.int32)
    host = dict(gy=gy, sw=sw, logits=logits, labels=labels, bad_labels=bad_labels, crops=crops,
                mean=mean, offsets=offsets)
    d = {k: C.to_device(v) for k, v in host.items()}
    C.synchronize()   # the inputs are in place before the stream under test starts
    return host, d


def _queue_step(d):
    loss, probs = ops.softmax_log_loss(d["logits"], d["labels"], wait=False)
    g = ops.softmax_log_loss_undo(probs, d["bad_labels"])
    gx = ops.max_pool_undo(d["gy"], d["sw"], image_size=(7, 7))
    xb = ops.normalize_batch(d["crops"], d["mean"], d["offsets"], scale=0.5)
    return loss, probs, g, gx, xb


def test_the_step_ops_never_wait(rng):
    host, d = _step_inputs(rng)
    s = C.Stream()
    pending0 = _core.cuda.deferred_pending(0)
    with s:
        loss, probs, g, gx, xb = _queue_step(d)
        assert _core.cuda.deferred_pending(0) == pending0 + 3   # three checks queued, none read
        if alexnet_ext.cuda_status().get("emulated"):
            assert _core.cuda.stream_query(s.handle) is False  # nothing ran: nobody waited
        want_loss, want_probs = ops.softmax_log_loss(host["logits"], host["labels"])
        assert float(loss) == pytest.approx(want_loss, rel=1e-6)   # the step's one wait
    assert _core.cuda.deferred_pending(0) == 0
    np.testing.assert_allclose(g.get(), ops.softmax_log_loss_undo(want_probs, host["labels"]),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(gx.get(), ops.max_pool_undo(host["gy"], host["sw"],
                                                              image_size=(7, 7)))
    np.testing.assert_array_equal(xb.get(), ops.normalize_batch(host["crops"], host["mean"],
                                                                host["offsets"], scale=0.5))
    s.synchronize()


def test_a_bad_label_is_raised_at_the_loss_read(rng):
    _, d = _step_inputs(rng, bad_label=12)
    s = C.Stream()
    with s:
        loss, probs, g, gx, xb = _queue_step(d)     # no raise here
        if alexnet_ext.cuda_status().get("emulated"):
            assert _core.cuda.stream_query(s.handle) is False
        with pytest.raises(ValueError, match=r"labels: labels\[1\] = 12 is outside \[0, 10\) "
                                             r"\(1 bad label in all\) \[found on the GPU by "
                                             r"softmax_log_loss_undo"):
            float(loss)
        assert np.all(np.isnan(g.get()[1])) and np.all(np.isfinite(g.get()[[0, 2, 3]]))
        float(loss)   # reported once: the next read is clean
    s.synchronize()


@pytest.mark.parametrize("bad", [-1, 49, 2**31 - 1])
def test_a_bad_switch_is_raised_at_the_next_synchronisation(rng, bad):
    host, d = _step_inputs(rng, bad_switch=bad)
    s = C.Stream()
    with s:
        gx = ops.max_pool_undo(d["gy"], d["sw"], image_size=(7, 7))
        if alexnet_ext.cuda_status().get("emulated"):
            assert _core.cuda.stream_query(s.handle) is False
    with pytest.raises(ValueError, match=rf"switches: expected flat indices in \[0, 49\) .*got "
                                         rf"{bad} at index \(1, 0, 2, 1\) \[found on the GPU by "
                                         r"max_pool_undo \(1 bad value\)"):
        s.synchronize()
    # the bad switch's gradient was dropped, every other one landed
    sw = host["sw"].copy()
    keep = np.ones(sw.shape, bool)
    keep[1, 0, 2, 1] = False
    sw[~keep] = 0
    gy = np.where(keep, host["gy"], 0).astype(np.float32)
    np.testing.assert_array_equal(gx.get(), ops.max_pool_undo(gy, sw, image_size=(7, 7)))


def test_many_checks_without_a_sync_still_report_the_first(rng):
    """More pending checks than the table holds: it is read once to make room (the one wait),
    the verdict is kept and raised at the next synchronisation."""
    _, d = _step_inputs(rng, bad_label=-3)
    probs = C.to_device(np.full((4, 10), 0.1, np.float32))
    C.synchronize()
    ops.softmax_log_loss_undo(probs, d["bad_labels"])   # the bad one, first
    for _ in range(1030):
        ops.softmax_log_loss_undo(probs, d["labels"])
    assert _core.cuda.deferred_pending(0) < 1030
    with pytest.raises(ValueError, match=r"labels\[1\] = -3 is outside"):
        C.synchronize()
    C.synchronize()
