"""python -m alexnet_ext.export: a trained run to a torch state dict + model file (round trip
through load_exported) and to ONNX (checked with onnxruntime when installed); and the README's
"From PyTorch" example, run as written."""
import json
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch_helpers import EPS32, MODEL  # noqa: E402

import alexnet_ext.torch as at  # noqa: E402
from alexnet_ext.export import main  # noqa: E402
from alexnet_ext.nn import Net, parse_model, save_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def run(tmp_path, rng):
    """A run directory of the two-column test model (LRN, max and avg pools, dropout, several
    inputs) with random weights, a mean image and class names."""
    spec = parse_model(MODEL, path="torchtest.toml", classes=4)
    net = Net(spec, seed=int(rng.integers(1 << 30)))
    s = spec.data["image_size"]
    mean = (rng.random((spec.channels, s, s)) * 255).astype(np.float32)
    d = tmp_path / "run"
    d.mkdir()
    save_checkpoint(d / "checkpoint.safetensors", net, {"epoch": 3, "step": 30},
                    extra={"mean": mean}, info={"classes": 4, "class_names": list("abcd")})
    return d, net, mean


def logits(net, x):
    net.forward(x, until=net.spec.cost.inputs[0])
    return net.output(net.spec.cost.inputs[0])


def test_export_torch_round_trip(run, tmp_path, rng, capsys):
    d, net, mean = run
    out = tmp_path / "exported"
    assert main([str(d), "--to", "torch", str(out)]) == 0
    meta = json.loads((out / "export.json").read_text())
    assert meta["classes"] == 4 and meta["class_names"] == list("abcd") and meta["step"] == 30
    for pure in (False, True):
        mod = at.load_exported(out, pure=pure).eval()
        np.testing.assert_array_equal(mod.input_mean.numpy(), mean)
        for k, v in net.state_dict().items():
            np.testing.assert_array_equal(mod.state_dict()[k].numpy(), v, err_msg=k)
        x = rng.standard_normal((3,) + net.spec.input_shape).astype(np.float32)
        with torch.no_grad():
            got = mod(torch.from_numpy(x)).numpy()
        want = logits(net, x)
        np.testing.assert_allclose(got, want, rtol=0, atol=8 * 145 * EPS32 * 4 * np.abs(want).max())
    # the weight file alone is a plain torch state dict (our canonical names + input_mean)
    from safetensors.torch import load_file
    assert set(load_file(str(out / "weights.safetensors"))) == set(net.param_shapes) | {"input_mean"}
    # errors: a missing run, a file where the directory should go
    assert main([str(tmp_path / "missing"), "--to", "torch", str(out)]) == 2
    (tmp_path / "f").write_text("x")
    assert main([str(d), "--to", "torch", str(tmp_path / "f")]) == 2
    assert "not a directory" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="export.json"):
        at.load_exported(tmp_path)


def test_export_onnx(run, tmp_path, rng):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    d, net, mean = run
    out = tmp_path / "onnx"
    assert main([str(d), "--to", "onnx", str(out)]) == 0
    np.testing.assert_array_equal(np.load(out / "mean.npy"), mean)
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    for n in (1, 5):                                      # the batch size is dynamic
        x = rng.standard_normal((n,) + net.spec.input_shape).astype(np.float32)
        got = sess.run(["scores"], {"images": x})[0]
        want = logits(net, x)
        np.testing.assert_allclose(got, want, rtol=0, atol=8 * 145 * EPS32 * 4 * np.abs(want).max())


def readme_snippet():
    text = (ROOT / "README.md").read_text()
    section = text.split("## From PyTorch", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, "README: no python example in the From PyTorch section"
    return blocks[0]


def test_readme_example_runs():
    """The README's From PyTorch example, executed as written (it asserts its loss went down)."""
    scope = {}
    exec(compile(readme_snippet(), "README.md (From PyTorch)", "exec"), scope)
    assert scope["losses"][-1] < scope["losses"][0]
