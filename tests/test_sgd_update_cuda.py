"""sgd_update / sgd_update_many on the GPU: the CPU's float32 arithmetic bit for bit, one launch
for a whole list of tensors."""
import numpy as np
import pytest

from alexnet_ext import _core, ops
from cuda_helpers import dev, unaligned, window
from sgd_update_refs import SHAPES, check_bf16_copy

cuda = pytest.mark.cuda


def _state(rng, shape):
    return (rng.normal(0, 0.5, shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32),
            rng.normal(0, 0.05, shape).astype(np.float32))


@cuda
@pytest.mark.parametrize("name", SHAPES)
@pytest.mark.parametrize("hyper", [dict(lr=0.01), dict(lr=0.05, momentum=0.5, weight_decay=0.01),
                                   dict(lr=0.02, momentum=1.0, weight_decay=0.3)])
def test_equals_cpu_over_several_steps(rng, name, hyper):
    w, _, v = _state(rng, SHAPES[name])
    dw, dv = dev(w), dev(v)
    for _ in range(5):
        g = rng.standard_normal(w.shape).astype(np.float32)
        ops.sgd_update(w, g, v, **hyper)
        assert ops.sgd_update(dw, dev(g), dv, **hyper) is None
    np.testing.assert_array_equal(dw.get(), w)
    np.testing.assert_array_equal(dv.get(), v)


@cuda
def test_unaligned_views_are_updated_where_they_live(rng):
    w, g, v = _state(rng, (1001,))
    dw, dg, dv = unaligned(w), unaligned(g), unaligned(v)
    ops.sgd_update(w, g, v, lr=0.1)
    ops.sgd_update(dw, dg, dv, lr=0.1)
    np.testing.assert_array_equal(dw.get(), w)
    np.testing.assert_array_equal(dv.get(), v)


def _alexnet_shapes():
    convs = [(96, 3, 11, 11), (256, 48, 5, 5), (384, 256, 3, 3), (384, 192, 3, 3), (256, 192, 3, 3)]
    fcs = [(4096, 9216), (4096, 4096), (1000, 4096)]
    out = []
    for s in convs + fcs:
        out += [s, (s[0],)]
    return out


@cuda
@pytest.mark.parametrize("count", [1, 16, 33, 70])
def test_many_equals_cpu(rng, count):
    """16 = AlexNet's tensors in one launch; 33 and 70 need several launches (32 per launch)."""
    shapes = _alexnet_shapes() if count == 16 else [
        tuple(int(v) for v in rng.integers(1, 40, rng.integers(1, 4))) for _ in range(count)]
    if count == 16:  # the real fc6 weights are big: keep the test light, same structure
        shapes = [s if int(np.prod(s)) < 2**22 else (s[0] // 4,) + s[1:] for s in shapes]
    states = [_state(rng, s) for s in shapes]
    lrs = [float(v) for v in rng.uniform(0.001, 0.1, count)]
    moms = [float(v) for v in rng.uniform(0.0, 1.0, count)]
    wds = [float(v) for v in rng.choice([0.0, 5e-4, 0.01], count)]
    dws = [dev(w) for w, _, _ in states]
    dgs = [dev(g) for _, g, _ in states]
    dvs = [dev(v) for _, _, v in states]
    ops.sgd_update_many([s[0] for s in states], [s[1] for s in states], [s[2] for s in states],
                        lr=lrs, momentum=moms, weight_decay=wds)
    ops.sgd_update_many(dws, dgs, dvs, lr=lrs, momentum=moms, weight_decay=wds)
    for (w, _, v), dw, dv in zip(states, dws, dvs):
        np.testing.assert_array_equal(dw.get(), w)
        np.testing.assert_array_equal(dv.get(), v)


@cuda
def test_many_equals_single_calls_on_the_gpu(rng):
    states = [_state(rng, s) for s in [(5, 7), (3,), (2, 3, 4)]]
    a = [[dev(x) for x in st] for st in states]
    b = [[dev(x) for x in st] for st in states]
    ops.sgd_update_many([t[0] for t in a], [t[1] for t in a], [t[2] for t in a], lr=0.03)
    for w, g, v in b:
        ops.sgd_update(w, g, v, lr=0.03)
    for ta, tb in zip(a, b):
        np.testing.assert_array_equal(ta[0].get(), tb[0].get())
        np.testing.assert_array_equal(ta[2].get(), tb[2].get())


@cuda
def test_bad_input(rng):
    w, g, v = (dev(a) for a in _state(rng, (4, 5)))
    with pytest.raises(TypeError, match="mix host"):
        ops.sgd_update(w, g.get(), v, lr=0.1)
    with pytest.raises(ValueError, match="grad: must not share memory with w"):
        ops.sgd_update(w, w, v, lr=0.1)
    with pytest.raises(ValueError, match="velocity: must not share memory with w"):
        ops.sgd_update(w, g, w.reshape((5, 4)).reshape((4, 5)), lr=0.1)
    buf = dev(np.zeros(60, np.float32))
    w1, w2 = window(buf, 0, (4, 5)), window(buf, 19, (4, 5))  # one shared element
    with pytest.raises(ValueError, match=r"ws\[1\]: must not share memory with ws\[0\]"):
        ops.sgd_update_many([w1, w2], [g, dev(np.zeros((4, 5), np.float32))],
                            [v, dev(np.zeros((4, 5), np.float32))], lr=0.1)
    with pytest.raises(ValueError, match=r"grads\[0\]: must not share memory with velocities\[1\]"):
        v2 = window(buf, 40, (4, 5))
        ops.sgd_update_many([w, w1], [window(buf, 21, (4, 5)), g], [v, v2], lr=0.1)
    with pytest.raises(TypeError, match="mix host"):
        ops.sgd_update_many([w, np.zeros(3, np.float32)], [g, np.zeros(3, np.float32)],
                            [v, np.zeros(3, np.float32)], lr=0.1)
    with pytest.raises(ValueError, match="grad: expected the shape of w"):
        _core.cuda.sgd_update(w, dev(np.zeros(19, np.float32)), v, 0.1, 0.9, 0.0)
    with pytest.raises(ValueError, match="must have the same length"):
        _core.cuda.sgd_update_many([w], [g], [v], [0.1, 0.2], [0.9], [0.0])
    with pytest.raises(TypeError, match="mix host"):
        _core.cuda.sgd_update_many([w], [g.get()], [v], [0.1], [0.9], [0.0])


@cuda
def test_bf16_copy_is_the_new_weights_rounded(rng):
    check_bf16_copy(rng, dev, lambda a: a.get())
