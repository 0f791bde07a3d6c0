"""response_norm / response_norm_undo on the GPU against the CPU kernels and the float64
references of test_response_norm.py."""
import numpy as np
import pytest

from alexnet_ext import _core, ops
from cuda_helpers import dev
from helpers import assert_close
from response_norm_refs import CASES, HYPER, make_data, ref_lrn, ref_lrn_grad

cuda = pytest.mark.cuda


def _one_segment(shape):
    """The GPU kernel walks all channels of a pixel column in one thread (csrc/cuda/response_norm.cu
    split_channels): its arithmetic is then the CPU's, operation for operation."""
    n, c, h, w = shape
    return n * h * w >= 2**18 or c < 64


def _both(x, gy, **kw):
    """(y, denoms, grad_x) from the CPU and from the GPU."""
    y, d = ops.response_norm(x, **kw)
    gx = ops.response_norm_undo(gy, x, y, d, **kw)
    dx, dgy = dev(x), dev(gy)
    yd, dd = ops.response_norm(dx, **kw)
    gxd = ops.response_norm_undo(dgy, dx, yd, dd, **kw)
    return (y, d, gx), (yd.get(), dd.get(), gxd.get())


@cuda
@pytest.mark.parametrize("alpha_over_size", [False, True])
@pytest.mark.parametrize("name", CASES)
def test_equals_cpu_bit_for_bit(rng, name, alpha_over_size):
    """beta = 0.75 (sqrt and division, correctly rounded on both) and one segment: same bits."""
    x, size = make_data(rng, CASES[name])
    assert _one_segment(x.shape)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    cpu, gpu = _both(x, gy, size=size, alpha_over_size=alpha_over_size, **HYPER)
    for a, b, what in zip(cpu, gpu, ("y", "denoms", "grad_x")):
        np.testing.assert_array_equal(b, a, err_msg=what)


@cuda
@pytest.mark.parametrize("beta", [0.5, 1.0, 0.0, 2.3])
def test_other_exponents_match_reference(rng, beta):
    """Other betas go through powf: CUDA's may differ from the CPU's in the last bit."""
    x, size = make_data(rng, (2, 8, 5, 6, 5))
    kw = dict(size=size, k=1.5, alpha=0.3, beta=beta)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    cpu, (y, d, gx) = _both(x, gy, **kw)
    assert_close(y, ref_lrn(x, **kw)[0], size, what="y")
    assert_close(gx, ref_lrn_grad(gy, x, **kw), 4 * size, what="grad_x")
    np.testing.assert_array_equal(d, cpu[1])  # denoms involve no pow: still exact
    assert_close(y, cpu[0], 2, what="y vs cpu")


@cuda
@pytest.mark.parametrize("shape", [(2, 96, 27, 27), (1, 256, 13, 13), (3, 130, 5, 7)])
def test_channel_segments_match_reference(rng, shape):
    """Few pixel columns and many channels: the channels are split into segments, each warming
    up its own window sum. Paper hyper-parameters on ReLU-scale activations (conv2-like)."""
    assert not _one_segment(shape)
    x = np.maximum(rng.normal(0, 40, shape), 0).astype(np.float32)
    gy = rng.standard_normal(shape).astype(np.float32)
    cpu, (y, d, gx) = _both(x, gy)
    ry, rd = ref_lrn(x)
    assert_close(d, rd, 5, what="denoms")
    assert_close(y, ry, 5, what="y")
    assert_close(gx, ref_lrn_grad(gy, x), 20, what="grad_x")
    # and the CPU's running sum agrees to float32 resolution
    np.testing.assert_allclose(d, cpu[1], rtol=2e-7, atol=0)
    np.testing.assert_allclose(y, cpu[0], rtol=1e-6, atol=1e-30)


@cuda
def test_one_segment_with_many_channels_equals_cpu(rng):
    """Enough pixel columns (n*H*W >= 2^18) that even 64 channels stay in one segment."""
    shape = (2, 64, 363, 363)
    assert _one_segment(shape)
    x = rng.standard_normal(shape).astype(np.float32)
    gy = rng.standard_normal(shape).astype(np.float32)
    cpu, gpu = _both(x, gy, size=5, **HYPER)
    for a, b, what in zip(cpu, gpu, ("y", "denoms", "grad_x")):
        np.testing.assert_array_equal(b, a, err_msg=what)


@cuda
def test_running_sum_does_not_drift_across_segments(rng):
    """test_response_norm's drift data (blocks of huge channels) over 240 channels, which the GPU
    splits into segments: every denom right to float32 precision on its own."""
    c = 240
    mag = np.where(np.arange(c) % 40 < 8, 2e4, 30.0)
    x = (mag[None, :, None, None] * rng.uniform(0.2, 1.5, (2, c, 3, 70))).astype(np.float32)
    assert not _one_segment(x.shape)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    _, (y, d, gx) = _both(x, gy)
    ry, rd = ref_lrn(x)
    assert np.abs(d / rd - 1).max() < 1e-6
    assert np.abs(y / ry - 1).max() < 1e-6
    rgx = ref_lrn_grad(gy, x)
    err = np.abs(gx - rgx).max(axis=(0, 2, 3)) / np.abs(rgx).max(axis=(0, 2, 3))
    assert err.max() < 1e-5, err.max()


@cuda
@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("channel", [3, 31, 32, 33, 64])
@np.errstate(invalid="ignore")
def test_nonfinite_input_reaches_only_its_windows(rng, bad, channel):
    """A NaN or inf poisons exactly the channels the CPU's do, also next to a segment boundary
    (128 channels of 9 pixels: four segments of 32)."""
    x, _ = make_data(rng, (1, 128, 3, 3, 5))
    assert not _one_segment(x.shape)
    x[0, channel, 1, 1] = bad
    gy = rng.standard_normal(x.shape).astype(np.float32)
    (y, d, gx), (yd, dd, gxd) = _both(x, gy, size=5, **HYPER)
    for a, b in ((y, yd), (d, dd), (gx, gxd)):
        np.testing.assert_array_equal(np.isfinite(b), np.isfinite(a))
        np.testing.assert_array_equal(np.isnan(b), np.isnan(a))
        fin = np.isfinite(a)
        np.testing.assert_allclose(b[fin], a[fin], rtol=2e-6, atol=1e-6)
    assert not np.isfinite(dd[0, channel - 2:channel + 3, 1, 1]).any()
    assert np.isfinite(dd[0, :channel - 2]).all() and np.isfinite(dd[0, channel + 3:]).all()


@cuda
def test_undo_leaves_inputs_unchanged(rng):
    x, size = make_data(rng, CASES["size5_paper"])
    gy = rng.standard_normal(x.shape).astype(np.float32)
    dx, dgy = dev(x), dev(gy)
    y, d = ops.response_norm(dx, size=size, **HYPER)
    np.testing.assert_array_equal(dx.get(), x)
    copies = [a.get() for a in (dgy, dx, y, d)]
    gx = ops.response_norm_undo(dgy, dx, y, d, size=size, **HYPER)
    for a, a0, name in zip((dgy, dx, y, d), copies, ("grad_y", "x", "y", "denoms")):
        np.testing.assert_array_equal(a.get(), a0, err_msg=f"{name} was modified")
    assert all(gx.ptr != a.ptr for a in (dgy, dx, y, d))
    assert isinstance(gx, type(dx)) and gx.shape == x.shape and gx.dtype == np.float32


@cuda
def test_deterministic(rng):
    x, size = make_data(rng, (3, 100, 9, 11, 5))
    gy = rng.standard_normal(x.shape).astype(np.float32)
    runs = [_both(x, gy, size=size, **HYPER)[1] for _ in range(2)]
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@cuda
def test_bad_input(rng):
    x = dev(rng.standard_normal((2, 4, 5, 5)).astype(np.float32))
    with pytest.raises(ValueError, match="size: expected an int >= 1, got 0"):
        ops.response_norm(x, size=0)
    with pytest.raises(ValueError, match=r"x: expected 4 dimensions \(N, C, H, W\)"):
        ops.response_norm(x.reshape((8, 5, 5)))
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        ops.response_norm(dev(np.zeros((2, 4, 5, 5), np.int32)))
    y, d = ops.response_norm(x)
    with pytest.raises(TypeError, match="mix host"):
        ops.response_norm_undo(y.get(), x, y, d)
    with pytest.raises(ValueError, match=r"denoms: expected shape \(2, 4, 5, 5\)"):
        ops.response_norm_undo(y, x, y, dev(np.zeros((2, 4, 5, 6), np.float32)))


@cuda
def test_core_backstop(rng):
    x = dev(rng.standard_normal((2, 4, 5, 5)).astype(np.float32))
    small = dev(np.zeros((2, 3, 5, 5), np.float32))
    with pytest.raises(ValueError, match="y: expected shape"):
        _core.cuda.response_norm(x, small, dev(np.zeros((2, 4, 5, 5), np.float32)), 5, 2.0, 1e-4, 0.75, False)
    with pytest.raises(ValueError, match="size: expected an int >= 1"):
        _core.cuda.response_norm(x, x, x, 0, 2.0, 1e-4, 0.75, False)
    with pytest.raises(ValueError, match="denoms: expected shape"):
        _core.cuda.response_norm_undo(x, x, x, small, x, 5, 2.0, 1e-4, 0.75, False)
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        i = dev(np.zeros((2, 4, 5, 5), np.int32))
        _core.cuda.response_norm(i, x, x, 5, 2.0, 1e-4, 0.75, False)
