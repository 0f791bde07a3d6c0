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
