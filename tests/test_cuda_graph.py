"""CUDA graphs (alexnet_ext.cuda.Graph, Net.step_graph, the trainer's graph mode) on the GPU or the
emulator (tools/cuda_emu, which enforces CUDA's capture rules):

- ops captured then replayed give the bits the same ops give eagerly, replay after replay;
- a training step replayed N times leaves the same weights, velocities, losses and dropout masks
  as N eager steps (exact: the same kernels on the same data in the same order);
- what a capture cannot hold raises GraphCaptureError naming the call, and leaves nothing behind;
- arrays made inside a capture are the graph's (never handed to anyone else) across replays;
- the captured ops' range checks raise after a replay as they do eagerly;
- a training run with and without --no-cuda-graph writes the same metrics and weights.
"""
import json
import threading

import numpy as np
import pytest

from alexnet_ext import cuda as C
from alexnet_ext import ops
from alexnet_ext.nn import Net, parse_model
from helpers import random_batch
from models_fixtures import CHAIN
from train_helpers import assert_same_run, run_train, tiny_data, tiny_model  # noqa: F401

pytestmark = pytest.mark.cuda


def _ops_chain(x, w, table, labels):
    """conv, relu, max pool, dropout with the seed in memory, fc, loss and its gradient."""
    h = ops.relu(ops.filter_acts(x, w, padding=1))
    p, switches = ops.max_pool(h)
    d, mask = ops.dropout(p, p=0.5, seed=(table, 1), offset=3)
    flat = d.reshape(d.shape[0], 16)
    loss, probs = ops.softmax_log_loss(flat, labels, wait=False)
    grad = ops.softmax_log_loss_undo(probs, labels)
    back = ops.max_pool_undo(grad.reshape(p.shape), switches, image_size=h.shape[2:])
    return [h, p, switches, d, mask, probs, grad, back], loss


def _inputs(rng, n=3):
    x = rng.standard_normal((n, 2, 6, 6)).astype(np.float32)
    labels = rng.integers(0, 4 * 2 * 2, n).astype(np.int64)   # classes: the flattened pool output
    seeds = rng.integers(0, 2**62, 2).astype(np.int64)
    return x, labels, seeds


def test_captured_ops_replay_the_eager_bits(rng):
    w = C.to_device(rng.standard_normal((4, 2, 3, 3)).astype(np.float32))
    x0, l0, s0 = _inputs(rng)
    xs, ls, table = C.to_device(x0), C.to_device(l0), C.to_device(s0)
    _ops_chain(xs, w, table, ls)                        # warm-up, eagerly
    g = C.Graph()
    with g.capture():
        outs, loss = _ops_chain(xs, w, table, ls)
    assert g.captured and g.num_checks == 2             # the labels' and the switches' checks
    for _ in range(3):
        x, labels, seeds = _inputs(rng)
        C.copy(xs, x)
        C.copy(ls, labels)
        C.copy(table, seeds)
        g.replay()
        got = [o.get() for o in outs] + [float(loss)]
        want_outs, want_loss = _ops_chain(C.to_device(x), w, C.to_device(seeds), C.to_device(labels))
        want = [o.get() for o in want_outs] + [float(want_loss)]
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
        # the seed read from memory gives the mask of that seed passed by value
        _, m = ops.dropout(outs[1].get(), p=0.5, seed=int(seeds[1]), offset=3)
        np.testing.assert_array_equal(outs[4].get(), m)


def test_a_replay_runs_in_order_on_the_current_stream(rng):
    a = C.to_device(rng.standard_normal((5, 7)).astype(np.float32))
    g = C.Graph()
    with g.capture():
        b = ops.relu(a)
    s = C.Stream()
    with s:
        C.copy(a, -np.abs(rng.standard_normal((5, 7))).astype(np.float32) - 1)
        g.replay()              # after the copy, on s
        got = b.get()
    np.testing.assert_array_equal(got, np.zeros((5, 7), np.float32))


@pytest.mark.parametrize("call, name", [
    (lambda a, lab: a.get(), "host memory and the GPU"),
    (lambda a, lab: C.synchronize(), "(?i)synchronize"),
    (lambda a, lab: C.to_device(np.ones(3, np.float32)), "host memory and the GPU"),
    (lambda a, lab: ops.softmax_log_loss(a, lab), "cudaMemcpyAsync"),   # reads its loss back
])
def test_a_call_that_cannot_be_captured_raises_and_leaves_nothing_behind(rng, call, name):
    a = C.to_device(rng.standard_normal((4, 6)).astype(np.float32))
    lab = C.to_device(np.zeros(4, np.int64))       # made before the capture
    g = C.Graph()
    with pytest.raises(C.GraphCaptureError, match=name):
        with g.capture():
            ops.relu(a)
            call(a, lab)
    assert not g.captured
    np.testing.assert_array_equal(ops.relu(a).get(), np.maximum(a.get(), 0))   # eager works
    with g.capture():                                   # and the graph can capture again
        b = ops.relu(a)
    g.replay()
    np.testing.assert_array_equal(b.get(), np.maximum(a.get(), 0))


def test_a_capture_forks_and_joins_streams_through_events(rng):
    """Work on a second stream joins the capture by waiting on an event recorded inside it (its
    arrays come from the graph's pool too) and must be joined back before the capture ends."""
    a = C.to_device(rng.standard_normal((6, 5)).astype(np.float32))
    side = C.Stream()
    g = C.Graph()
    with g.capture():
        forked = C.Event().record()
        with side:
            forked.wait()               # side joins the capture
            b = ops.relu(a)             # allocated and recorded there
            done = C.Event().record()
        done.wait()                     # joined back
        c = ops.relu(b, out=C.empty((6, 5)))
    for _ in range(2):
        data = rng.standard_normal((6, 5)).astype(np.float32)
        C.copy(a, data)
        g.replay()
        np.testing.assert_array_equal(c.get(), np.maximum(data, 0))
    g.reset()
    with pytest.raises(C.GraphCaptureError, match="(?i)unjoined|joined back"):
        with g.capture():
            forked = C.Event().record()
            with side:
                forked.wait()
                ops.relu(a)             # never joined back


def test_events_a_capture_cannot_hold(rng):
    a = C.to_device(np.ones(4, np.float32))
    outside = C.Event().record()        # before the capture, on the caller's stream
    g = C.Graph()
    with pytest.raises(C.GraphCaptureError, match="(?i)isolation"):
        with g.capture():
            outside.wait()              # a dependency on work outside the capture
    with pytest.raises(C.GraphCaptureError, match="(?i)captured ?event|recorded inside"):
        with g.capture():
            ops.relu(a)
            C.Event().record().synchronize()   # waits for work that is recorded, not run
    assert not g.captured
    np.testing.assert_array_equal(ops.relu(a).get(), np.ones(4, np.float32))


def _alloc_in_other_thread(nbytes):
    err = []

    def run():
        try:
            C.empty((nbytes // 4,), np.float32)     # a size no cached block serves: cudaMalloc
        except Exception as e:  # noqa: BLE001 - reported to the test
            err.append(e)
    t = threading.Thread(target=run)
    t.start()
    t.join()
    return err


def test_capture_modes_govern_other_threads(rng):
    """global: another thread's cudaMalloc during the capture is refused and invalidates it;
    thread_local: the other thread is free."""
    a = C.to_device(np.ones(8, np.float32))
    g = C.Graph()
    import gc
    gc.collect()      # earlier tests' arrays back to the cache, then the cache emptied: no
    C.empty_cache()   # cached block (of whatever size they left) may serve the other thread
    with pytest.raises(C.GraphCaptureError, match="(?i)invalidated"):
        with g.capture(mode="global"):
            ops.relu(a)
            err = _alloc_in_other_thread(3 * 2**20 + 4096 * 7)
            assert err and "cudaMalloc" in str(err[0])
    with g.capture(mode="thread_local"):
        b = ops.relu(a)
        assert _alloc_in_other_thread(3 * 2**20 + 4096 * 11) == []
    g.replay()
    np.testing.assert_array_equal(b.get(), np.ones(8, np.float32))
    with pytest.raises(ValueError, match="mode"):
        with C.Graph().capture(mode="loose"):
            pass


@pytest.mark.parametrize("mode, refused", [("global", True), ("thread_local", True),
                                           ("relaxed", False)])
def test_cudamalloc_on_the_capturing_thread_needs_relaxed_mode(rng, mode, refused):
    """An allocation for a stream outside the capture (so not from the graph's pool) calls
    cudaMalloc: a capture refuses it on its own thread unless begun in relaxed mode."""
    a = C.to_device(np.ones(8, np.float32))
    other = C.Stream()
    g = C.Graph()

    def body():
        with g.capture(mode=mode):
            b = ops.relu(a)
            with other:
                C.empty((2**18 + 1000,))       # a new stream's first block: cudaMalloc
        return b
    if refused:
        with pytest.raises(C.GraphCaptureError, match="cudaMalloc"):
            body()
        return
    b = body()
    g.replay()
    np.testing.assert_array_equal(b.get(), np.ones(8, np.float32))


def test_memory_made_in_a_capture_stays_the_graphs(rng):
    x = C.to_device(rng.standard_normal((64, 33)).astype(np.float32))
    doomed = C.to_device(np.zeros((64, 33), np.float32))
    g = C.Graph()
    with g.capture():
        y = ops.relu(x)                 # y: from the graph's pool
        ops.relu(x, out=doomed)         # written by the graph ...
        doomed_ptr = doomed.ptr
        del doomed                      # ... and freed during the capture: it joins the pool
    pool_ptrs = {y.ptr, doomed_ptr}
    others = [C.empty((64, 33)) for _ in range(6)]   # eager allocations of the same sizes
    assert not pool_ptrs & {o.ptr for o in others}
    for o in others:
        C.fill_zero(o)
    for _ in range(2):
        data = rng.standard_normal((64, 33)).astype(np.float32)
        C.copy(x, data)
        g.replay()
        np.testing.assert_array_equal(y.get(), np.maximum(data, 0))
        for o in others:
            np.testing.assert_array_equal(o.get(), np.zeros((64, 33), np.float32))
    g.reset()                           # the pool goes; y's block with y
    with pytest.raises(RuntimeError, match="nothing captured"):
        g.replay()
    np.testing.assert_array_equal(y.get(), np.maximum(data, 0))   # y itself is still valid


def test_range_checks_of_a_replay_raise_at_the_next_synchronisation(rng):
    probs = C.to_device(np.full((4, 5), 0.2, np.float32))
    labels = C.to_device(np.array([0, 1, 2, 3], np.int64))
    gy = C.to_device(rng.standard_normal((2, 1, 3, 3)).astype(np.float32))
    _, sw_host = ops.max_pool(rng.standard_normal((2, 1, 7, 7)).astype(np.float32))
    sw = C.to_device(sw_host)
    g = C.Graph()
    with g.capture():
        ops.softmax_log_loss_undo(probs, labels)
        ops.max_pool_undo(gy, sw, image_size=(7, 7))
    g.replay()
    C.synchronize()                                     # all good: nothing raised
    C.copy(labels, np.array([0, 1, 7, 3], np.int64))
    g.replay()
    with pytest.raises(ValueError, match=r"labels\[2\] = 7"):
        C.synchronize()
    C.copy(labels, np.array([0, 1, 2, 3], np.int64))
    g.replay()
    C.synchronize()
    bad = sw_host.copy()
    bad[1, 0, 2, 1] = 99
    C.copy(sw, bad)
    g.replay()                          # bad, then a good replay before anyone looked:
    C.copy(sw, sw_host)
    g.replay()                          # the first verdict is kept, not overwritten
    with pytest.raises(ValueError, match="switches"):
        C.synchronize()
    C.synchronize()


def _net(seed=3):
    return Net(parse_model(CHAIN, path="chain.toml"), seed=seed, devices=["cuda:0"])


def _masks(net):
    return [layer.mask.get() for layer in net.layers if getattr(layer, "mask", None) is not None]


def test_a_replayed_training_step_equals_the_eager_steps(rng):
    eager, graphed = _net(), _net()
    batches = [random_batch(rng, eager.spec, 6) for _ in range(6)]
    sg = graphed.step_graph((6,) + eager.data.shape)
    for step, (x, y) in enumerate(batches):
        lr = 0.05 if step < 4 else 0.01                # a change re-captures
        want = eager.forward(x, y, train=True, step=step, seed=11, wait=False)
        eager.backward()
        eager.update(lr=lr)
        got = sg.run(x, y, step=step, seed=11, lr=lr)
        assert float(got) == float(want), step
        for a, b in zip(_masks(graphed), _masks(eager)):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(graphed.probs.get(), eager.probs.get())
        for kind in ("value", "velocity"):
            ge, gg = eager.state_dict(kind), graphed.state_dict(kind)
            for k in ge:
                np.testing.assert_array_equal(gg[k], ge[k], err_msg=f"{kind} {k} step {step}")
    assert sg.replays == 5                              # step 0 was the eager warm-up
    with pytest.raises(ValueError, match="captured for shape"):
        sg.run(*random_batch(rng, eager.spec, 5), step=9, seed=11, lr=0.01)


def test_step_graph_needs_one_gpu():
    with pytest.raises(ValueError, match="one GPU"):
        Net(parse_model(CHAIN, path="chain.toml"), seed=0).step_graph((2, 3, 9, 9))


def test_training_with_and_without_the_graph_is_the_same_run(tmp_path, tiny_data, tiny_model):
    runs, replays = {}, {}
    for name, extra in (("graph", []), ("eager", ["--no-cuda-graph"])):
        runs[name] = tmp_path / name

        def on_step(trainer, name=name):
            replays[name] = trainer._graph.replays if trainer._graph is not None else None
        assert run_train("--data", tiny_data, "--model", tiny_model, "--epochs", "2", "--device",
                         "cuda", "--out", runs[name], "--workers", "0", "--seed", "4", *extra,
                         on_step=on_step) == 0
        config = json.loads((runs[name] / "config.json").read_text())
        assert config["cuda_graph"] is (name == "graph")
    assert replays["eager"] is None and replays["graph"] >= 4   # 2 epochs of 4 full batches
    assert_same_run(runs["eager"], runs["graph"])
