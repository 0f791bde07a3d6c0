"""sgd_update against a float64 NumPy reference of the paper's rule."""
import numpy as np
import pytest

import alexnet_ext
from alexnet_ext import ops
from helpers import EPS32


def ref_step(w, g, v, lr, momentum, weight_decay):
    v = momentum * v - weight_decay * lr * w - lr * g
    return w + v, v


SHAPES = {
    "bias": (7,),
    "fc_weights": (33, 65),
    "conv_filters": (12, 3, 11, 11),
    "big_parallel": (256, 1000),
}


@pytest.mark.parametrize("name", SHAPES)
@pytest.mark.parametrize("hyper", [dict(lr=0.01), dict(lr=0.05, momentum=0.5, weight_decay=0.01),
                                   dict(lr=1e-3, momentum=0.0, weight_decay=0.0),
                                   dict(lr=0.02, momentum=1.0, weight_decay=0.3)])
def test_matches_reference_over_several_steps(rng, name, hyper):
    shape, steps = SHAPES[name], 5
    full = dict(dict(momentum=0.9, weight_decay=5e-4), **hyper)
    lr, m, wd = full["lr"], full["momentum"], full["weight_decay"]
    w = rng.normal(0, 0.5, shape).astype(np.float32)
    v = rng.normal(0, 0.05, shape).astype(np.float32)
    w64, v64 = np.float64(w), np.float64(v)
    mag = np.zeros(shape)  # sum of the magnitudes of every term: bounds the float32 rounding
    for _ in range(steps):
        g = rng.standard_normal(shape).astype(np.float32)
        assert ops.sgd_update(w, g, v, **hyper) is None
        mag += m * np.abs(v64) + wd * lr * np.abs(w64) + lr * np.abs(np.float64(g)) + np.abs(w64)
        w64, v64 = ref_step(w64, np.float64(g), v64, lr, m, wd)
    bound = 4 * EPS32 * steps * (mag + np.abs(w64) + np.abs(v64))
    assert np.all(np.abs(np.float64(v) - v64) <= bound), "velocity"
    assert np.all(np.abs(np.float64(w) - w64) <= bound), "w"


def test_by_hand_with_every_term():
    w = np.array([1.0, -2.0, 0.5], np.float32)
    v = np.array([0.0, 0.1, -0.2], np.float32)
    g = np.array([0.0, 1.0, -3.0], np.float32)
    ops.sgd_update(w, g, v, lr=0.1, momentum=0.9, weight_decay=0.5)
    # v = 0.9 v - 0.05 w - 0.1 g;  w = w + v
    np.testing.assert_allclose(v, [-0.05, 0.09 + 0.1 - 0.1, -0.18 - 0.025 + 0.3], rtol=1e-6)
    np.testing.assert_allclose(w, [0.95, -2.0 + 0.09, 0.5 + 0.095], rtol=1e-6)


def test_defaults_are_the_papers(rng):
    """momentum 0.9 and weight decay 0.0005 by default."""
    w = rng.normal(0, 1.0, 40).astype(np.float32)
    w[np.abs(w) < 0.5] = 1.0  # the decay term 5e-6 * w must stand out of the tolerance below
    g = rng.standard_normal(40).astype(np.float32)
    v = rng.normal(0, 0.1, 40).astype(np.float32)
    rw, rv = ref_step(np.float64(w), np.float64(g), np.float64(v), 0.01, 0.9, 5e-4)
    _, rv_no_decay = ref_step(np.float64(w), np.float64(g), np.float64(v), 0.01, 0.9, 0.0)
    ops.sgd_update(w, g, v, lr=0.01)
    np.testing.assert_allclose(v, rv, rtol=0, atol=2e-7)
    np.testing.assert_allclose(w, rw, rtol=0, atol=1e-6)
    assert np.all(np.abs(np.float64(v) - rv_no_decay) > 2e-6)


def test_updates_the_same_objects_in_place(rng):
    w = rng.standard_normal((5, 6)).astype(np.float32)
    v = np.zeros_like(w)
    g = rng.standard_normal((5, 6)).astype(np.float32)
    w_id, v_id, g0, w0 = id(w), id(v), g.copy(), w.copy()
    w_ptr = w.__array_interface__["data"][0]
    ops.sgd_update(w, g, v, lr=0.1, momentum=0.9, weight_decay=0.0)
    assert id(w) == w_id and id(v) == v_id and w.__array_interface__["data"][0] == w_ptr
    np.testing.assert_array_equal(g, g0)  # grad is read only
    np.testing.assert_allclose(v, -0.1 * g0, rtol=1e-6)
    np.testing.assert_allclose(w, w0 - 0.1 * g0, rtol=1e-6, atol=1e-7)
    # views into a bigger parameter buffer are updated where they live
    buf = rng.standard_normal(100).astype(np.float32)
    vbuf = np.zeros(100, np.float32)
    before = buf.copy()
    gb = np.ones(30, np.float32)
    ops.sgd_update(buf[10:40], gb, vbuf[50:80], lr=0.5, momentum=0.0, weight_decay=0.0)
    np.testing.assert_array_equal(buf[10:40], before[10:40] - 0.5)
    np.testing.assert_array_equal(buf[:10], before[:10])
    np.testing.assert_array_equal(vbuf[50:80], -0.5)


def test_thread_count_does_not_matter(rng):
    shape = (512, 1024)
    w0 = rng.standard_normal(shape).astype(np.float32)
    v0 = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    before = alexnet_ext.get_num_threads()
    res = []
    try:
        for t in (1, 2):
            alexnet_ext.set_num_threads(t)
            w, v = w0.copy(), v0.copy()
            ops.sgd_update(w, g, v, lr=0.01)
            res.append((w, v))
    finally:
        alexnet_ext.set_num_threads(before)
    np.testing.assert_array_equal(res[0][0], res[1][0])
    np.testing.assert_array_equal(res[0][1], res[1][1])


def test_bad_input(rng):
    w = rng.standard_normal((4, 5)).astype(np.float32)
    g = rng.standard_normal((4, 5)).astype(np.float32)
    v = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match="lr: expected a number > 0.0, got 0.0"):
        ops.sgd_update(w, g, v, lr=0.0)
    with pytest.raises(ValueError, match="lr: expected a number > 0.0"):
        ops.sgd_update(w, g, v, lr=-0.01)
    with pytest.raises(ValueError, match="lr: expected a finite number"):
        ops.sgd_update(w, g, v, lr=float("inf"))
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'lr'"):
        ops.sgd_update(w, g, v)
    with pytest.raises(ValueError, match="momentum: expected a number <= 1.0, got 1.5"):
        ops.sgd_update(w, g, v, lr=0.01, momentum=1.5)
    with pytest.raises(ValueError, match="momentum: expected a number >= 0.0"):
        ops.sgd_update(w, g, v, lr=0.01, momentum=-0.1)
    with pytest.raises(ValueError, match="weight_decay: expected a number >= 0.0"):
        ops.sgd_update(w, g, v, lr=0.01, weight_decay=-1e-4)
    with pytest.raises(TypeError, match="weight_decay: expected a number"):
        ops.sgd_update(w, g, v, lr=0.01, weight_decay=None)
    with pytest.raises(TypeError, match="w: expected dtype float32"):
        ops.sgd_update(w.astype(np.float64), g, v, lr=0.01)
    with pytest.raises(TypeError, match="grad: expected dtype float32"):
        ops.sgd_update(w, g.astype(np.float16), v, lr=0.01)
    with pytest.raises(ValueError, match=r"grad: expected shape \(4, 5\) \(the shape of w\)"):
        ops.sgd_update(w, g.reshape(5, 4), v, lr=0.01)
    with pytest.raises(ValueError, match=r"velocity: expected shape \(4, 5\)"):
        ops.sgd_update(w, g, v[:3], lr=0.01)
    with pytest.raises(ValueError, match="velocity: expected a C-contiguous"):
        ops.sgd_update(w, g, np.zeros((5, 4), np.float32).T, lr=0.01)
    with pytest.raises(ValueError, match="grad: must not share memory with w"):
        ops.sgd_update(w, w, v, lr=0.01)
    with pytest.raises(ValueError, match="grad: must not share memory with velocity"):
        ops.sgd_update(w, v, v, lr=0.01)
    with pytest.raises(ValueError, match="velocity: must not share memory with w"):
        ops.sgd_update(w, g, w, lr=0.01)
    ro = w.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="w: array is read-only"):
        ops.sgd_update(ro, g, v, lr=0.01)
    with pytest.raises(ValueError, match="w: expected at least 1 dimension"):
        ops.sgd_update(np.array(1.0, np.float32), np.array(1.0, np.float32),
                       np.array(0.0, np.float32), lr=0.01)


def test_core_backstop(rng):
    from alexnet_ext import _core
    w = rng.standard_normal((4, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="grad: expected the shape of w"):
        _core.cpu.sgd_update(w, np.zeros(19, np.float32), np.zeros((4, 5), np.float32), 0.1, 0.9, 0.0)
    ro = np.zeros((4, 5), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="velocity: array is read-only"):
        _core.cpu.sgd_update(w, np.zeros((4, 5), np.float32), ro, 0.1, 0.9, 0.0)
