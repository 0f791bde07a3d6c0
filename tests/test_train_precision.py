"""Training precision (`Net(precision=)`, `python -m alexnet_ext.train --precision`): the choice
reaches every pass of every convolution, is refused with a reason where it cannot run (the CPU,
bf16 training not built yet), is recorded in config.json and metrics.jsonl, and may change on
--resume (checkpoints hold fp32 weights whatever the precision).

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
    ("bf16", "not built yet"),
    ("fp16", "expected one of fp32, tf32, bf16"),
])
def test_net_refuses_what_it_cannot_run(precision, message):
    spec = parse_model(CHAIN, path="chain.toml")
    with pytest.raises(ValueError, match=message):
        Net(spec, devices=["cpu"], precision=precision)


@pytest.mark.parametrize("precision, message", [
    ("tf32", "--precision tf32: precision='tf32': the tensor-core kernels run on the GPU only"),
    ("bf16", "--precision bf16: precision='bf16': bf16 training"),
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
def test_precision_recorded_and_may_change_on_resume(tmp_path, tiny_data, tiny_model):
    run = tmp_path / "run"
    common = ["--data", tiny_data, "--model", tiny_model, "--device", "cuda", "--workers", "0"]
    assert run_train(*common, "--out", run, "--precision", "tf32", "--epochs", "1") == 0
    assert json.loads((run / "config.json").read_text())["precision"] == "tf32"
    assert run_train("--resume", run, "--device", "cuda", "--workers", "0", "--epochs", "2",
                     "--precision", "fp32") == 0
    assert json.loads((run / "config.json").read_text())["precision"] == "fp32"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["precision"] for r in rows] == ["tf32", "fp32"]


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
