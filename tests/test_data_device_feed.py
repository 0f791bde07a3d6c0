"""DeviceFeed: host batches onto the GPU one step ahead, on a copy stream. The values arrive intact,
the compute stream waits for each copy, buffers are refilled only after their batch was used, and
host buffers are reused only after their copy (under tools/cuda_emu, whose streams run late
unless waited for, a missing wait shows up as wrong numbers)."""
import numpy as np
import pytest

from alexnet_ext import cuda as C
from alexnet_ext import ops
from alexnet_ext.data.device_feed import DeviceFeed

pytestmark = pytest.mark.cuda


def _batches(rng, shapes):
    return [(rng.standard_normal(s).astype(np.float32), rng.integers(0, 10, s[0]).astype(np.int64))
            for s in shapes]


@pytest.mark.parametrize("pin", [False, True])
def test_values_arrive_and_the_compute_stream_waits(rng, pin):
    host = _batches(rng, [(4, 3, 5, 5)] * 5 + [(2, 3, 5, 5)])   # a smaller last batch
    sums = []
    with DeviceFeed(0, pin=pin) as feed:
        for (x, y), (hx, hy) in zip(feed(iter(host)), host):
            assert isinstance(x, C.DeviceArray) and x.shape == hx.shape and y.shape == hy.shape
            sums.append(ops.add(x, x))           # queued on the compute stream
            np.testing.assert_array_equal(y.get(), hy)
    for s, (hx, _) in zip(sums, host):
        np.testing.assert_array_equal(s.get(), hx + hx)


def test_a_buffer_is_refilled_only_after_its_batch_was_used(rng):
    """The consumer reads each batch late (its work is queued behind a long kernel chain): the
    copy into the same device buffer two batches later must wait for it."""
    host = _batches(rng, [(8, 16)] * 7)
    outs = []
    with DeviceFeed(0, depth=2) as feed:
        for x, _ in feed(iter(host)):
            acc = C.zeros(x.shape)
            for _ in range(3):
                ops.add(acc, x, out=acc)          # several reads of x on the compute stream
            outs.append(acc)
    for acc, (hx, _) in zip(outs, host):
        np.testing.assert_array_equal(acc.get(), hx + hx + hx)


def test_pinned_host_buffers_are_reused_only_after_their_copy(rng):
    """Like the loader's slots: three host buffers in rotation, each rewritten as soon as the feed
    lets go of the batch it held."""
    ring = [np.empty((6, 7), np.float32) for _ in range(3)]
    want = []

    def produce():
        for k in range(9):
            buf = ring[k % 3]
            buf[...] = rng.standard_normal(buf.shape)
            want.append(buf.copy())
            yield buf, np.full(6, k, np.int64)

    got = []
    with DeviceFeed(0, pin=True) as feed:
        for x, y in feed(produce()):
            y_kept = C.empty(y.shape, np.int64)
            C.copy(y_kept, y)                    # the feed's buffers are reused: keep a copy
            got.append((ops.add(x, C.zeros(x.shape)), y_kept))
    for k, ((x, y), w) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(x.get(), w, err_msg=f"batch {k}")
        assert (y.get() == k).all()


def test_empty_iterator_and_bad_depth():
    with DeviceFeed(0) as feed:
        assert list(feed(iter([]))) == []
    with pytest.raises(ValueError, match="depth"):
        DeviceFeed(0, depth=1)
