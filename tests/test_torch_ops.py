"""alexnet_ext.torch custom ops: torch.library.opcheck (schema, fake tensors, autograd
registration, AOT dispatch with dynamic shapes), argument errors, zero-copy, and the ops and
their gradients against plain torch computed in float64 with a stated bound.

Bound used for every comparison (float32 kernels vs a float64 reference on the same float32
inputs): a sum of L terms rounded in float32 is off by at most ``L * eps32 * sum|terms|``
(eps32 = 2**-24, any summation order). ``scale`` below is that ``sum|terms|`` computed in float64
(the same expression on absolute values) for the linear ops; for the nonlinear ones (response
norm, softmax) it is the largest magnitude of the reference. We allow a factor 4 over ``L*eps``
for the few roundings around the sum (products, the power, the division).
"""
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
from torch_helpers import assert_within, lrn_reference  # noqa: E402

from alexnet_ext.torch import _ops as K  # noqa: E402
from alexnet_ext.torch import functional as AF  # noqa: E402


def r(gen, *shape, grad=True):
    t = torch.randn(*shape, generator=gen)
    return t.requires_grad_(grad)


@pytest.fixture
def gen(rng):
    return torch.Generator().manual_seed(int(rng.integers(1 << 31)))


def test_import_does_not_import_torch():
    code = ("import sys, alexnet_ext, alexnet_ext.ops, alexnet_ext.nn, alexnet_ext.cuda, "
            "alexnet_ext.export; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def opcheck_cases(gen):
    x = r(gen, 2, 6, 7, 9)
    w = r(gen, 4, 3, 3, 2)
    conv = dict(stride=[2, 1], padding=[1, 0], groups=2, ceil_mode=True)
    geo = (conv["stride"], conv["padding"], 2, True)
    hid = r(gen, *K.filter_acts(x, w, None, *geo).shape)
    y, d = K.response_norm(x.detach(), 5, 2.0, 0.1, 0.75, False)
    mp = ([3, 2], [2, 2], [1, 1], True)
    ym, sw = K.max_pool(x.detach(), *mp)
    ap = ([3, 3], [2, 1], [1, 0], True)
    ya = K.avg_pool(x.detach(), *ap)
    labels = torch.randint(0, 7, (5,), generator=gen)
    # channels-last operands run the NHWC kernels: fake strides, autograd and double backward too
    cl = dict(memory_format=torch.channels_last)
    xc, hc = x.detach().to(**cl).requires_grad_(), hid.detach().to(**cl).requires_grad_()
    return {
        "filter_acts_cl_fp32": (K.filter_acts, (xc, w, r(gen, 4), *geo, "fp32")),
        "img_acts_cl": (K.img_acts, (hc, w, [7, 9], *geo)),
        "weight_acts_cl": (K.weight_acts, (xc, hid, [3, 2], *geo)),
        "conv_bias_grad_cl": (K.conv_bias_grad, (hc,)),
        "response_norm_cl": (K.response_norm, (xc, 5, 2.0, 0.1, 0.75, False)),
        "response_norm_undo_cl": (K.response_norm_undo, (torch.randn(x.shape, generator=gen).to(**cl),
                                                         x.detach().to(**cl), y, d, 5, 2.0, 0.1,
                                                         0.75, False)),
        "max_pool_cl": (K.max_pool, (xc, *mp)),
        "max_pool_undo_cl": (K.max_pool_undo, (r(gen, *ym.shape).detach().to(**cl).requires_grad_(),
                                               sw, [7, 9])),
        "avg_pool_cl": (K.avg_pool, (xc, *ap)),
        "avg_pool_undo_cl": (K.avg_pool_undo, (r(gen, *ya.shape).detach().to(**cl).requires_grad_(),
                                               [7, 9], *ap)),
        "filter_acts": (K.filter_acts, (x, w, r(gen, 4), *geo)),
        "filter_acts_nobias_floor": (K.filter_acts, (r(gen, 1, 3, 5, 5), r(gen, 5, 3, 3, 3), None,
                                                     [1, 1], [0, 0], 1, False)),
        "img_acts": (K.img_acts, (hid, w, [7, 9], *geo)),
        "weight_acts": (K.weight_acts, (x, hid, [3, 2], *geo)),
        "conv_bias_grad": (K.conv_bias_grad, (hid,)),
        "response_norm": (K.response_norm, (r(gen, 2, 7, 3, 5), 5, 2.0, 0.1, 0.75, False)),
        "response_norm_even_aos": (K.response_norm, (r(gen, 1, 3, 2, 2), 4, 1.0, 0.3, 0.75, True)),
        # no double backward for response_norm_undo: inputs without requires_grad
        "response_norm_undo": (K.response_norm_undo, (torch.randn(x.shape, generator=gen),
                                                      x.detach(), y, d, 5, 2.0, 0.1, 0.75, False)),
        "max_pool": (K.max_pool, (x, *mp)),
        "max_pool_undo": (K.max_pool_undo, (r(gen, *ym.shape), sw, [7, 9])),
        "avg_pool": (K.avg_pool, (x, *ap)),
        "avg_pool_undo": (K.avg_pool_undo, (r(gen, *ya.shape), [7, 9], *ap)),
        "dropout": (K.dropout, (r(gen, 3, 5, 7), 0.5, 123, 4)),
        "dropout_undo": (K.dropout_undo, (r(gen, 3, 5, 7),
                                          (torch.rand(3, 5, 7, generator=gen) > 0.5).to(torch.uint8),
                                          0.5)),
        "softmax_log_loss": (K.softmax_log_loss, (r(gen, 5, 7), labels)),
        "softmax_log_loss_undo": (K.softmax_log_loss_undo, (r(gen, 5, 7), labels.int(), 0.2)),
    }


CASES = list(opcheck_cases(torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("case", CASES)
def test_opcheck(case, gen):
    op, args = opcheck_cases(gen)[case]
    torch.library.opcheck(op, args)


def test_every_op_is_registered():
    names = {n for n in dir(torch.ops.alexnet_ext) if not n.startswith("_")}
    expected = set(K.__all__)
    assert expected <= names, expected - names
    cases = opcheck_cases(torch.Generator().manual_seed(0))
    assert {op._name for op, _ in cases.values()} == expected


# ---- errors and conventions -----------------------------------------------------------------

def test_errors_name_the_argument():
    x = torch.randn(2, 4, 5, 5)
    with pytest.raises(TypeError, match="images: expected dtype float32 or bfloat16, got float64"):
        AF.conv2d(x.double(), torch.randn(3, 4, 3, 3))
    with pytest.raises(TypeError, match="images: bfloat16 runs on the GPU only"):
        AF.conv2d(x.bfloat16(), torch.randn(3, 4, 3, 3).bfloat16())
    with pytest.raises(TypeError, match="filters: bfloat16 runs on the GPU only"):
        AF.conv2d(x, torch.randn(3, 4, 3, 3).bfloat16())
    with pytest.raises(ValueError, match="precision: 'tf32' runs on the GPU only"):
        K.filter_acts(x, torch.randn(3, 4, 3, 3), None, [1, 1], [0, 0], 1, False, "tf32")
    with pytest.raises(ValueError, match="precision: expected None, 'fp32', 'tf32' or 'bf16'"):
        K.img_acts(torch.randn(2, 3, 3, 3), torch.randn(3, 4, 3, 3), [5, 5], [1, 1], [0, 0], 1,
                   False, "fp16")
    for op in (AF.cross_map_lrn, AF.max_pool2d, lambda x: AF.dropout(x, seed=1)):
        with pytest.raises(TypeError, match="x: bfloat16 runs on the GPU only"):
            op(x.bfloat16())
        with pytest.raises(TypeError, match="x: expected dtype float32 or bfloat16, got float16"):
            op(x.half())
    with pytest.raises(TypeError, match="labels: expected dtype int32 or int64, got float32"):
        AF.softmax_log_loss(torch.randn(3, 4), torch.zeros(3))
    with pytest.raises(ValueError, match="filters"):
        AF.conv2d(x, torch.randn(3, 5, 3, 3))               # 5 input channels for 4
    with pytest.raises(ValueError, match="labels"):
        AF.softmax_log_loss(torch.randn(3, 4), torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match="p: expected a drop probability"):
        AF.dropout(x, p=1.0, seed=1)
    with pytest.raises(ValueError, match="seed"):
        AF.dropout(x, p=0.5, seed=-1)
    with pytest.raises(ValueError, match="size"):
        AF.max_pool2d(x, size=7, stride=1)
    with pytest.raises(ValueError, match="blocks"):
        AF.cross_map_lrn(x, blocks=3)
    # meta tensors take the fake implementations: shapes without running anything
    y = AF.conv2d(x.to("meta"), torch.randn(3, 2, 3, 3, device="meta"), groups=2, stride=2,
                  ceil_mode=True)
    assert y.shape == (2, 3, 2, 2) and y.device.type == "meta"
    y, s = AF.max_pool2d(x.to("meta"), return_switches=True, ceil_mode=True)
    assert y.shape == s.shape == (2, 4, 2, 2) and s.dtype == torch.int32


def test_fake_conv_dtypes_and_memory_formats():
    """What the fake implementations promise (and opcheck holds the real ones to): filter_acts
    and img_acts return the operands' dtype in the primary operand's memory format;
    weight_acts float32 in the images' format; conv_bias_grad float32."""
    cl = torch.channels_last
    for dtype in (torch.float32, torch.bfloat16):
        for fmt in (torch.contiguous_format, cl):
            x = torch.empty(2, 4, 9, 8, device="meta", dtype=dtype, memory_format=fmt)
            w = torch.empty(6, 2, 3, 3, device="meta", dtype=dtype)
            y = K.filter_acts(x, w, None, [2, 2], [1, 1], 2, False)
            assert y.shape == (2, 6, 5, 4) and y.dtype == dtype
            assert y.is_contiguous(memory_format=fmt)
            gx = K.img_acts(y, w, [9, 8], [2, 2], [1, 1], 2, False)
            assert gx.shape == x.shape and gx.dtype == dtype and gx.is_contiguous(memory_format=fmt)
            gw = K.weight_acts(x, y, [3, 3], [2, 2], [1, 1], 2, False)
            assert gw.shape == w.shape and gw.dtype == torch.float32
            assert gw.is_contiguous(memory_format=fmt)
            assert K.conv_bias_grad(y).dtype == torch.float32


def test_zero_copy_and_non_contiguous(gen):
    x = torch.randn(2, 6, 8, 8, generator=gen)
    y, switches = K.max_pool(x, [3, 3], [2, 2], [0, 0], False)
    # the result wraps the kernel's NumPy array: writing through numpy() shows in the tensor
    y.numpy()[0, 0, 0, 0] = 123.0
    assert y[0, 0, 0, 0] == 123.0
    # a non-contiguous input is made contiguous: same result as the contiguous copy
    xt = torch.randn(2, 8, 8, 6, generator=gen).permute(0, 3, 1, 2)
    assert not xt.is_contiguous()
    torch.testing.assert_close(AF.cross_map_lrn(xt), AF.cross_map_lrn(xt.contiguous()),
                               rtol=0, atol=0)
    # (a non-contiguous tensor that is not channels-last: the NCHW kernels on a contiguous copy)
    xs = torch.randn(2, 6, 8, 8, generator=gen).transpose(2, 3)
    assert not xs.is_contiguous() and not xs.is_contiguous(memory_format=torch.channels_last)
    w = torch.randn(4, 6, 3, 3, generator=gen).transpose(2, 3)
    torch.testing.assert_close(AF.conv2d(xs, w), AF.conv2d(xs.contiguous(), w.contiguous()),
                               rtol=0, atol=0)


# ---- values and gradients against float64 torch ----------------------------------------------

def grads(f, inputs, gy):
    """f(*inputs), and the gradients of <f(*inputs), gy> w.r.t. every input."""
    ins = [t.detach().clone().requires_grad_(True) for t in inputs]
    y = f(*ins)
    y.backward(gy.to(y.dtype))
    return y.detach(), [t.grad for t in ins]


@pytest.mark.parametrize("cfg", [
    dict(stride=1, padding=1, groups=1, ceil_mode=False),
    dict(stride=(2, 3), padding=(2, 0), groups=2, ceil_mode=True),
    dict(stride=3, padding=1, groups=3, ceil_mode=False),
])
def test_conv_vs_float64(cfg, gen):
    c, f, k = 6, 6, (3, 4)
    x = torch.randn(3, c, 11, 10, generator=gen)
    w = torch.randn(f, c // cfg["groups"], *k, generator=gen)
    b = torch.randn(f, generator=gen)
    gy = torch.randn(AF.conv2d(x, w, b, **cfg).shape, generator=gen)
    ours, (gx, gw, gb) = grads(lambda x, w, b: AF.conv2d(x, w, b, **cfg), (x, w, b), gy)

    def ref(x, w, b):
        return AF.conv2d(x, w, b, pure=True, **cfg)
    d = [t.double() for t in (x, w, b)]
    want, (rx, rw, rb) = grads(ref, d, gy.double())
    # scales: the same sums over absolute values
    sy, (sx, sw, sb) = grads(ref, [t.abs() for t in d], gy.double().abs())
    L = (c // cfg["groups"]) * k[0] * k[1] + 1          # terms per output
    assert_within(ours, want, sy, L, "y")
    assert_within(gx, rx, sx, f * k[0] * k[1], "grad x")
    assert_within(gw, rw, sw, x.shape[0] * ours.shape[2] * ours.shape[3], "grad w")
    assert_within(gb, rb, sb, x.shape[0] * ours.shape[2] * ours.shape[3], "grad b")


@pytest.mark.parametrize("w_channels_last", [False, True])
def test_conv_channels_last_vs_float64(w_channels_last, gen):
    """Channels-last images run the NHWC kernels: the result and the images' gradient stay
    channels-last, and everything is within the same bounds as the NCHW path."""
    cfg = dict(stride=(2, 1), padding=(1, 2), groups=2, ceil_mode=True)
    c, f, k = 6, 4, (3, 5)
    cl = torch.channels_last
    x = torch.randn(3, c, 9, 10, generator=gen).to(memory_format=cl)
    w = torch.randn(f, c // 2, *k, generator=gen)
    if w_channels_last:
        w = w.to(memory_format=cl)
    b = torch.randn(f, generator=gen)
    fwd = lambda x, w, b: AF.conv2d(x, w, b, **cfg)  # noqa: E731
    gy = torch.randn(fwd(x, w, b).shape, generator=gen)
    ins = [x.detach().clone(memory_format=torch.preserve_format).requires_grad_(),
           w.detach().clone(memory_format=torch.preserve_format).requires_grad_(),
           b.detach().clone().requires_grad_()]
    ours = fwd(*ins)
    ours.backward(gy)
    assert ours.is_contiguous(memory_format=cl) and not ours.is_contiguous()
    assert ins[0].grad.is_contiguous(memory_format=cl)
    ref = lambda x, w, b: AF.conv2d(x, w, b, pure=True, **cfg)  # noqa: E731
    d = [t.double().contiguous() for t in (x, w, b)]
    want, (rx, rw, rb) = grads(ref, d, gy.double())
    sy, (sx, sw, sb) = grads(ref, [t.abs() for t in d], gy.double().abs())
    per_out = ours.shape[0] * ours.shape[2] * ours.shape[3]
    assert_within(ours.detach(), want, sy, (c // 2) * k[0] * k[1] + 1, "y")
    assert_within(ins[0].grad, rx, sx, f * k[0] * k[1], "grad x")
    assert_within(ins[1].grad, rw, sw, per_out, "grad w")
    assert_within(ins[2].grad, rb, sb, per_out, "grad b")


CL_OPS = {
    "lrn": lambda x: AF.cross_map_lrn(x * 3, size=5, alpha=0.05, beta=0.75),
    "lrn_blocks": lambda x: AF.cross_map_lrn(x * 3, size=3, alpha=0.5, blocks=2),
    "max_pool": lambda x: AF.max_pool2d(x, size=3, stride=2, padding=1, ceil_mode=True),
    "avg_pool": lambda x: AF.avg_pool2d(x, size=(3, 2), stride=(2, 1), padding=1, ceil_mode=True),
}


@pytest.mark.parametrize("name", list(CL_OPS))
def test_lrn_and_pool_channels_last_equal_nchw(name, gen):
    """Channels-last x runs the NHWC kernels, which equal the NCHW ones bit for bit (the same
    arithmetic through other strides): result and gradient equal, and both stay channels-last."""
    f = CL_OPS[name]
    x = torch.randn(2, 8, 9, 7, generator=gen)
    outs = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        xi = x.clone().contiguous(memory_format=fmt).requires_grad_()
        y = f(xi)
        y.backward(torch.arange(y.numel(), dtype=torch.float32).reshape(y.shape).sin())
        outs.append((y.detach(), xi.grad))
    (y0, g0), (y1, g1) = outs
    assert y1.is_contiguous(memory_format=torch.channels_last) and not y1.is_contiguous()
    assert g1.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y1, y0, rtol=0, atol=0)
    torch.testing.assert_close(g1, g0, rtol=0, atol=0)


@pytest.mark.parametrize("size,aos,blocks", [(5, False, 1), (4, True, 2), (9, False, 1)])
def test_lrn_vs_float64(size, aos, blocks, gen):
    x = torch.randn(2, 8, 5, 6, generator=gen) * 3
    args = dict(size=size, k=2.0, alpha=0.05, beta=0.75, alpha_over_size=aos, blocks=blocks)
    gy = torch.randn(x.shape, generator=gen)
    ours, (gx,) = grads(lambda x: AF.cross_map_lrn(x, **args), (x,), gy)
    want, (rx,) = grads(lambda x: lrn_reference(x, **args), (x.double(),), gy.double())
    # the pure torch form is the same function (checked here in float64 too)
    pure, (px,) = grads(lambda x: AF.cross_map_lrn(x, pure=True, **args), (x.double(),),
                        gy.double())
    torch.testing.assert_close(pure, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(px, rx, rtol=1e-12, atol=1e-12)
    L = size + 2                                         # the window sum, then denom and power
    assert_within(ours, want, want.abs().max(), L, "y")
    assert_within(gx, rx, rx.abs().max(), 2 * L, "grad x")  # two window sums in the backward


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("geo", [dict(size=3, stride=2, padding=0, ceil_mode=False),
                                 dict(size=(3, 2), stride=(2, 1), padding=(1, 1), ceil_mode=True)])
def test_pool_vs_float64(mode, geo, gen):
    x = torch.randn(2, 3, 9, 8, generator=gen)
    f = AF.max_pool2d if mode == "max" else AF.avg_pool2d
    gy = torch.randn(f(x, **geo).shape, generator=gen)
    ours, (gx,) = grads(lambda x: f(x, **geo), (x,), gy)
    want, (rx,) = grads(lambda x: f(x, pure=True, **geo), (x.double(),), gy.double())
    if mode == "max":   # a maximum is exact; its gradient sums overlapping windows (<= 4 here)
        torch.testing.assert_close(ours.double(), want, rtol=0, atol=0)
        sx = grads(lambda x: f(x, pure=True, **geo), (x.double(),), gy.double().abs())[1][0]
        assert_within(gx, rx, sx, 4, "grad x")
    else:
        sy, (sx,) = grads(lambda x: f(x, pure=True, **geo), (x.double().abs(),), gy.double().abs())
        assert_within(ours, want, sy, 6 + 1, "y")         # window sum, then the division
        assert_within(gx, rx, sx, 6 + 1, "grad x")
    y, s = f(x, return_switches=True, **geo) if mode == "max" else (None, None)
    if mode == "max":   # switches: torch's return_indices convention (flat iy*W + ix)
        _, idx = F.max_pool2d(x, geo["size"], geo["stride"], geo["padding"],
                              ceil_mode=geo["ceil_mode"], return_indices=True)
        assert s.dtype == torch.int32
        torch.testing.assert_close(s.long(), idx, rtol=0, atol=0)


def test_dropout_masks_and_gradient(gen):
    from alexnet_ext import ops
    x = torch.randn(4, 33, generator=gen)
    y, mask = AF.dropout(x, p=0.4, seed=2**40 + 5, offset=7, return_mask=True)
    ry, rmask = ops.dropout(x.numpy(), p=0.4, seed=2**40 + 5, offset=7)
    assert np.array_equal(mask.numpy(), rmask) and np.array_equal(y.numpy(), ry)
    scale = np.float32(1 / (1 - 0.4))
    np.testing.assert_array_equal(y.numpy(), np.where(rmask == 1, x.numpy() * scale, 0))
    gy = torch.randn(x.shape, generator=gen)
    _, (gx,) = grads(lambda x: AF.dropout(x, p=0.4, seed=2**40 + 5, offset=7), (x,), gy)
    np.testing.assert_array_equal(gx.numpy(), np.where(rmask == 1, gy.numpy() * scale, 0))
    assert AF.dropout(x, p=0.4, seed=1, training=False) is x


def test_softmax_log_loss_vs_float64(gen):
    logits = torch.randn(6, 11, generator=gen) * 4
    labels = torch.randint(0, 11, (6,), generator=gen)
    for lab in (labels, labels.int()):
        loss, (g,) = grads(lambda z: AF.softmax_log_loss(z, lab) * 3.0, (logits,),
                           torch.tensor(1.0))
        want, (rg,) = grads(lambda z: F.cross_entropy(z, lab.long()) * 3.0, (logits.double(),),
                            torch.tensor(1.0, dtype=torch.float64))
        assert loss.shape == () and loss.dtype == torch.float32
        assert_within(loss, want, want.abs(), 11 + 2, "loss")
        assert_within(g, rg, 3.0 / 6, 11 + 2, "grad logits")   # |probs - onehot| <= 1, * 3/N


@pytest.mark.parametrize("case", ["conv", "max_pool", "avg_pool", "softmax"])
def test_double_backward_vs_float64(case, gen):
    """Gradients of a gradient (through the undo ops' own autograd formulas) against torch's
    double backward of the pure float64 functions. Two chained sums: bound with L = the product
    of both accumulation lengths, relative to the largest reference entry."""
    x = torch.randn(2, 4, 7, 6, generator=gen)
    w = torch.randn(6, 2, 3, 3, generator=gen)
    labels = torch.randint(0, 6, (2,), generator=gen)
    fns = {
        "conv": (lambda x, w, pure: AF.conv2d(x, w, padding=1, stride=(2, 1), groups=2, pure=pure),
                 (2 * 9) * (6 * 9 * 2)),
        "max_pool": (lambda x, w, pure: AF.max_pool2d(x * w.sum(), size=3, stride=2, padding=1,
                                                      pure=pure), 4 * 54),
        "avg_pool": (lambda x, w, pure: AF.avg_pool2d(x * w.sum(), size=3, stride=2, padding=1,
                                                      pure=pure), 10 * 54),
        "softmax": (lambda x, w, pure: AF.softmax_log_loss(
            AF.conv2d(x, w, stride=3, groups=2, pure=True).flatten(1)[:, :6] * 0.5, labels,
            pure=pure), 36 * 8),
    }
    f, L = fns[case]

    def run(dtype, pure):
        xx = x.detach().to(dtype).clone().requires_grad_(True)
        ww = w.detach().to(dtype).clone().requires_grad_(True)
        y = f(xx, ww, pure)
        gy = torch.cos(torch.arange(y.numel(), dtype=dtype)).reshape(y.shape)
        gx, = torch.autograd.grad(y, xx, gy, create_graph=True)
        (gx * gx).sum().backward()
        return xx.grad, ww.grad

    ours = run(torch.float32, False)
    want = run(torch.float64, True)
    nonzero = 0
    for a, b, n, t in zip(ours, want, ("x", "w"), (x, w)):
        # None: |grad x|^2 does not depend on this input (autograd found no path): zero
        a = torch.zeros(t.shape) if a is None else a
        b = torch.zeros(t.shape, dtype=torch.float64) if b is None else b
        nonzero += bool(b.any())
        assert_within(a, b, b.abs().max(), L, f"{case}: d/d{n} |grad x|^2")
    assert nonzero


def test_lrn_denoms_and_probs_are_differentiable(gen):
    """The second outputs (response norm's denoms, the softmax's probs) carry gradients too."""
    x = torch.randn(2, 7, 3, 4, generator=gen)
    gy, gd = torch.randn(x.shape, generator=gen), torch.randn(x.shape, generator=gen)
    xx = x.clone().requires_grad_(True)
    y, d = K.response_norm(xx, 4, 2.0, 0.3, 0.75, False)
    (y * gy + d * gd).sum().backward()
    xr = x.double().requires_grad_(True)
    a, lo, hi = 0.3, 2, 1                                     # window i-2 .. i+1 for size 4
    sq = F.pad(xr * xr, (0, 0, 0, 0, lo, hi))
    dr = 2.0 + a * sum(sq[:, j:j + 7] for j in range(4))
    yr = xr * dr ** -0.75
    (yr * gy.double() + dr * gd.double()).sum().backward()
    assert_within(xx.grad, xr.grad, xr.grad.abs().max(), 2 * 6, "grad x via y and denoms")
    z = torch.randn(4, 5, generator=gen)
    labels = torch.randint(0, 5, (4,), generator=gen)
    gp = torch.randn(4, 5, generator=gen)
    zz = z.clone().requires_grad_(True)
    loss, probs = K.softmax_log_loss(zz, labels)
    (loss + (probs * gp).sum()).backward()
    zr = z.double().requires_grad_(True)
    (F.cross_entropy(zr, labels) + (zr.softmax(1) * gp.double()).sum()).backward()
    assert_within(zz.grad, zr.grad, zr.grad.abs().max(), 5 + 2, "grad logits via loss and probs")


def test_channels_last_conv_compiles_and_exports(gen):
    """torch.compile (fullgraph, dynamic shapes) and torch.export trace the channels-last path:
    the fake implementation's strides match the real op's, the result stays channels-last."""
    import alexnet_ext.torch as at

    m = at.Conv2d(4, 6, 3, padding=1, init_std=0.1)
    x = torch.randn(2, 4, 9, 7, generator=gen).to(memory_format=torch.channels_last)
    want = m(x)
    got = torch.compile(m, backend="aot_eager", fullgraph=True, dynamic=True)(x.requires_grad_())
    got.sum().backward()
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert x.grad.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    exported = torch.export.export(m, (x.detach(),)).module()(x.detach())
    assert exported.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(exported, want, rtol=0, atol=0)


def test_cpu_autocast_runs_the_float32_kernels(gen):
    """Under torch.autocast("cpu", bfloat16) a torch layer hands our ops bfloat16 activations:
    the CPU kernels are float32, so the ops take them cast to float32 (the same result as an
    explicit .float()), and the gradient reaches the bfloat16 input through the cast. Outside
    autocast the same call is refused by name."""
    x = torch.randn(2, 4, 9, 8, generator=gen).bfloat16()
    w = torch.randn(6, 4, 3, 3, generator=gen)
    ops = {"conv2d": lambda x: AF.conv2d(x, w, padding=1),
           "lrn": lambda x: AF.cross_map_lrn(x, alpha=0.5),
           "max_pool": lambda x: AF.max_pool2d(x, ceil_mode=True),
           "avg_pool": lambda x: AF.avg_pool2d(x, size=3, stride=2),
           "dropout": lambda x: AF.dropout(x, p=0.25, seed=3)}
    for name, f in ops.items():
        xi = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = f(xi)
        assert y.dtype == torch.float32, name
        torch.testing.assert_close(y, f(x.float()), rtol=0, atol=0, msg=name)
        y.sum().backward()
        assert xi.grad.dtype == torch.bfloat16 and bool(torch.isfinite(xi.grad.float()).all()), name
        with pytest.raises(TypeError, match="bfloat16 runs on the GPU only"):
            f(x)
    logits = torch.randn(5, 7, generator=gen).bfloat16()
    labels = torch.arange(5) % 7
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = AF.softmax_log_loss(logits, labels)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, AF.softmax_log_loss(logits.float(), labels), rtol=0, atol=0)
    with pytest.raises(TypeError, match="expected dtype float32 or bfloat16, got float64"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            AF.conv2d(x.double(), w.double())       # float64 is not autocast's to change
