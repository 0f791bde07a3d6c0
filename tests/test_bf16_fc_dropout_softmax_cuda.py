"""bfloat16 through dropout, fc (cublasGemmEx), softmax log-loss and normalize_batch on the GPU
(marker `cuda`). References are float64 from the widened bf16 inputs, with these bounds
(u = 2^-24, gamma_n = n u / (1 - n u), lowp_helpers.gamma32):

  dropout / dropout_undo: one float32 product per kept element, |y - x s| <= gamma_2 |x s| with
      s = 1 / (1 - p) (the rounding of float32(s) and of the product), then half a bf16 ulp
      (assert_bf16_within); and bit for bit the float32 product rounded by an independent RNE
      (bf16_rne_reference) - the same operation. The mask equals the float32 op's mask and the
      float-free reference (dropout_refs.mask_ref) for the same seed and offset.
  fc: |y - x.w^T - b| <= gamma_{2(D+1)} (sum_d |x w| + |b|): D products exact in float32 (bf16
      operands), D - 1 float32 additions and the bias add, each with relative error at most 2u
      (u doubled: tensor cores may truncate in their float32 accumulation, Fasi et al. 2021,
      "Numerical behavior of NVIDIA tensor cores"); grad_x and grad_w the same with F and N
      terms, no bias. A bf16 output adds half a bf16 ulp, and is bit for bit the float32 output
      of the same call rounded by bf16_rne_reference (csrc/cuda/fc.cu computes it that way).
      grad_b sums in double in the CPU's order: the CPU's bits on the widened grad_y.
  softmax_log_loss with bf16 logits: bit for bit the float32 op on the widened logits (the
      kernel widens each read exactly), and against float64: per row, with t = max_j |z_j - m|,
      each exp carries relative error e = (t + 4) u (the subtraction's rounding amplified by t,
      expf within 2 ulp); the sum in double then carries e too, so p = e_j * float(1/s) within
      2 e + 2 u relative; the loss log s + m - z_label within e + 4 * 2^-53 (|log s| + |m| +
      |z_label|) per row.
  softmax_log_loss_undo to bf16: (p - [j = label]) * scale, two float32 roundings: gamma_2 |ref|,
      then half a bf16 ulp; bit for bit the float32 undo rounded by bf16_rne_reference.
  normalize_batch to bf16: bit for bit the float32 op (CPU) rounded by bf16_rne_reference.

scale_targets = 0 never reads the target: those tests pass NaN-filled outputs.
"""
import numpy as np
import pytest

from alexnet_ext import _core, cuda, ops
from cuda_helpers import dev
from dropout_refs import mask_ref, random_seed
from lowp_helpers import bf16_array as bf16, bf16_wide as wide, device_bits as bits
from lowp_helpers import assert_bf16_within, bf16_rne_reference, gamma32

pytestmark = pytest.mark.cuda
needs_cublas = pytest.mark.skipif(not hasattr(getattr(_core, "cuda", None), "fc_forward"),
                                  reason="this build has no cuBLAS, so no fc on the GPU")

BF16 = np.dtype(cuda.bfloat16)
SIZES = (1, 3, 4, 5, 7, 1027, 4099)
U = 2.0**-24


def nan_bf16(shape):
    return dev(np.full(shape, 0x7FC0, np.uint16).view(BF16))


def nan_f32(shape):
    return dev(np.full(shape, np.nan, np.float32))


# ---------------------------------------------------------------- dropout
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("p", (0.0, 0.3, 0.5))
def test_dropout_bf16(rng, n, p):
    x = bf16(rng.standard_normal(n) * 4)
    seed, offset = random_seed(rng), int(rng.integers(0, 2**40))
    y, mask = ops.dropout(dev(x), p=p, seed=seed, offset=offset)
    assert y.dtype == BF16 and mask.dtype == np.uint8
    _, mask32 = ops.dropout(dev(wide(x)), p=p, seed=seed, offset=offset)
    np.testing.assert_array_equal(mask.get(), mask32.get())  # the same Philox stream
    if n <= 1027:
        np.testing.assert_array_equal(mask.get(), mask_ref(n, p, seed, offset))
    m = mask.get() != 0
    s = 1.0 / (1.0 - p)
    prod32 = np.where(m, wide(x) * np.float32(s), np.float32(0))
    np.testing.assert_array_equal(bits(y), bf16_rne_reference(prod32))
    ref = np.where(m, np.float64(wide(x)) * s, 0.0)
    assert_bf16_within(bits(y), ref, gamma32(2) * np.abs(ref), "dropout")
    # in place, and the undo on the same mask gives the forward's bits
    dx = dev(x)
    assert ops.dropout(dx, p=p, seed=seed, offset=offset, out=dx)[0] is dx
    np.testing.assert_array_equal(bits(dx), bits(y))
    np.testing.assert_array_equal(bits(ops.dropout_undo(dev(x), mask, p=p)), bits(y))


def test_dropout_bf16_block_layout(rng):
    """A column block of a larger array (scattered path: rows of 3): A's mask at those places."""
    big = bf16(rng.standard_normal((5, 11)))
    seed = random_seed(rng)
    _, full = ops.dropout(dev(big), p=0.5, seed=seed, offset=7)
    part = np.ascontiguousarray(big[:, 4:7])
    y, mask = ops.dropout(dev(part), p=0.5, seed=seed, offset=7, block=(3, 11, 4))
    np.testing.assert_array_equal(mask.get(), full.get()[:, 4:7])
    want = np.where(mask.get() != 0, wide(part) * np.float32(2.0), np.float32(0))
    np.testing.assert_array_equal(bits(y), bf16_rne_reference(want))


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("dtype", ("float32", "bfloat16"))
def test_dropout_undo_relu_mask(rng, n, dtype):
    """The fold is dropout_undo then relu_undo, bit for bit, in both dtypes; bf16 also against
    the independent float32 product rounded by bf16_rne_reference."""
    x = rng.standard_normal(n).astype(np.float32) * 3
    x[::7] = 0.0
    x[5::13] = np.nan
    gy = rng.standard_normal(n).astype(np.float32)
    gy[3::11] = np.inf
    if dtype == "bfloat16":
        x, gy = bf16(x), bf16(gy)
    r = ops.relu(dev(x))
    _, mask = ops.dropout(r, p=0.4, seed=random_seed(rng))
    got = ops.dropout_undo(dev(gy), mask, p=0.4, relu_mask=r)
    want = ops.relu_undo(ops.dropout_undo(dev(gy), mask, p=0.4), r)
    assert got.dtype == want.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got.get().view(np.uint8), want.get().view(np.uint8))
    rw = wide(r.get()) if dtype == "bfloat16" else r.get()
    gw = wide(gy) if dtype == "bfloat16" else gy
    with np.errstate(invalid="ignore"):
        keep = (mask.get() != 0) & (rw > 0)
    ref32 = np.where(keep, gw * np.float32(1 / 0.6), np.float32(0))
    if dtype == "bfloat16":
        np.testing.assert_array_equal(bits(got), bf16_rne_reference(ref32))
    else:
        np.testing.assert_array_equal(got.get().view(np.uint32), ref32.view(np.uint32))
        # the CPU kernel gives the same bits
        cpu = ops.dropout_undo(gy, mask.get(), p=0.4, relu_mask=r.get())
        np.testing.assert_array_equal(cpu.view(np.uint32), ref32.view(np.uint32))
    # in place over grad_y
    g2 = dev(gy)
    ops.dropout_undo(g2, mask, p=0.4, relu_mask=r, out=g2)
    np.testing.assert_array_equal(g2.get().view(np.uint8), want.get().view(np.uint8))


def test_dropout_bf16_bad_dtypes(rng):
    xb = dev(bf16(rng.standard_normal(8)))
    xf = dev(rng.standard_normal(8).astype(np.float32))
    mask = dev(np.ones(8, np.uint8))
    with pytest.raises(TypeError, match="^out: dtype float32 does not match x's bfloat16"):
        ops.dropout(xb, p=0.5, seed=1, out=xf)
    with pytest.raises(TypeError, match="^relu_mask: dtype float32 does not match grad_y's"):
        ops.dropout_undo(xb, mask, p=0.5, relu_mask=xf)
    with pytest.raises(TypeError, match="^out: dtype bfloat16 does not match grad_y's float32"):
        ops.dropout_undo(xf, mask, p=0.5, out=xb)
    with pytest.raises(TypeError, match="relu_mask"):  # the binding's own check
        _core.cuda.dropout_undo(xb, mask, nan_bf16(8), 0.5, xf)
    with pytest.raises(TypeError, match="out"):
        _core.cuda.dropout(xb, xf, dev(np.empty(8, np.uint8)), 0.5, 1, 0)


# ---------------------------------------------------------------- fc
FC_CASES = [(1, 1, 1), (3, 7, 13), (5, 96, 1000), (2, 515, 40), (17, 5, 301)]  # (N, D, F)


def fc_data(rng, case):
    n, d, f = case
    x = bf16(rng.standard_normal((n, d)))
    w = bf16(rng.normal(0, 1 / np.sqrt(d), (f, d)))
    b = rng.standard_normal(f).astype(np.float32)
    gy = bf16(rng.standard_normal((n, f)))
    return x, w, b, gy


def gemm_bound(a, b, terms, extra=0.0):
    """gamma_{2(terms+1)} (|a| |b| + extra): see the module docstring."""
    return gamma32(2 * (terms + 1)) * (np.abs(a) @ np.abs(b) + extra)


@needs_cublas
@pytest.mark.parametrize("case", FC_CASES)
def test_fc_bf16_forward(rng, case):
    x, w, b, _ = fc_data(rng, case)
    n, d = x.shape
    x64, w64 = np.float64(wide(x)), np.float64(wide(w))
    ref = x64 @ w64.T + b
    err = gemm_bound(x64, w64.T, d, np.abs(np.float64(b)))
    dx, dw, db = dev(x), dev(w), dev(b)
    y = ops.fc(dx, dw, db)
    assert y.dtype == np.float32 and y.shape == ref.shape
    assert np.all(np.abs(y.get() - ref) <= err), np.max(np.abs(y.get() - ref) - err)
    yb = ops.fc(dx, dw, db, out_dtype=BF16)
    assert yb.dtype == BF16
    np.testing.assert_array_equal(bits(yb), bf16_rne_reference(y.get()))
    assert_bf16_within(bits(yb), ref, err, "fc bf16 out")
    # scale_targets = 0 never reads out: NaN-filled targets of both dtypes
    for out in (nan_f32(ref.shape), nan_bf16(ref.shape)):
        assert ops.fc(dx, dw, db, out=out) is out
        np.testing.assert_array_equal(out.get().view(np.uint8),
                                      (y if out.dtype == np.float32 else yb).get().view(np.uint8))


@needs_cublas
def test_fc_bf16_accumulate(rng):
    """out = st * out + so * (x.w^T + b): a bf16 target is the float32 target (holding its
    widened values) after the same call, rounded once."""
    x, w, b, _ = fc_data(rng, (6, 33, 19))
    old = bf16(rng.standard_normal((6, 19)))
    dx, dw, db = dev(x), dev(w), dev(b)
    out32 = dev(wide(old))
    ops.fc(dx, dw, db, out=out32, scale_targets=0.5, scale_output=-2.0)
    outb = dev(old)
    ops.fc(dx, dw, db, out=outb, scale_targets=0.5, scale_output=-2.0)
    np.testing.assert_array_equal(bits(outb), bf16_rne_reference(out32.get()))
    ref = 0.5 * np.float64(wide(old)) - 2.0 * (np.float64(wide(x)) @ np.float64(wide(w)).T + b)
    # two more roundings (st * out, so * bias) on top of the GEMM's terms
    err = gamma32(2 * (33 + 3)) * (0.5 * np.abs(np.float64(wide(old))) + 2.0 * (
        np.abs(np.float64(wide(x))) @ np.abs(np.float64(wide(w))).T + np.abs(np.float64(b))))
    assert_bf16_within(bits(outb), ref, err, "fc accumulate")


@needs_cublas
@pytest.mark.parametrize("case", FC_CASES)
def test_fc_bf16_undo(rng, case):
    x, w, _, gy = fc_data(rng, case)
    n, d = x.shape
    f = w.shape[0]
    x64, w64, g64 = (np.float64(wide(a)) for a in (x, w, gy))
    dx, dw, dg = dev(x), dev(w), dev(gy)
    gx, gw, gb = ops.fc_undo(dg, dx, dw)
    assert gx.dtype == gw.dtype == gb.dtype == np.float32
    rx, rw = g64 @ w64, g64.T @ x64
    ex, ew = gemm_bound(g64, w64, f), gemm_bound(g64.T, x64, n)
    assert np.all(np.abs(gx.get() - rx) <= ex)
    assert np.all(np.abs(gw.get() - rw) <= ew)
    np.testing.assert_array_equal(gb.get(), ops.fc_undo(wide(gy), wide(x), wide(w))[2])
    # bf16 grad_x: the float32 one rounded once; NaN-filled targets are never read
    gxb, gwb, gbb = ops.fc_undo(dg, dx, dw, grad_x_out=nan_bf16((n, d)),
                                grad_w_out=nan_f32((f, d)), grad_b_out=nan_f32((f,)))
    assert gxb.dtype == BF16
    np.testing.assert_array_equal(bits(gxb), bf16_rne_reference(gx.get()))
    assert_bf16_within(bits(gxb), rx, ex, "grad_x bf16")
    np.testing.assert_array_equal(gwb.get(), gw.get())
    np.testing.assert_array_equal(gbb.get(), gb.get())
    gxc = ops.fc_undo(dg, dx, dw, grad_x_dtype=BF16)[0]
    np.testing.assert_array_equal(bits(gxc), bits(gxb))


@needs_cublas
def test_fc_bf16_undo_accumulate(rng):
    x, w, _, gy = fc_data(rng, (4, 21, 9))
    dx, dw, dg = dev(x), dev(w), dev(gy)
    old_x, old_w, old_b = (rng.standard_normal(s).astype(np.float32) for s in ((4, 21), (9, 21), (9,)))
    old_xb = bf16(old_x)
    g32 = ops.fc_undo(dg, dx, dw, grad_x_out=dev(wide(old_xb)), grad_w_out=dev(old_w),
                      grad_b_out=dev(old_b), scale_targets=1.0, scale_output=0.25)
    gb16 = ops.fc_undo(dg, dx, dw, grad_x_out=dev(old_xb), grad_w_out=dev(old_w),
                       grad_b_out=dev(old_b), scale_targets=1.0, scale_output=0.25)
    np.testing.assert_array_equal(bits(gb16[0]), bf16_rne_reference(g32[0].get()))
    for a, b in zip(g32[1:], gb16[1:]):
        np.testing.assert_array_equal(a.get(), b.get())


@needs_cublas
def test_fc_bf16_bad_dtypes(rng):
    x, w, b, gy = fc_data(rng, (3, 5, 4))
    dx, dw, dg = dev(x), dev(w), dev(gy)
    wf, xf = dev(wide(w)), dev(wide(x))
    with pytest.raises(TypeError, match="^w: dtype float32 does not match x's bfloat16"):
        ops.fc(dx, wf)
    with pytest.raises(TypeError, match="^b: expected dtype float32"):
        ops.fc(dx, dw, dev(bf16(b)))
    with pytest.raises(TypeError, match="^out_dtype: a bfloat16 output needs bfloat16 operands"):
        ops.fc(xf, wf, out_dtype=BF16)
    with pytest.raises(TypeError, match="^out .bfloat16.: a bfloat16 output needs"):
        ops.fc(xf, wf, out=nan_bf16((3, 4)))
    with pytest.raises(TypeError, match="^out: expected dtype float32"):
        ops.fc(dx, dw, out=nan_bf16((3, 4)), out_dtype=np.float32)
    with pytest.raises(TypeError, match="^x: dtype float32 does not match grad_y's bfloat16"):
        ops.fc_undo(dg, xf, dw)
    with pytest.raises(TypeError, match="^w: dtype float32 does not match grad_y's bfloat16"):
        ops.fc_undo(dg, dx, wf)
    with pytest.raises(TypeError, match="^grad_w_out: expected dtype float32"):
        ops.fc_undo(dg, dx, dw, grad_w_out=nan_bf16((4, 5)))
    with pytest.raises(TypeError, match="^grad_x_out: expected dtype bfloat16"):
        ops.fc_undo(dg, dx, dw, grad_x_out=nan_f32((3, 5)), grad_x_dtype=BF16)
    # the bindings check on their own
    with pytest.raises(TypeError, match="^out: a bfloat16 output needs bfloat16 operands"):
        _core.cuda.fc_forward(xf, wf, None, nan_bf16((3, 4)), 0.0, 1.0)
    with pytest.raises(TypeError, match="w"):
        _core.cuda.fc_forward(dx, wf, None, nan_f32((3, 4)), 0.0, 1.0)
    with pytest.raises(TypeError, match="out"):
        _core.cuda.fc_grad_w(dg, dx, nan_bf16((4, 5)), 0.0, 1.0)


# ---------------------------------------------------------------- softmax log loss
SOFTMAX_CASES = [(1, 2), (7, 13), (5, 1), (33, 1000)]  # (N, K)


@pytest.mark.parametrize("case", SOFTMAX_CASES)
@pytest.mark.parametrize("ltype", (np.int32, np.int64))
def test_softmax_bf16_logits(rng, case, ltype):
    n, k = case
    z = bf16(3 * rng.standard_normal((n, k)))
    labels = rng.integers(0, k, n).astype(ltype)
    dl = dev(labels)
    loss, probs = ops.softmax_log_loss(dev(z), dl)
    assert probs.dtype == np.float32
    loss32, probs32 = ops.softmax_log_loss(dev(wide(z)), dl)
    assert loss == loss32
    np.testing.assert_array_equal(probs.get(), probs32.get())
    z64 = np.float64(wide(z))
    m = z64.max(axis=1, keepdims=True)
    e64 = np.exp(z64 - m)
    s64 = e64.sum(axis=1, keepdims=True)
    ref_p = e64 / s64
    e = (np.abs(z64 - m).max(axis=1, keepdims=True) + 4) * U
    assert np.all(np.abs(probs.get() - ref_p) <= (2 * e + 2 * U) * ref_p + 2.0**-149)
    rows = np.log(s64[:, 0]) + m[:, 0] - z64[np.arange(n), labels]
    row_err = e[:, 0] + 4 * 2.0**-53 * (np.abs(np.log(s64[:, 0])) + np.abs(m[:, 0]) +
                                        np.abs(z64[np.arange(n), labels]))
    assert abs(loss - rows.mean()) <= row_err.sum() / n + 2.0**-52 * abs(rows.mean())
    pending, _ = ops.softmax_log_loss(dev(z), dl, wait=False)  # float32 total, no wait
    assert float(pending) == float(np.float32(loss * n)) / n or \
        abs(float(pending) - loss) <= 2 * U * abs(loss)


@pytest.mark.parametrize("case", SOFTMAX_CASES)
def test_softmax_undo_bf16_out(rng, case):
    n, k = case
    z = (3 * rng.standard_normal((n, k))).astype(np.float32)
    labels = rng.integers(0, k, n).astype(np.int64)
    dl = dev(labels)
    _, probs = ops.softmax_log_loss(dev(z), dl)
    for scale in (None, 2.5):
        g32 = ops.softmax_log_loss_undo(probs, dl, scale=scale)
        gb = ops.softmax_log_loss_undo(probs, dl, scale=scale, out_dtype=BF16)
        assert gb.dtype == BF16
        np.testing.assert_array_equal(bits(gb), bf16_rne_reference(g32.get()))
        onehot = np.zeros((n, k))
        onehot[np.arange(n), labels] = 1.0
        sc = 1.0 / n if scale is None else scale
        ref = (np.float64(probs.get()) - onehot) * np.float64(np.float32(sc))
        assert_bf16_within(bits(gb), ref, gamma32(2) * np.abs(ref), "softmax undo bf16")
        out = nan_bf16((n, k))  # a bf16 out decides the dtype; written without being read
        assert ops.softmax_log_loss_undo(probs, dl, scale=scale, out=out) is out
        np.testing.assert_array_equal(bits(out), bits(gb))


def test_softmax_bf16_errors(rng):
    z = bf16(rng.standard_normal((4, 6)))
    labels = dev(np.array([0, 5, 2, 9], np.int64))  # 9 is out of range
    with pytest.raises(ValueError, match=r"labels\[3\] = 9"):
        ops.softmax_log_loss(dev(z), labels)
    good = dev(np.array([0, 5, 2, 1], np.int64))
    _, probs = ops.softmax_log_loss(dev(z), good)
    with pytest.raises(TypeError, match="^out: expected dtype float32"):
        ops.softmax_log_loss_undo(probs, good, out=nan_bf16((4, 6)), out_dtype=np.float32)
    with pytest.raises(TypeError, match="^out: expected dtype bfloat16"):
        ops.softmax_log_loss_undo(probs, good, out=nan_f32((4, 6)), out_dtype=BF16)
    with pytest.raises(TypeError, match="^probs: expected dtype float32"):
        ops.softmax_log_loss_undo(dev(z), good)
    with pytest.raises(TypeError, match="^logits: expected dtype float32 .or bfloat16"):
        ops.softmax_log_loss(dev(np.zeros((4, 6), np.int32)), good)


# ---------------------------------------------------------------- normalize_batch
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 3, 5, 7), (2, 3, 17, 9)])
def test_normalize_batch_bf16(rng, shape):
    b, c, s, t = shape
    h, w = s + 3, t + 2
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    mean = (rng.random((c, h, w)) * 255).astype(np.float32)
    offsets = np.stack([rng.integers(0, h - s + 1, b), rng.integers(0, w - t + 1, b),
                        rng.integers(0, 2, b)], axis=1).astype(np.int32)
    shift = rng.standard_normal((b, c)).astype(np.float32) * 10
    scale = 1 / 58.4
    want = ops.normalize_batch(x, mean, offsets, shift, scale=scale)  # float32, CPU
    args = (dev(x), dev(mean), dev(offsets), dev(shift))
    y = ops.normalize_batch(*args, scale=scale, out_dtype=BF16)
    assert y.dtype == BF16 and y.shape == shape
    np.testing.assert_array_equal(bits(y), bf16_rne_reference(want))
    out = nan_bf16(shape)
    assert ops.normalize_batch(*args, scale=scale, out=out) is out
    np.testing.assert_array_equal(bits(out), bits(y))
    with pytest.raises(TypeError, match="^out: expected dtype bfloat16"):
        ops.normalize_batch(*args, scale=scale, out=nan_f32(shape), out_dtype=BF16)
    bad = offsets.copy()
    bad[0, 0] = h  # the deferred check works for the bf16 instantiation too
    ops.normalize_batch(args[0], args[1], dev(bad), args[3], scale=scale, out_dtype=BF16)
    with pytest.raises(ValueError, match=r"offsets\[0, 0\]"):
        cuda.synchronize()
