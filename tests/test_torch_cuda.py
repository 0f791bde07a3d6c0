"""alexnet_ext.torch on CUDA tensors (run by tools/gpu_check.sh, stage "torch"): every op and
its gradient on the GPU against the same op on the CPU, zero-copy wrapping, torch's current
stream (a side stream, no synchronisation in between), torch.compile and a whole model.

Needs a GPU build of alexnet_ext (the conftest skips "cuda" tests otherwise) and a CUDA build
of torch (skipped otherwise: the CPU wheel of CI has none)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("torch has no usable CUDA device (CPU wheel or no GPU)", allow_module_level=True)

import alexnet_ext.torch as at  # noqa: E402
from alexnet_ext.torch import _ops as K  # noqa: E402
from alexnet_ext.torch import functional as AF  # noqa: E402

pytestmark = pytest.mark.cuda
DEV = torch.device("cuda")


def run_both(f, inputs, seed=0):
    """f on CPU tensors and on their CUDA copies; outputs and input gradients of both."""
    out = []
    g = torch.Generator().manual_seed(seed)
    for dev in ("cpu", "cuda"):
        ins = [t.detach().to(dev).clone().requires_grad_(t.is_floating_point()) for t in inputs]
        y = f(*ins)
        gy = torch.randn(y.shape, generator=g).to(dev)
        g.manual_seed(seed)
        y.backward(gy)
        out.append((y.detach().cpu(), [None if t.grad is None else t.grad.cpu() for t in ins]))
    return out


def close(a, b, what, rtol=2e-5):
    torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * float(b.abs().max() + 1e-30), msg=what)


CASES = {
    "conv": (lambda x, w, b: AF.conv2d(x, w, b, stride=(2, 1), padding=(1, 2), groups=2,
                                       ceil_mode=True), [(3, 6, 13, 11), (8, 3, 5, 3), (8,)]),
    "lrn": (lambda x: AF.cross_map_lrn(x * 3, size=5, alpha=0.05, blocks=2), [(2, 8, 6, 5)]),
    "lrn_aos": (lambda x: AF.cross_map_lrn(x, size=4, alpha=0.5, alpha_over_size=True),
                [(2, 7, 4, 5)]),
    "max_pool": (lambda x: AF.max_pool2d(x, size=3, stride=2, padding=1, ceil_mode=True),
                 [(2, 3, 9, 8)]),
    "avg_pool": (lambda x: AF.avg_pool2d(x, size=(3, 2), stride=(2, 1), padding=1, ceil_mode=True),
                 [(2, 3, 9, 8)]),
    "dropout": (lambda x: AF.dropout(x, p=0.3, seed=2**40 + 1, offset=5), [(4, 37)]),
    "softmax_log_loss": (lambda z: AF.softmax_log_loss(z, torch.arange(5, device=z.device) % 7),
                         [(5, 7)]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_op_cuda_vs_cpu(case, rng):
    f, shapes = CASES[case]
    inputs = [torch.from_numpy(rng.standard_normal(s).astype(np.float32)) for s in shapes]
    (yc, gc), (yg, gg) = run_both(f, inputs, seed=int(rng.integers(1 << 30)))
    # max pool's choices and dropout's masks are the same bit for bit on both sides; max pool's
    # gradient sums overlapping windows, maybe in another order
    exact = case in ("max_pool", "dropout")
    close(yg, yc, f"{case} forward", rtol=0 if exact else 2e-5)
    for i, (a, b) in enumerate(zip(gg, gc)):
        if b is not None:
            close(a, b, f"{case} grad {i}", rtol=0 if case == "dropout" else 2e-5)


def test_zero_copy_and_out():
    x = torch.randn(2, 6, 9, 9, device=DEV)
    a = K._arr(x)
    assert a.__cuda_array_interface__["data"][0] == x.data_ptr()      # a view, not a copy
    y, s = K.max_pool(x, [3, 3], [2, 2], [0, 0], False)
    assert y.device == x.device and s.dtype == torch.int32
    # a result shares memory with the kernel's array: wrapping it again gives the same pointer
    assert K._arr(y).__cuda_array_interface__["data"][0] == y.data_ptr()


def test_side_stream_ordering(rng):
    """Work queued by torch on a side stream, our ops, then torch again, all on that stream and
    without any synchronisation in between: the kernels must run in stream order."""
    x0 = torch.from_numpy(rng.standard_normal((8, 16, 32, 32)).astype(np.float32))
    w = torch.from_numpy(rng.standard_normal((16, 16, 3, 3)).astype(np.float32) * 0.1)
    want = AF.cross_map_lrn(AF.conv2d(x0 * 2 + 1, w, padding=1), alpha=0.1)
    s = torch.cuda.Stream()
    xg, wg = x0.to(DEV), w.to(DEV)
    torch.cuda.synchronize()
    with torch.cuda.stream(s):
        h = xg * 2 + 1                          # torch kernel on s
        for _ in range(20):                     # a queue deep enough that order matters
            h = h * 1.0
        y = AF.cross_map_lrn(AF.conv2d(h, wg, padding=1), alpha=0.1)   # ours, on s
        y = y + 0.0                             # torch again, reading our result
    s.synchronize()
    close(y.cpu(), want, "side stream", rtol=2e-5)


def test_compile_fullgraph_cuda(rng):
    def f(x, w, labels):
        h = AF.max_pool2d(AF.cross_map_lrn(torch.relu(AF.conv2d(x, w, padding=1))), ceil_mode=True)
        return AF.softmax_log_loss(h.flatten(1)[:, :5], labels)
    x = torch.randn(3, 4, 9, 9, device=DEV)
    w = torch.randn(6, 4, 3, 3, device=DEV, requires_grad=True)
    labels = torch.randint(0, 5, (3,), device=DEV)
    eager = f(x, w, labels)
    (ge,) = torch.autograd.grad(eager, w)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    got = compiled(x, w, labels)
    (gg,) = torch.autograd.grad(got, w)
    close(got, eager, "compiled loss", rtol=1e-6)
    close(gg, ge, "compiled grad", rtol=1e-6)


def test_model_on_cuda(rng):
    mod = at.from_model("alexnet-small", seed=3).eval()
    x = torch.from_numpy(rng.standard_normal((4,) + mod.spec.input_shape).astype(np.float32))
    with torch.no_grad():
        want = mod(x)
        got = mod.to(DEV)(x.to(DEV)).cpu()
    close(got, want, "alexnet-small logits", rtol=1e-4)
    mod.train()
    opt = torch.optim.SGD(mod.parameters(), lr=0.01, momentum=0.9)
    labels = torch.from_numpy(rng.integers(0, 10, 4)).to(DEV)
    for step in range(3):
        mod.step = step
        loss = AF.softmax_log_loss(mod(x.to(DEV)), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(loss).item()


def _conv_vs_float64(x, w, b, gy, cfg, precision, rel_in, rel_out):
    """filter_acts with autograd at ``precision`` against float64 torch on the same values.

    Bound per entry: the operands as the kernels see them are off by at most ``rel_in``
    relatively (0 for fp32 and bf16 operands, 2**-11 each for tf32's rounding of float32), so a
    product by 2*rel_in + rel_in**2; the float32 sum of L products adds gamma_L; the result stored
    in a narrower dtype adds ``rel_out`` of |value| (2**-8 for bfloat16, round to nearest):
    |got - want| <= rel_out*|want| + (1 + rel_out) * (2*rel_in + rel_in**2 + gamma_(L+2)) * sum|ab|."""
    ins = [t.detach().clone(memory_format=torch.preserve_format).requires_grad_() for t in (x, w, b)]
    y = K.filter_acts(*ins[:2], ins[2], *cfg, precision)
    y.backward(gy)
    ref = lambda x, w, b: AF.conv2d(x, w, b, stride=cfg[0], padding=cfg[1], groups=cfg[2],  # noqa: E731
                                    ceil_mode=cfg[3], pure=True)
    d = [t.detach().cpu().double().contiguous().requires_grad_() for t in (x, w, b)]
    want = ref(*d)
    want.backward(gy.cpu().double())
    a = [t.detach().cpu().double().abs().requires_grad_() for t in (x, w, b)]
    scale = ref(*a)
    scale.backward(gy.cpu().double().abs())
    n, f, ho, wo = y.shape
    kh, kw = w.shape[2:]
    terms = {"y": w.shape[1] * kh * kw + 1, "grad x": f // cfg[2] * kh * kw,
             "grad w": n * ho * wo, "grad b": n * ho * wo}
    for what, got, exp, s in (("y", y, want, scale), ("grad x", ins[0].grad, d[0].grad, a[0].grad),
                              ("grad w", ins[1].grad, d[1].grad, a[1].grad),
                              ("grad b", ins[2].grad, d[2].grad, a[2].grad)):
        L = terms[what]
        gamma = (L + 2) * 2.0**-24 / (1 - (L + 2) * 2.0**-24)
        out_rel = rel_out if got.dtype == torch.bfloat16 else 0.0
        bound = out_rel * exp.detach().abs() + (1 + out_rel) * (2 * rel_in + rel_in**2 + gamma) * s.detach()
        err = (got.detach().cpu().double() - exp.detach()).abs()
        assert bool((err <= bound + 1e-30).all()), \
            f"{precision} {what}: worst {float((err / (bound + 1e-30)).max()):.3g} x the bound"
    return y, ins


@pytest.mark.parametrize("channels_last", [False, True])
def test_conv_bf16_and_tf32_vs_float64(channels_last, rng):
    """The tensor-core paths from torch: bfloat16 tensors (precision bf16, results bfloat16 but
    weight/bias gradients float32, cast by autograd) and float32 with precision="tf32", in both
    memory formats (channels-last runs the NHWC kernels and stays channels-last)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    cfg = ([2, 1], [1, 2], 2, True)
    x = torch.from_numpy(rng.standard_normal((3, 8, 13, 11)).astype(np.float32))
    w = torch.from_numpy(rng.standard_normal((8, 4, 5, 3)).astype(np.float32))
    b = torch.from_numpy(rng.standard_normal(8).astype(np.float32))
    ho = K.filter_acts(x, w, None, *cfg).shape
    gy = torch.from_numpy(rng.standard_normal(tuple(ho)).astype(np.float32))
    xg, wg, gyg = (t.to(DEV).contiguous(memory_format=fmt) for t in (x, w, gy))
    y, ins = _conv_vs_float64(xg.bfloat16(), wg.bfloat16(), b.to(DEV).bfloat16(), gyg.bfloat16(),
                              cfg, None, 0.0, 2.0**-8)
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=fmt)
    assert ins[0].grad.dtype == ins[1].grad.dtype == torch.bfloat16
    assert ins[0].grad.is_contiguous(memory_format=fmt)
    y, ins = _conv_vs_float64(xg, wg, b.to(DEV), gyg, cfg, "tf32", 2.0**-11, 0.0)
    assert y.dtype == torch.float32 and y.is_contiguous(memory_format=fmt)
    with pytest.raises(TypeError, match="filters: dtype bfloat16 does not match images's float32"):
        K.filter_acts(xg, wg.bfloat16(), None, *cfg)


BF16_OPS = {
    "lrn": (lambda x: AF.cross_map_lrn(x, size=5, alpha=0.5), False),
    "max_pool": (lambda x: AF.max_pool2d(x, size=3, stride=2, padding=1, ceil_mode=True), True),
    "avg_pool": (lambda x: AF.avg_pool2d(x, size=(3, 2), stride=(2, 1), padding=1,
                                         ceil_mode=True), False),
    "dropout": (lambda x: AF.dropout(x, p=0.3, seed=7, offset=3), True),
}


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("name", list(BF16_OPS))
def test_bf16_ops_from_torch(name, channels_last, rng):
    """bfloat16 CUDA tensors through the non-conv ops: each result is the float32 op on the
    widened input rounded once to bfloat16 (the kernels' contract), bit for bit, in x's memory
    format. Gradients come back bfloat16 in that format; for max pooling and dropout (one
    rounding of a float32 sum or product) also bit for bit against the float32 path."""
    f, exact_grad = BF16_OPS[name]
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.from_numpy(rng.standard_normal((2, 8, 9, 7)).astype(np.float32)).to(DEV)
    x = x.bfloat16().contiguous(memory_format=fmt)
    outs = []
    for dtype in (torch.bfloat16, torch.float32):
        xi = x.to(dtype).contiguous(memory_format=fmt).requires_grad_()
        y = f(xi)
        gy = torch.arange(y.numel(), device=DEV, dtype=torch.float32).reshape(y.shape).sin()
        y.backward(gy.bfloat16().to(dtype))      # the same (bf16) values on both paths
        outs.append((y.detach(), xi.grad))
    (yb, gb), (yf, gf) = outs
    assert yb.dtype == gb.dtype == torch.bfloat16
    if name != "dropout":
        assert yb.is_contiguous(memory_format=fmt) and gb.is_contiguous(memory_format=fmt)
    assert torch.equal(yb, yf.bfloat16()), name
    if exact_grad:
        assert torch.equal(gb, gf.bfloat16()), name
    assert bool(torch.isfinite(gb.float()).all())


def test_softmax_log_loss_from_bf16_logits(rng):
    """bf16 logits are widened and the op runs in float32: loss and probs (float32) equal the
    float32 op's on the widened logits; the logits' gradient comes back bfloat16."""
    z = torch.from_numpy(rng.standard_normal((6, 9)).astype(np.float32)).to(DEV).bfloat16()
    labels = torch.arange(6, device=DEV) % 9
    zb = z.clone().requires_grad_()
    loss_b, probs_b = K.softmax_log_loss(zb, labels)
    loss_f, probs_f = K.softmax_log_loss(z.float(), labels)
    assert probs_b.dtype == torch.float32 and torch.equal(probs_b, probs_f)
    assert torch.equal(loss_b, loss_f)
    loss_b.backward()
    assert zb.grad.dtype == torch.bfloat16


def test_cuda_autocast_runs_the_conv_in_bf16(rng):
    """Under torch.autocast("cuda", bfloat16) the convolution forward takes its float32 inputs
    cast to bfloat16 (the tensor cores): the same bits as the explicit bfloat16 call; the
    softmax log-loss takes bfloat16 logits in float32; gradients come back float32 for float32
    leaves (autograd converts through the casts)."""
    x = torch.from_numpy(rng.standard_normal((2, 6, 11, 9)).astype(np.float32)).to(DEV)
    w = torch.from_numpy(rng.standard_normal((8, 3, 3, 3)).astype(np.float32)).to(DEV)
    b = torch.from_numpy(rng.standard_normal(8).astype(np.float32)).to(DEV)
    xi, wi = x.clone().requires_grad_(), w.clone().requires_grad_()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = AF.conv2d(xi, wi, b, padding=1, groups=2)
        z = torch.nn.functional.linear(y.flatten(1), torch.randn(5, y[0].numel(), device=DEV))
        loss = AF.softmax_log_loss(z, torch.arange(2, device=DEV))
    assert y.dtype == torch.bfloat16 and z.dtype == torch.bfloat16 and loss.dtype == torch.float32
    want = AF.conv2d(x.bfloat16(), w.bfloat16(), b.bfloat16(), padding=1, groups=2)
    assert torch.equal(y, want)
    loss.backward()
    assert xi.grad.dtype == wi.grad.dtype == torch.float32
    assert bool(torch.isfinite(xi.grad).all()) and bool(torch.isfinite(wi.grad).all())
