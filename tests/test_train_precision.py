"""Training precision (`Net(precision=)`, `python -m alexnet_ext.train --precision`): the choice
reaches every pass of every convolution, is refused with a reason where it cannot run (the CPU),
is recorded in config.json and metrics.jsonl, and may change on --resume (checkpoints hold fp32
weights whatever the precision). A bf16 net keeps bfloat16 activations and gradients, fp32 master
weights with bfloat16 copies the SGD kernel writes, resumes bit for bit from its masters, equals
its unfused self bit for bit, and learns as the fp32 net does.

The numerics of the tf32 convolution itself are tested in the conv tests against float64 on the
tf32-rounded inputs; here the net's conv outputs are compared bit for bit with the op called
directly with precision="tf32" on the same arrays (the same kernel, so any difference is a
plumbing error), and shown to differ from the fp32 net's (so tf32 really ran).
"""
import json

import numpy as np
import pytest

from alexnet_ext import ops
from alexnet_ext.nn import Net, parse_model
from models_fixtures import CHAIN, INTEROP, TWO_COLUMNS
from train_helpers import run_train, tiny_data, tiny_model  # noqa: F401  (fixtures)


@pytest.mark.parametrize("precision, message", [
    ("tf32", "run on the GPU only"),
    ("bf16", "the tensor-core kernels and bfloat16 run on the GPU only"),
    ("fp16", "expected one of fp32, tf32, bf16"),
])
def test_net_refuses_what_it_cannot_run(precision, message):
    spec = parse_model(CHAIN, path="chain.toml")
    with pytest.raises(ValueError, match=message):
        Net(spec, devices=["cpu"], precision=precision)


@pytest.mark.parametrize("precision, message", [
    ("tf32", "--precision tf32: precision='tf32': the tensor-core kernels and bfloat16 run on "
             "the GPU only"),
    ("bf16", "--precision bf16: precision='bf16': the tensor-core kernels and bfloat16 run on "
             "the GPU only"),
])
def test_cli_refuses_before_training(capsys, tmp_path, tiny_data, tiny_model, precision, message):
    out = tmp_path / "run"
    code = run_train("--data", tiny_data, "--model", tiny_model, "--out", out, "--device", "cpu",
                     "--precision", precision, "--workers", "0")
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and message in err, err
    assert not out.exists()


def _conv_calls(monkeypatch):
    """Records the precision argument of every conv op call the net makes."""
    seen = []
    for name in ("filter_acts", "img_acts", "weight_acts"):
        real = getattr(ops, name)

        def spy(*a, _real=real, _name=name, **kw):
            seen.append((_name, kw.get("precision", "fp32")))
            return _real(*a, **kw)
        monkeypatch.setattr(ops, name, spy)
    return seen


@pytest.mark.cuda
def test_tf32_net_runs_every_conv_pass_in_tf32(monkeypatch):
    from alexnet_ext import cuda

    spec = parse_model(TWO_COLUMNS, path="twocol.toml")  # conv1 reads the data; conv2, conv3 don't
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, *spec.shapes["data"]), dtype=np.float32)
    labels = rng.integers(0, spec.classes, 4)
    fp32 = Net(spec, devices=["cuda"], seed=1)
    tf32 = Net(spec, devices=["cuda"], seed=1, precision="tf32")
    seen = _conv_calls(monkeypatch)
    tf32.forward(x, labels, train=True)
    tf32.backward()
    assert sorted(set(seen)) == [("filter_acts", "tf32"), ("img_acts", "tf32"),
                                 ("weight_acts", "tf32")]
    fp32.forward(x, labels, train=True)
    assert ("filter_acts", "fp32") in seen

    w = tf32.state_dict()["conv1.weight"]
    b = tf32.state_dict()["conv1.bias"]
    direct = ops.filter_acts(cuda.to_device(x), cuda.to_device(w), bias=cuda.to_device(b),
                             stride=2, padding=1, precision="tf32").get()
    np.testing.assert_array_equal(tf32.output("conv1"), direct)
    assert not np.array_equal(fp32.output("conv1"), direct)  # tf32 rounding really happened


@pytest.mark.cuda
@pytest.mark.parametrize("first, then", [("tf32", "fp32"), ("bf16", "tf32")])
def test_precision_recorded_and_may_change_on_resume(tmp_path, tiny_data, tiny_model, first, then):
    run = tmp_path / "run"
    common = ["--data", tiny_data, "--model", tiny_model, "--device", "cuda", "--workers", "0"]
    assert run_train(*common, "--out", run, "--precision", first, "--epochs", "1") == 0
    assert json.loads((run / "config.json").read_text())["precision"] == first
    assert run_train("--resume", run, "--device", "cuda", "--workers", "0", "--epochs", "2",
                     "--precision", then) == 0
    assert json.loads((run / "config.json").read_text())["precision"] == then
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["precision"] for r in rows] == [first, then]
    assert all(np.isfinite(r["train_loss"]) for r in rows), rows


def _batch(spec, n, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, *spec.shapes["data"]), dtype=np.float32),
            rng.integers(0, spec.classes, n))


def _bits(a):
    return np.asarray(a).view(np.uint16 if np.asarray(a).dtype.itemsize == 2 else np.uint32)


@pytest.mark.cuda
def test_bf16_net_holds_bf16_activations_and_fp32_masters():
    """Every activation and gradient of a bf16 net is bfloat16 but the probabilities; the
    parameters, their gradients and momenta are float32; each weight's bfloat16 copy is its
    master rounded to nearest even (ml_dtypes, independently) after init and after every step;
    conv1's output equals the op called directly on the rounded operands, bit for bit."""
    import ml_dtypes
    from alexnet_ext import cuda

    bf16 = np.dtype(cuda.bfloat16)
    spec = parse_model(TWO_COLUMNS, path="twocol.toml")
    net = Net(spec, devices=["cuda"], seed=1, precision="bf16")
    x, y = _batch(spec, 4, 3)

    def check_halves():
        for p in net.params:
            assert p.value.dtype == p.grad.dtype == p.velocity.dtype == np.float32, p
            if p.name.endswith(".weight"):
                np.testing.assert_array_equal(
                    _bits(p.half.get()), _bits(p.value.get().astype(ml_dtypes.bfloat16)), p.name)
            else:
                assert p.half is None and p.operand is p.value

    check_halves()
    loss = net.forward(x, y, train=True, step=0, seed=5)
    net.backward()
    assert np.isfinite(float(loss))
    for t in net.tensors.values():
        want = np.float32 if t is net.cost.output else bf16
        assert t.dtype == want, t
        if t.value is not None:
            assert t.value.dtype == want, t
        if t.grad_ready:
            assert t.grad.dtype == want, t
    assert net.probs.dtype == np.float32
    net.update(lr=0.05)
    check_halves()

    w, b = net.state_dict()["conv1.weight"], net.state_dict()["conv1.bias"]
    net.forward(x)
    direct = ops.filter_acts(ops.cast(cuda.to_device(x), bf16), ops.cast(cuda.to_device(w), bf16),
                             bias=cuda.to_device(b), stride=2, padding=1, out_dtype=bf16).get()
    got = net.output("conv1")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, direct.astype(np.float32))


@pytest.mark.cuda
@pytest.mark.parametrize("model", ["chain", "twocol"])
def test_bf16_fused_net_equals_the_unfused_net(model):
    """conv + ReLU in the epilogue, ReLU undo folded into the readers' backward (imgActs,
    response norm, max pool, dropout), norm + pool fused: in bf16 as in fp32 the same bits as
    the plain net (a ReLU commutes with rounding; multiplying by a 0/1 mask is exact)."""
    spec = parse_model({"chain": CHAIN, "twocol": TWO_COLUMNS}[model], path=f"{model}.toml")
    fused = Net(spec, devices=["cuda"], seed=2, precision="bf16", fuse=True)
    plain = Net(spec, devices=["cuda"], seed=2, precision="bf16", fuse=False)
    assert "conv+relu" in {layer.kind for layer in fused.layers}
    assert "conv+relu" not in {layer.kind for layer in plain.layers}
    assert any(t.relu_folded for t in fused.tensors.values())
    for step in range(2):
        x, y = _batch(spec, 4, 10 + step)
        la = float(fused.forward(x, y, train=True, step=step, seed=9))
        lb = float(plain.forward(x, y, train=True, step=step, seed=9))
        assert la == lb, step
        fused.backward()
        plain.backward()
        for name, g in plain.state_dict("grad").items():
            np.testing.assert_array_equal(fused.state_dict("grad")[name], g, name)
        fused.update(lr=0.05)
        plain.update(lr=0.05)
    for name, v in plain.state_dict().items():
        np.testing.assert_array_equal(fused.state_dict()[name], v, name)


@pytest.mark.cuda
def test_bf16_net_resumes_bit_for_bit_from_its_masters():
    """What a checkpoint holds (fp32 values and momenta) is all a bf16 net needs: a net loaded
    from them after two steps takes the third exactly as the uninterrupted net does (the bf16
    copies are rebuilt from the masters with the rounding the SGD kernel uses)."""
    spec = parse_model(CHAIN, path="chain.toml")
    run = Net(spec, devices=["cuda"], seed=4, precision="bf16")
    batches = [_batch(spec, 4, 20 + s) for s in range(3)]
    for step, (x, y) in enumerate(batches[:2]):
        run.forward(x, y, train=True, step=step, seed=3)
        run.backward()
        run.update(lr=0.05)
    values, velocities = run.state_dict(), run.state_dict("velocity")
    resumed = Net(spec, devices=["cuda"], seed=99, precision="bf16")
    resumed.load_state_dict(values)
    resumed.load_state_dict(velocities, kind="velocity")
    x, y = batches[2]
    losses = []
    for net in (run, resumed):
        losses.append(float(net.forward(x, y, train=True, step=2, seed=3)))
        net.backward()
        net.update(lr=0.05)
    assert losses[0] == losses[1]
    for name, v in run.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name], v, name)


# INTEROP with weights drawn wide enough that it learns within the test's 80 steps (the file's
# default init_std 0.01 leaves the logits near zero for longer than that).
LEARNS = (INTEROP.replace('type = "conv"', 'type = "conv"\ninit_std = 0.1')
          .replace('type = "fc"', 'type = "fc"\ninit_std = 0.1'))


def _curve(precision, dropout_seed, steps=80, n=16):
    """Per-step training losses of LEARNS (two columns, dropout) on the emulated GPU: a fixed
    stream of noisy class templates (signal twice the noise), the same initial weights;
    ``dropout_seed`` only changes the dropout masks."""
    spec = parse_model(LEARNS, path="interop.toml")
    net = Net(spec, devices=["cuda"], seed=0, precision=precision)
    rng = np.random.default_rng(7)
    shape = spec.shapes["data"]
    templates = 2 * rng.standard_normal((spec.classes, *shape)).astype(np.float32)
    losses = []
    for step in range(steps):
        y = rng.integers(0, spec.classes, n)
        x = templates[y] + rng.standard_normal((n, *shape), dtype=np.float32)
        losses.append(float(net.forward(x, y, train=True, step=step, seed=dropout_seed)))
        net.backward()
        net.update(lr=0.02, momentum=0.9, weight_decay=5e-4)
    return np.array(losses)


@pytest.mark.cuda
@pytest.mark.slow
def test_tf32_learning_curve_within_the_noise_of_a_dropout_seed():
    """The tolerance, and why: tf32 perturbs each convolution's result by ~2^-10 relative per
    product (README, Precision); what that does to a learning curve has no useful closed form,
    so it is measured against the smallest change training must already tolerate: the same run
    with other dropout masks. The tf32 curve (means over windows of 10 steps) must stay as close
    to the fp32 curve as an fp32 run with another dropout seed does, and learning must happen
    (the last window's loss well below the first's), so the test can fail both ways."""
    fp32, tf32, reseeded = _curve("fp32", 1), _curve("tf32", 1), _curve("fp32", 2)
    window = lambda c: c.reshape(-1, 10).mean(axis=1)  # noqa: E731
    f, t, r = window(fp32), window(tf32), window(reseeded)
    assert f[-1] < 0.7 * f[0] and t[-1] < 0.7 * t[0], (f, t)
    assert np.abs(t - f).max() <= np.abs(r - f).max(), (f, t, r)
    assert not np.array_equal(fp32, tf32)  # tf32 really ran (bit-identical curves would not)


@pytest.mark.cuda
@pytest.mark.slow
def test_bf16_learning_curve_within_the_noise_of_a_dropout_seed():
    """The same tolerance as tf32's, and why: bf16 rounds every stored activation and gradient
    to 8 significant bits (relative error up to 2^-9 per value), far more than tf32, but SGD's
    own noise (here: other dropout masks) is larger still. The bf16 curve (means over windows of
    10 steps) must stay as close to the fp32 curve as an fp32 run with another dropout seed, or
    as two such reseeded runs are to each other (whichever is larger: one reseeded run can
    happen to land close), and both must learn (last window well below the first)."""
    fp32, bf16 = _curve("fp32", 1), _curve("bf16", 1)
    r2, r3 = _curve("fp32", 2), _curve("fp32", 3)
    window = lambda c: c.reshape(-1, 10).mean(axis=1)  # noqa: E731
    f, b, a, c = window(fp32), window(bf16), window(r2), window(r3)
    assert f[-1] < 0.7 * f[0] and b[-1] < 0.7 * b[0], (f, b)
    noise = max(np.abs(a - f).max(), np.abs(c - f).max(), np.abs(a - c).max())
    assert np.abs(b - f).max() <= noise, (f, b, a, c)
    assert not np.array_equal(fp32, bf16)
