"""fc / fc_undo on the GPU (cuBLAS in plain FP32) against the float64 references of test_fc.py,
accumulate forms included. grad_b sums rows in the CPU's order, so it equals the CPU's exactly."""
import numpy as np
import pytest

from alexnet_ext import _core, ops
from cuda_helpers import dev
from helpers import assert_close
from fc_refs import CASES, assert_undo_matches_reference, make_data, ref_fc, ref_fc_undo, undo_data

cuda = pytest.mark.cuda
needs_cublas = pytest.mark.skipif(not hasattr(getattr(_core, "cuda", None), "fc_forward"),
                                  reason="this build has no cuBLAS, so no fc on the GPU")


@cuda
@needs_cublas
@pytest.mark.parametrize("name", CASES)
def test_forward_matches_reference(rng, name):
    x, w, b = make_data(rng, CASES[name])
    d = x.shape[1]
    y = ops.fc(dev(x), dev(w))
    assert y.shape == (x.shape[0], w.shape[0]) and y.dtype == np.float32
    # factor 8 * eps * sqrt(d): an FP32 GEMM; TF32 (10-bit mantissa) would miss this by far
    assert_close(y.get(), ref_fc(x, w), d, what="fc")
    assert_close(ops.fc(dev(x), dev(w), dev(b)).get(), ref_fc(x, w, b), d, what="fc with bias")


@cuda
@needs_cublas
@pytest.mark.parametrize("name", CASES)
def test_undo_matches_reference(rng, name):
    x, w, gy = undo_data(rng, CASES[name])
    gx, gw, gb = (a.get() for a in ops.fc_undo(dev(gy), dev(x), dev(w)))
    assert_undo_matches_reference((gx, gw, gb), gy, x, w)
    np.testing.assert_array_equal(gb, ops.fc_undo(gy, x, w)[2])  # same order, same bits
    none, gw2, gb2 = ops.fc_undo(dev(gy), dev(x), dev(w), need_grad_x=False)
    assert none is None
    np.testing.assert_array_equal(gw2.get(), gw)  # deterministic
    np.testing.assert_array_equal(gb2.get(), gb)


@cuda
@needs_cublas
def test_alexnet_fc6_shape(rng):
    """fc6 at batch 128: 9216 -> 4096."""
    x = rng.standard_normal((128, 9216)).astype(np.float32)
    w = rng.normal(0, 0.01, (4096, 9216)).astype(np.float32)
    b = rng.standard_normal(4096).astype(np.float32)
    gy = rng.standard_normal((128, 4096)).astype(np.float32)
    dx, dw = dev(x), dev(w)
    assert_close(ops.fc(dx, dw, dev(b)).get(), ref_fc(x, w, b), 9216)
    gx, gw, gb = ops.fc_undo(dev(gy), dx, dw)
    rx, rw, rb = ref_fc_undo(gy, x, w)
    assert_close(gx.get(), rx, 4096)
    assert_close(gw.get(), rw, 128)
    assert_close(gb.get(), rb, 128)


@cuda
@needs_cublas
def test_accumulate_forms(rng):
    """scale_targets = 0 never reads the target (NaN-filled stays out), non-zero accumulates."""
    x, w, b = make_data(rng, CASES["parallel_slabs"])
    ref = ref_fc(x, w, b)
    out = dev(np.full(ref.shape, np.nan, np.float32))
    assert ops.fc(dev(x), dev(w), dev(b), out=out) is out
    assert_close(out.get(), ref, x.shape[1], what="into NaN out")
    prev = rng.standard_normal(ref.shape).astype(np.float32)
    out = dev(prev)
    ops.fc(dev(x), dev(w), dev(b), out=out, scale_targets=0.5, scale_output=-2.0)
    assert_close(out.get(), 0.5 * np.float64(prev) - 2.0 * ref, x.shape[1], what="0.5/-2")

    x, w, _ = make_data(rng, CASES["odd"])
    gy = rng.standard_normal((x.shape[0], w.shape[0])).astype(np.float32)
    refs = ref_fc_undo(gy, x, w)
    outs = [dev(np.full(r.shape, np.nan, np.float32)) for r in refs]
    got = ops.fc_undo(dev(gy), dev(x), dev(w), grad_x_out=outs[0], grad_w_out=outs[1],
                      grad_b_out=outs[2])
    for g, o, r in zip(got, outs, refs):
        assert g is o
        assert_close(o.get(), r, 50)
    prev = [rng.standard_normal(r.shape).astype(np.float32) for r in refs]
    outs = [dev(p) for p in prev]
    ops.fc_undo(dev(gy), dev(x), dev(w), grad_x_out=outs[0], grad_w_out=outs[1],
                grad_b_out=outs[2], scale_targets=1.0, scale_output=0.25)
    for o, p, r in zip(outs, prev, refs):
        assert_close(o.get(), np.float64(p) + 0.25 * r, 50)
    # grad_b's accumulate form is the CPU's arithmetic
    gb_cpu = prev[2].copy()
    ops.fc_undo(gy, x, w, need_grad_x=False, grad_b_out=gb_cpu, grad_w_out=prev[1].copy(),
                scale_targets=1.0, scale_output=0.25)
    np.testing.assert_array_equal(outs[2].get(), gb_cpu)


@cuda
@needs_cublas
def test_results_stay_on_the_gpu_and_bad_input(rng):
    x, w, b = make_data(rng, (3, 7, 5))
    gy = dev(rng.standard_normal((3, 5)).astype(np.float32))
    gx, gw, gb = ops.fc_undo(gy, dev(x), dev(w))
    from alexnet_ext import cuda as C
    assert all(C.is_device_array(a) for a in (gx, gw, gb))
    with pytest.raises(TypeError, match="mix host"):
        ops.fc(dev(x), w)
    with pytest.raises(ValueError, match="grad_x_out: must not share memory with x"):
        dx = dev(x)
        ops.fc_undo(gy, dx, dev(w), grad_x_out=dx)
    with pytest.raises(ValueError, match=r"out: expected shape"):
        _core.cuda.fc_forward(dev(x), dev(w), None, dev(np.empty((3, 4), np.float32)), 0.0, 1.0)
    with pytest.raises(ValueError, match=r"bias: expected shape"):
        _core.cuda.fc_forward(dev(x), dev(w), dev(np.ones(4, np.float32)),
                              dev(np.empty((3, 5), np.float32)), 0.0, 1.0)
    with pytest.raises(TypeError, match="mix host"):
        _core.cuda.fc_forward(dev(x), dev(w), b, dev(np.empty((3, 5), np.float32)), 0.0, 1.0)
