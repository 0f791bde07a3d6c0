"""The net on the GPU: merged, and split into columns on one GPU or two, equals the same net on the
CPU (outputs, gradients, updates) over every route between columns (peer to peer, staged through
the host, same device); the shipped models step; the train CLI runs with --device cuda."""
import json

import numpy as np
import pytest

from alexnet_ext import cuda as C
from alexnet_ext.nn import Net, device, load_model, parse_model
from alexnet_ext.nn.device import to_host
from helpers import assert_same_params, random_batch, random_params
from train_helpers import metrics, run_train, tiny_data, tiny_model  # noqa: F401 (fixtures)
from models_fixtures import TWO_COLUMNS

pytestmark = pytest.mark.cuda


def _two_gpus():
    if C.device_count() < 2:
        pytest.skip("needs two GPUs")


@pytest.fixture
def route():
    """Restores the default route between GPUs after a test that changes it."""
    yield device.set_copy_route
    device.set_copy_route("auto")


def _assert_same_training(cpu, gpu, rng, steps=2, n=3, scale=0.3):
    """Forward, backward and update on both nets from the same weights: equal within float32
    reordering (GPU sums run in another order), step after step."""
    params = random_params(cpu, rng, scale=scale)
    gpu.load_state_dict({k: v.astype(np.float32) for k, v in params.items()})
    x, y = random_batch(rng, cpu.spec, n)
    for step in range(steps):
        lc = cpu.forward(x, y, train=True, step=step, seed=7)
        lg = gpu.forward(x, y, train=True, step=step, seed=7)
        assert 0 < lc and abs(lc - lg) <= 1e-4 * lc, (step, lc, lg)   # 0: a saturated softmax
        assert isinstance(gpu.probs, C.DeviceArray)
        np.testing.assert_allclose(to_host(gpu.probs), cpu.probs, rtol=1e-4, atol=1e-6)
        cpu.backward()
        gpu.backward()
        assert_same_params(gpu, cpu, "grad", 1e-4, 5e-5, what=f"step {step} ")
        cpu.update(lr=0.05)
        gpu.update(lr=0.05)
    assert_same_params(gpu, cpu, "value", 1e-5, 1e-5)
    assert_same_params(gpu, cpu, "velocity", 1e-4, 1e-5)


def test_merged_net_on_a_gpu_equals_the_cpu(rng):
    spec = parse_model(TWO_COLUMNS, path="twocol.toml")
    gpu = Net(spec, seed=5, devices=["cuda"])
    assert gpu.devices == ["cuda:0"]
    assert all(isinstance(p.value, C.DeviceArray) for p in gpu.params)
    _assert_same_training(Net(spec, seed=5), gpu, rng)


@pytest.mark.parametrize("where", ["one_gpu", "two_gpus"])
@pytest.mark.parametrize("how", ["auto", "peer", "host"])
def test_columns_split_over_gpus_equal_the_cpu(rng, route, where, how):
    """Every cross-column copy path: same-device copies (one GPU), peer to peer and staged through
    pinned host memory (two GPUs), against the CPU's merged (groups=2) net."""
    if where == "two_gpus":
        _two_gpus()
        devices = ["cuda:0", "cuda:1"]
        if how == "peer" and not C.peer_access(0, 1):
            pytest.skip("these two GPUs have no peer access")
    else:
        devices = ["cuda:0", "cuda:0"]
    route(how)
    spec = parse_model(TWO_COLUMNS, path="twocol.toml")
    gpu = Net(spec, seed=5, split_columns=True, devices=devices)
    assert gpu.devices == devices
    on = {p.value.device for p in gpu.params}
    assert on == {int(d[5:]) for d in devices}
    assert any(layer.kind == "transfer" for layer in gpu.layers)
    _assert_same_training(Net(spec, seed=5), gpu, rng)


def test_alexnet_small_with_dropout_split_over_gpus_equals_the_cpu(rng):
    """The shipped small AlexNet (dropout on column-split layers) with a column per GPU (or both
    on one) against the merged net on the CPU: the split layers draw the merged masks."""
    spec = load_model("alexnet-small", classes=7)
    devices = ["cuda:0", "cuda:1"] if C.device_count() > 1 else ["cuda:0", "cuda:0"]
    # weights of the scale the net's own init uses: a deep net with larger random weights can
    # saturate the softmax (loss exactly 0, nothing left to compare)
    _assert_same_training(Net(spec, seed=5), Net(spec, seed=5, split_columns=True,
                                                 devices=devices), rng, steps=1, n=2, scale=0.05)


def test_copy_between_gpus_orders_producer_and_consumer(rng, route):
    """cuda.copy between two GPUs, repeated into one buffer while the source is rewritten: each
    result is the source as it was when the copy was queued (the events order both sides)."""
    _two_gpus()
    for how in ("auto", "host"):
        a = C.empty((257, 33), device=0)
        b = C.zeros((257, 33), device=1)
        for i in range(3):
            x = rng.standard_normal((257, 33)).astype(np.float32)
            C.copy(a, x)                     # queued on GPU 0
            C.copy(b, a, route=how)          # GPU 0 -> GPU 1
            np.testing.assert_array_equal(b.get(), x, err_msg=f"{how} copy {i}")


def test_copy_rejects_bad_arguments():
    a = C.zeros((3, 4))
    with pytest.raises(ValueError, match="shape"):
        C.copy(a, np.zeros((4, 3), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        C.copy(a, np.zeros((3, 4), np.float64))
    with pytest.raises(ValueError, match="route"):
        C.copy(a, C.zeros((3, 4)), route="nope")
    with pytest.raises(TypeError, match="DeviceArray"):
        C.copy(np.zeros((3, 4), np.float32), a)


def test_device_names_are_checked():
    with pytest.raises(ValueError, match="cuda:N"):
        Net(parse_model(TWO_COLUMNS, path="twocol.toml"), devices=["gpu0"])
    with pytest.raises(ValueError, match="GPU"):
        Net(parse_model(TWO_COLUMNS, path="twocol.toml"), devices=[f"cuda:{C.device_count()}"])
    with pytest.raises(ValueError, match="all on the CPU or all on GPUs"):
        Net(parse_model(TWO_COLUMNS, path="twocol.toml"), split_columns=True,
            devices=["cpu", "cuda:0"])


@pytest.mark.parametrize("name", ["alexnet-small", "cifar", "lenet5"])
def test_shipped_models_take_a_step_on_the_gpu(rng, name):
    spec = load_model(name, classes=7)
    x, y = random_batch(rng, spec, 3)
    for split in (False, True):
        devices = ["cuda:0", "cuda:1"] if split and C.device_count() > 1 else ["cuda:0"]
        net = Net(spec, split_columns=split, seed=2, devices=devices)
        first = net.forward(x, y, train=True)
        net.backward()
        net.update(lr=0.01)
        assert np.isfinite(first) and np.isfinite(net.forward(x, y))
        assert all(np.all(np.isfinite(g)) for g in net.state_dict("grad").values())


@pytest.mark.gpu_scale
def test_paper_net_trains_a_few_steps_on_the_gpu(rng):
    """The full two-column net at batch 8, merged on one GPU: loss finite and falling on a fixed
    batch (lr 1e-4, as in the CPU test of the same name)."""
    spec = load_model("alexnet", classes=1000)
    net = Net(spec, seed=0, devices=["cuda:0"])
    x = rng.standard_normal((8, 3, 224, 224)).astype(np.float32) * 50
    y = rng.integers(0, 1000, 8).astype(np.int64)
    test_losses = [net.forward(x, y)]
    for step in range(6):
        net.forward(x, y, train=True, step=step)
        net.backward()
        net.update(lr=1e-4)
        test_losses.append(net.forward(x, y))
    assert all(np.isfinite(test_losses)), test_losses
    assert test_losses[-1] < test_losses[0] - 1.0, test_losses


def test_train_cli_on_the_gpu(tmp_path, tiny_data, tiny_model):
    gpus = ["--gpus", "2"] if C.device_count() > 1 else []
    out = tmp_path / "run"
    assert run_train("--data", tiny_data, "--model", tiny_model, "--epochs", "1", "--device",
                     "cuda", *gpus, "--out", out, "--workers", "0") == 0
    rows = metrics(out)
    assert len(rows) == 1 and np.isfinite(rows[0]["train_loss"])
    config = json.loads((out / "config.json").read_text())
    assert config["devices"][0] == "cuda:0"
    assert (out / "checkpoint.safetensors").exists()
