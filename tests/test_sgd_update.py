"""sgd_update against a float64 NumPy reference of the paper's rule."""
import numpy as np
import pytest

from alexnet_ext import ops
from helpers import EPS32, results_per_thread_count
from sgd_update_refs import SHAPES, check_bf16_copy


def ref_step(w, g, v, lr, momentum, weight_decay):
    v = momentum * v - weight_decay * lr * w - lr * g
    return w + v, v


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

    def step():
        w, v = w0.copy(), v0.copy()
        ops.sgd_update(w, g, v, lr=0.01)
        return w, v

    res = results_per_thread_count(step, (1, 2))
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


# ---------------------------------------------------------------- sgd_update_many
def _params(rng, shapes):
    ws = [rng.normal(0, 0.5, s).astype(np.float32) for s in shapes]
    gs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    vs = [rng.normal(0, 0.05, s).astype(np.float32) for s in shapes]
    return ws, gs, vs


def test_many_equals_one_call_per_tensor(rng):
    """Bit for bit what sgd_update gives, with shared and with per-tensor hyper-parameters."""
    shapes = [(96, 3, 11, 11), (96,), (256, 4), (7,), (3, 5, 2)]
    for hyper in (dict(lr=0.01), dict(lr=[0.01, 0.02, 0.005, 0.1, 0.03], momentum=[0.9, 0.5, 0.0, 1.0, 0.9],
                                      weight_decay=[5e-4, 0.0, 0.01, 0.0, 0.3])):
        ws, gs, vs = _params(rng, shapes)
        ws1, vs1 = [w.copy() for w in ws], [v.copy() for v in vs]
        assert ops.sgd_update_many(ws, gs, vs, **hyper) is None
        for i in range(len(shapes)):
            per = {k: (v[i] if isinstance(v, list) else v) for k, v in hyper.items()}
            ops.sgd_update(ws1[i], gs[i], vs1[i], **per)
            np.testing.assert_array_equal(ws[i], ws1[i])
            np.testing.assert_array_equal(vs[i], vs1[i])


def test_many_accepts_tuples_and_empty_lists(rng):
    ops.sgd_update_many([], [], [], lr=0.1)
    ws, gs, vs = _params(rng, [(4,), (2, 3)])
    w0 = [w.copy() for w in ws]
    ops.sgd_update_many(tuple(ws), tuple(gs), tuple(vs), lr=0.1, momentum=0.0, weight_decay=0.0)
    for w, g, v, a in zip(ws, gs, vs, w0):
        np.testing.assert_allclose(w, a - 0.1 * g, rtol=1e-6, atol=1e-7)


def test_many_grads_may_share_memory_with_each_other(rng):
    """Grads are only read: two parameters may take the same gradient buffer."""
    ws, _, vs = _params(rng, [(6,), (6,)])
    g = rng.standard_normal(6).astype(np.float32)
    ops.sgd_update_many(ws, [g, g], vs, lr=0.1)


def test_many_bad_input(rng):
    ws, gs, vs = _params(rng, [(4, 5), (3,)])
    with pytest.raises(TypeError, match="ws: expected a list of arrays, got numpy.ndarray"):
        ops.sgd_update_many(ws[0], gs, vs, lr=0.1)
    with pytest.raises(ValueError, match="grads: expected 2 arrays"):
        ops.sgd_update_many(ws, gs[:1], vs, lr=0.1)
    with pytest.raises(ValueError, match="velocities: expected 2 arrays"):
        ops.sgd_update_many(ws, gs, vs + vs, lr=0.1)
    with pytest.raises(ValueError, match=r"lr: expected a number or 2 numbers \(one per tensor\), got 3"):
        ops.sgd_update_many(ws, gs, vs, lr=[0.1, 0.1, 0.1])
    with pytest.raises(TypeError, match="momentum: expected a number or a list of numbers"):
        ops.sgd_update_many(ws, gs, vs, lr=0.1, momentum="0.9")
    with pytest.raises(ValueError, match=r"lr\[1\]: expected a number > 0.0"):
        ops.sgd_update_many(ws, gs, vs, lr=[0.1, 0.0])
    with pytest.raises(ValueError, match=r"weight_decay\[0\]: expected a number >= 0.0"):
        ops.sgd_update_many(ws, gs, vs, lr=0.1, weight_decay=[-1.0, 0.0])
    with pytest.raises(TypeError, match=r"grads\[1\]: expected dtype float32"):
        ops.sgd_update_many(ws, [gs[0], gs[1].astype(np.float64)], vs, lr=0.1)
    with pytest.raises(ValueError, match=r"velocities\[0\]: expected shape \(4, 5\) \(the shape of ws\[0\]\)"):
        ops.sgd_update_many(ws, gs, [vs[0].T.copy(), vs[1]], lr=0.1)
    with pytest.raises(ValueError, match=r"ws\[1\]: expected a C-contiguous"):
        ops.sgd_update_many([ws[0], np.zeros(6, np.float32)[::2]], gs, vs, lr=0.1)
    ro = ws[1].copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"ws\[1\]: array is read-only"):
        ops.sgd_update_many([ws[0], ro], gs, vs, lr=0.1)
    # memory shared across tensors, not only within a triple
    with pytest.raises(ValueError, match=r"velocities\[1\]: must not share memory with ws\[1\]"):
        ops.sgd_update_many(ws, gs, [vs[0], ws[1]], lr=0.1)
    buf = np.zeros(40, np.float32)
    with pytest.raises(ValueError, match=r"ws\[1\]: must not share memory with ws\[0\]"):
        ops.sgd_update_many([buf[:20].reshape(4, 5), buf[18:21]], gs, vs, lr=0.1)
    with pytest.raises(ValueError, match=r"grads\[1\]: must not share memory with velocities\[1\]"):
        ops.sgd_update_many(ws, [gs[0], vs[1]], vs, lr=0.1)
    big = np.zeros(23, np.float32)  # grads[0] reaches into another tensor's velocity
    vs_in = [vs[0], big[20:]]
    with pytest.raises(ValueError, match=r"grads\[0\]: must not share memory with velocities\[1\]"):
        ops.sgd_update_many(ws, [big[1:21].reshape(4, 5), gs[1]],
                            vs_in, lr=0.1)
    with pytest.raises(ValueError, match=r"grads\[0\]: must not share memory with ws\[0\]"):
        ops.sgd_update_many(ws, [ws[0], gs[1]], vs, lr=0.1)


def test_many_core_backstop(rng):
    from alexnet_ext import _core
    ws, gs, vs = _params(rng, [(4, 5), (3,)])
    with pytest.raises(ValueError, match="must have the same length"):
        _core.cpu.sgd_update_many(ws, gs, vs, [0.1], [0.9, 0.9], [0.0, 0.0])
    with pytest.raises(ValueError, match=r"grads\[1\]: expected the shape of ws\[1\]"):
        _core.cpu.sgd_update_many(ws, [gs[0], np.zeros(4, np.float32)], vs, [0.1] * 2, [0.9] * 2, [0.0] * 2)
    with pytest.raises(TypeError, match=r"ws\[0\]: expected dtype float32"):
        _core.cpu.sgd_update_many([ws[0].astype(np.float64), ws[1]], gs, vs, [0.1] * 2, [0.9] * 2, [0.0] * 2)
    ro = vs[0].copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match=r"velocities\[0\]: array is read-only"):
        _core.cpu.sgd_update_many(ws, gs, [ro, vs[1]], [0.1] * 2, [0.9] * 2, [0.0] * 2)


def test_bf16_copy_is_the_new_weights_rounded(rng):
    check_bf16_copy(rng, lambda a: a.copy(), lambda a: a)


def test_bf16_copy_bad_input(rng):
    import ml_dtypes

    w, g, v = (rng.standard_normal((4, 3)).astype(np.float32) for _ in range(3))
    bf16 = np.dtype(ml_dtypes.bfloat16)
    with pytest.raises(TypeError, match="copy_bf16: expected dtype bfloat16, got float32"):
        ops.sgd_update(w, g, v, lr=0.1, copy_bf16=np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="copy_bf16: expected shape"):
        ops.sgd_update(w, g, v, lr=0.1, copy_bf16=np.zeros((3, 4), bf16))
    with pytest.raises(ValueError, match=r"copies_bf16: expected 1 entries"):
        ops.sgd_update_many([w], [g], [v], lr=0.1, copies_bf16=[])
    with pytest.raises(TypeError, match=r"copies_bf16\[0\]: expected dtype bfloat16"):
        ops.sgd_update_many([w], [g], [v], lr=0.1, copies_bf16=[w.copy()])
    ro = np.zeros((4, 3), bf16)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="copy_bf16"):
        ops.sgd_update(w, g, v, lr=0.1, copy_bf16=ro)
