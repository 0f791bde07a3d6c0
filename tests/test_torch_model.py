"""alexnet_ext.torch modules and whole models: from_model (model file or run) against our Net,
the pure-torch formulation, torch.compile(fullgraph=True), and a torch training loop against
Net's own SGD step."""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
from torch_helpers import EPS32, MODEL  # noqa: E402

import alexnet_ext.torch as at  # noqa: E402
from alexnet_ext.nn import Net, load_model, save_checkpoint  # noqa: E402
from alexnet_ext.torch import functional as AF  # noqa: E402


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("model") / "torchtest.toml"
    p.write_text(MODEL)
    return p


def net_logits(net, x):
    net.forward(x, until="fc6")
    return net.output("fc6")


@pytest.mark.parametrize("pure", [False, True])
def test_from_model_matches_net(model_file, rng, pure):
    seed = int(rng.integers(1 << 30))
    spec = load_model(model_file)
    net = Net(spec, seed=seed)
    mod = at.from_model(model_file, pure=pure, seed=seed).eval()
    # random init: the very arrays Net draws, under the same names
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(mod.state_dict()[k].numpy(), v, err_msg=k)
    x = rng.standard_normal((3, 3, 23, 23)).astype(np.float32)
    with torch.no_grad():
        got = mod(torch.from_numpy(x)).numpy()
    want = net_logits(net, x)
    assert got.shape == (3, 7)
    # float32 sums in other orders (fc via torch's GEMM, conv3's inputs concatenated instead of
    # accumulated): relative error ~ depth * L * eps with L <= 16*3*3+1 terms per sum
    np.testing.assert_allclose(got, want, rtol=0, atol=8 * 145 * EPS32 * np.abs(want).max() * 4)
    zeros = at.from_model(model_file, init="zeros")
    assert all(not p.detach().any() for p in zeros.parameters())
    with pytest.raises(ValueError, match="init"):
        at.from_model(model_file, init="he")


def test_channels_last_model_matches_nchw(model_file, rng):
    """The whole two-column model on channels-last input: every conv, per-column response norm
    and pool runs the NHWC kernels (the activations stay channels-last up to the first fc); the
    class scores and every parameter gradient agree with the NCHW run within float32 reordering
    (the NHWC conv sums in another order; LRN and pooling are bit for bit)."""
    mod = at.from_model(model_file, seed=int(rng.integers(1 << 30))).eval()
    x = torch.from_numpy(rng.standard_normal((3, 3, 23, 23)).astype(np.float32))
    runs = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        mod.zero_grad()
        out = mod(x.contiguous(memory_format=fmt))
        out.square().sum().backward()
        runs.append((out.detach(), {k: p.grad.clone() for k, p in mod.named_parameters()}))
    (y0, g0), (y1, g1) = runs
    # as test_from_model_matches_net: depth * L * eps relative to each array's largest entry
    tol = 8 * 145 * EPS32 * 4
    torch.testing.assert_close(y1, y0, rtol=0, atol=tol * float(y0.abs().max()))
    for k in g0:
        torch.testing.assert_close(g1[k], g0[k], rtol=0, atol=tol * float(g0[k].abs().max()),
                                   msg=k)
    # the activations really were channels-last: the conv and LRN outputs of the second run
    cl = {}
    orig = AF.conv2d, AF.cross_map_lrn, AF.max_pool2d
    try:
        def spy(name, f):
            def g(*a, **k):
                y = f(*a, **k)
                cl.setdefault(name, []).append(y.is_contiguous(memory_format=torch.channels_last))
                return y
            return g
        AF.conv2d, AF.cross_map_lrn, AF.max_pool2d = (spy(n, f) for n, f in
                                                      zip(("conv", "lrn", "pool"), orig))
        with torch.no_grad():
            mod(x.contiguous(memory_format=torch.channels_last))
    finally:
        AF.conv2d, AF.cross_map_lrn, AF.max_pool2d = orig
    assert cl and all(all(v) for v in cl.values()), cl


def test_from_run(tmp_path, model_file, rng):
    from alexnet_ext.data import center_crop
    from alexnet_ext.evaluate import prepare

    spec = load_model(model_file)
    net = Net(spec, seed=int(rng.integers(1 << 30)))
    mean = (rng.random((3, 27, 27)) * 255).astype(np.float32)
    save_checkpoint(tmp_path / "checkpoint.safetensors", net, {"epoch": 2, "step": 10},
                    extra={"mean": mean}, info={"classes": 7})
    for where in (tmp_path, tmp_path / "checkpoint.safetensors"):
        mod = at.from_model(where).eval()
        assert mod.scale == 0.5 and mod.crop == 23
        np.testing.assert_array_equal(mod.input_mean.numpy(), mean)
        for k, v in net.state_dict().items():
            np.testing.assert_array_equal(mod.state_dict()[k].numpy(), v, err_msg=k)
    images = rng.integers(0, 256, (2, 3, 27, 27), dtype=np.uint8)
    x = mod.prepare(torch.from_numpy(images))
    want_x = center_crop(prepare(images, mean, 0.5), 23)       # what evaluation feeds the net
    np.testing.assert_array_equal(x.numpy(), want_x)
    with torch.no_grad():
        got = mod(x).numpy()
    want = net_logits(net, want_x)
    np.testing.assert_allclose(got, want, rtol=0, atol=8 * 145 * EPS32 * np.abs(want).max() * 4)
    with pytest.raises(ValueError, match="x: expected prepared images"):
        mod(torch.zeros(1, 3, 27, 27))
    with pytest.raises(ValueError, match="not found"):
        at.from_model(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint.safetensors"):
        at.from_model(tmp_path / "empty")


def test_training_loop_matches_net(model_file, rng):
    """Three SGD steps with dropout: torch.optim.SGD over our ops == Net.forward/backward/update.

    The paper's rule v <- m v - wd lr w - lr g; w <- w + v is torch's SGD (momentum m, dampening
    0, weight_decay wd: b <- m b + g + wd w; w <- w - lr b) with v = -lr b, the same arithmetic
    up to rounding. Bound: each step's gradients differ by float32 summation order only (fc via
    torch's GEMM): relative ~ L * eps with L <= 145 terms per sum; over 3 steps and a factor
    for the few layers the error passes through, 3 * 8 * 145 * eps relative to each array's
    largest update scale (lr * max|grad| summed over steps, plus eps |w|)."""
    spec = load_model(model_file)
    seed, run_seed = int(rng.integers(1 << 30)), int(rng.integers(1 << 30))
    net = Net(spec, seed=seed)
    mod = at.from_model(model_file, seed=seed).train()
    mod.seed = run_seed
    L = spec.learning
    opt = torch.optim.SGD(mod.param_groups(), lr=L["lr"], momentum=L["momentum"])
    moved = {k: 0.0 for k in net.param_shapes}
    for step in range(3):
        x = rng.standard_normal((4, 3, 23, 23)).astype(np.float32)
        y = rng.integers(0, 7, 4).astype(np.int64)
        loss_net = net.forward(x, y, train=True, step=step, seed=run_seed)
        net.backward()
        grads = net.state_dict("grad")
        net.update(lr=L["lr"], momentum=L["momentum"], weight_decay=L["weight_decay"],
                   bias_decay=L["bias_decay"])
        mod.step = step
        opt.zero_grad()
        loss = AF.softmax_log_loss(mod(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        for k, p in mod.named_parameters():
            g = grads[k]
            np.testing.assert_allclose(p.grad.numpy(), g, rtol=0,
                                       atol=8 * 145 * EPS32 * np.abs(g).max() * (step + 1),
                                       err_msg=f"step {step}: grad {k}")
            moved[k] += L["lr"] * float(np.abs(g).max())
        opt.step()
        assert abs(float(loss.detach()) - loss_net) <= 145 * 8 * EPS32 * abs(loss_net) * (step + 1)
    want_w, want_v = net.state_dict("value"), net.state_dict("velocity")
    for k, p in mod.named_parameters():
        scale = moved[k] + np.abs(want_w[k]).max() * 4 * EPS32
        np.testing.assert_allclose(p.detach().numpy(), want_w[k], rtol=0,
                                   atol=3 * 8 * 145 * EPS32 * scale, err_msg=k)
        v = -L["lr"] * opt.state[p]["momentum_buffer"].numpy()
        np.testing.assert_allclose(v, want_v[k], rtol=0, atol=3 * 8 * 145 * EPS32 * scale,
                                   err_msg=f"velocity {k}")


class SmallNet(torch.nn.Module):
    """A net made of our ops only (fc through torch's linear)."""

    def __init__(self):
        super().__init__()
        self.conv1 = at.Conv2d(3, 8, 3, padding=1, init_std=0.3)
        self.norm1 = at.CrossMapLRN(5, alpha=0.01, blocks=2)
        self.pool1 = at.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = at.Conv2d(8, 6, 3, padding=1, groups=2, init_std=0.3)
        self.pool2 = at.AvgPool2d(2, 2)
        self.fc = torch.nn.Linear(6 * 2 * 2, 5)

    def forward(self, x, labels):
        x = self.pool1(self.norm1(F.relu(self.conv1(x))))
        x = self.pool2(F.relu(self.conv2(x)))
        x = AF.dropout(x.flatten(1), p=0.3, seed=11, offset=2)
        return AF.softmax_log_loss(self.fc(x), labels)


def test_compile_fullgraph(rng):
    """torch.compile(fullgraph=True): Dynamo traces through every custom op (a graph break
    would raise). Backend aot_eager: it runs the same AOT-autograd tracing of forward and
    backward as inductor (where the fake implementations and autograd formulas matter) without
    inductor's C++ code generation, which takes minutes on a loaded 2-core CI machine."""
    torch.manual_seed(int(rng.integers(1 << 30)))
    model = SmallNet()
    x = torch.from_numpy(rng.standard_normal((2, 3, 11, 11)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 5, 2))
    eager = model(x, labels)
    eager.backward()
    want = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    got = compiled(x, labels)
    got.backward()
    torch.testing.assert_close(got, eager, rtol=0, atol=0)
    for k, p in model.named_parameters():
        torch.testing.assert_close(p.grad, want[k], rtol=0, atol=0, msg=k)
    # the graph Dynamo captured holds our ops, not a fallback to Python
    explained = torch._dynamo.explain(model)(x, labels)
    assert explained.graph_break_count == 0 and explained.graph_count == 1


def test_torch_export_keeps_our_ops(rng):
    """torch.export of a module of our ops: the graph calls alexnet_ext::* and runs the same."""
    torch.manual_seed(int(rng.integers(1 << 30)))
    model = SmallNet().eval()
    x = torch.from_numpy(rng.standard_normal((2, 3, 11, 11)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 5, 2))
    ep = torch.export.export(model, (x, labels))
    called = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    for op in ("filter_acts", "response_norm", "max_pool", "avg_pool", "dropout",
               "softmax_log_loss"):
        assert f"alexnet_ext.{op}.default" in called, (op, called)
    torch.testing.assert_close(ep.module()(x, labels), model(x, labels), rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("ALEXNET_TEST_INDUCTOR"),
                    reason="inductor's C++ compile takes ~2 min on a loaded 2-core machine; set "
                           "ALEXNET_TEST_INDUCTOR=1 (tools/gpu_check.sh's torch stage does)")
def test_compile_fullgraph_inductor(rng):
    """The default backend (inductor, generated C++ around our ops): same loss and gradients as
    eager within float32 rounding (inductor may fuse torch's own ops differently)."""
    torch.manual_seed(int(rng.integers(1 << 30)))
    model = SmallNet()
    x = torch.from_numpy(rng.standard_normal((2, 3, 11, 11)).astype(np.float32))
    labels = torch.from_numpy(rng.integers(0, 5, 2))
    eager = model(x, labels)
    want = torch.autograd.grad(eager, list(model.parameters()))
    torch._dynamo.reset()
    got = torch.compile(model, fullgraph=True)(x, labels)
    grads = torch.autograd.grad(got, list(model.parameters()))
    torch.testing.assert_close(got, eager, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))


def test_modules(rng):
    torch.manual_seed(int(rng.integers(1 << 30)))
    conv = at.Conv2d(4, 6, (3, 2), stride=2, padding=(1, 0), groups=2, init_std=0.05)
    assert conv.weight.shape == (6, 2, 3, 2) and float(conv.bias.abs().max()) == 0
    ref = torch.nn.Conv2d(4, 6, (3, 2), stride=2, padding=(1, 0), groups=2)
    ref.load_state_dict(conv.state_dict())          # same names and layouts as torch's
    x = torch.randn(2, 4, 9, 8)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), ref(x), rtol=1e-5, atol=1e-5)
    pool = at.MaxPool2d(return_switches=True)
    y, s = pool(x)
    assert s.dtype == torch.int32 and y.shape == s.shape == (2, 4, 4, 3)
    keep = at.MaxPool2d(keep_switches=True)
    y2 = keep(x)
    assert torch.equal(y2, y) and torch.equal(keep.switches, s)
    lrn = at.CrossMapLRN(3, alpha=0.5, alpha_over_size=True)
    torch.testing.assert_close(lrn(x), F.local_response_norm(x, 3, alpha=0.5, k=2.0),
                               rtol=1e-5, atol=1e-6)
    drop = at.Dropout(0.5, seed=3)
    a, b = drop(x), drop(x)                     # offset counts the calls: fresh masks
    assert drop.offset == 2 and not torch.equal(a, b)
    drop.offset = 0
    assert torch.equal(drop(x), a)              # replayed
    assert drop.eval()(x) is x
    torch.manual_seed(1)
    c = at.Dropout(0.5)(x)
    torch.manual_seed(1)
    assert torch.equal(at.Dropout(0.5)(x), c)   # seed=None: drawn from torch's generator


@pytest.mark.parametrize("name", ["alexnet", "alexnet-small", "cifar", "lenet5"])
def test_shipped_models_on_meta(name):
    """Every shipped model builds (our kernels and pure) and runs on meta tensors through the
    fake implementations: the class scores' shape, and the paper's parameter count."""
    for pure in (False, True):
        with torch.device("meta"):                  # no memory for alexnet's 61M parameters
            mod = at.from_model(name, pure=pure, init="zeros").eval()
        spec = mod.spec
        y = mod(torch.empty((2,) + spec.input_shape, device="meta"))
        assert y.shape == (2, spec.classes) and y.device.type == "meta"
        assert sum(p.numel() for p in mod.parameters()) == spec.num_params
    if name == "alexnet":
        assert spec.num_params == 60_965_224
