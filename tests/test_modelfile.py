"""Model files: shipped models, shape inference, parameter counts, and every error message."""
import math
import textwrap

import pytest

from alexnet_ext.nn import ModelError, available_models, format_summary, load_model, parse_model
from alexnet_ext.nn.spec import models_dir
from models_fixtures import SMALL


def test_shipped_models_load():
    assert set(available_models()) >= {"alexnet", "alexnet-small", "cifar", "lenet5"}
    for name in available_models():
        spec = load_model(name)
        assert spec.name == name
        assert spec.layers[-1].type == "softmax"
        assert spec.num_params > 0 and spec.flops > 0


def test_alexnet_matches_the_paper():
    spec = load_model("alexnet")
    assert spec.num_params == 60_965_224
    s = spec.shapes
    assert s["data"] == (3, 224, 224)
    assert s["conv1"] == (96, 55, 55) and s["pool1"] == (96, 27, 27)
    assert s["conv2"] == (256, 27, 27) and s["pool2"] == (256, 13, 13)
    assert s["conv3"] == (384, 13, 13) and s["conv4"] == (384, 13, 13)
    assert s["conv5"] == (256, 13, 13) and s["pool5"] == (256, 6, 6)
    assert s["fc6"] == (4096,) and s["fc7"] == (4096,) and s["fc8"] == (1000,)
    # per-column kernel shapes of the paper's table
    p = {L.name: L for L in spec.layers}
    assert p["conv2"].params["conv2.weight"] == (256, 48, 5, 5)
    assert p["conv3"].params["conv3.weight"] == (384, 256, 3, 3)
    assert p["conv4"].params["conv4.weight"] == (384, 192, 3, 3)
    assert p["conv5"].params["conv5.weight"] == (256, 192, 3, 3)
    assert p["fc6"].params["fc6.weight"] == (4096, 9216)
    # neurons per layer as the paper lists them (conv1: 55*55*96, the corrected figure)
    neurons = [math.prod(s[n]) for n in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6",
                                         "fc7", "fc8")]
    assert neurons == [290_400, 186_624, 64_896, 64_896, 43_264, 4096, 4096, 1000]
    # columns: everything split except the classifier and the cost
    assert all(p[n].blocks == 2 for n in ("conv1", "norm1", "conv3", "fc6", "drop7"))
    assert p["fc8"].blocks == 1 and p["probs"].blocks == 1
    # initial biases: 1 in conv2/4/5, fc6/7, else 0; std 0.01 everywhere
    ones = {n for n, L in p.items() if L.type in ("conv", "fc") and L.attrs["init_bias"] == 1.0}
    assert ones == {"conv2", "conv4", "conv5", "fc6", "fc7"}
    assert all(L.attrs["init_std"] == 0.01 for L in p.values() if L.type in ("conv", "fc"))
    lrn = p["norm1"].attrs
    assert (lrn["size"], lrn["k"], lrn["alpha"], lrn["beta"], lrn["alpha_over_size"]) == \
        (5, 2.0, 1e-4, 0.75, False)
    assert p["drop6"].attrs["p"] == 0.5 and p["pool1"].attrs["size"] == 3
    L = spec.learning
    assert (L["lr"], L["momentum"], L["weight_decay"], L["batch_size"]) == (0.01, 0.9, 5e-4, 128)
    assert spec.feature_layer == "relu7"


def test_summary_table():
    text = format_summary(load_model("alexnet"))
    assert "60,965,224" in text
    assert "96x55x55" in text and "256x6x6" in text
    assert "split 2" in text and "whole @0" in text


def test_classes_and_input_size_change_shapes():
    spec = load_model("alexnet", classes=10)
    assert spec.shapes["fc8"] == (10,)
    assert spec.num_params == 60_965_224 - 990 * 4096 - 990
    le = load_model("lenet5", input_size=32)
    assert le.shapes["pool2"] == (16, 6, 6)
    assert le.layer("fc3").params["fc3.weight"] == (120, 576)


GOOD = SMALL


def write(tmp_path, text, name="m.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_good_file_and_defaults(tmp_path):
    spec = load_model(write(tmp_path, GOOD))
    assert [L.name for L in spec.layers] == ["conv1", "relu1", "pool1", "fc2", "probs"]
    assert spec.layer("relu1").inputs == ["conv1"]          # default: the layer above
    assert spec.shapes["pool1"] == (4, 4, 4)
    assert spec.layer("fc2").params["fc2.weight"] == (4, 64)
    assert spec.learning["lr"] == 0.01 and spec.learning["momentum"] == 0.9


def test_layers_may_be_written_in_any_order(tmp_path):
    text = GOOD.replace('[layers.fc2]\ntype = "fc"', '[layers.fc2]\ntype = "fc"\ninput = "pool1"')
    # move conv1 to the end of the file: the topological order still starts with it
    head, rest = text.split("[layers.conv1]")
    conv, tail = rest.split("[layers.relu1]")
    text = head + "[layers.relu1]\ninput = \"conv1\"" + tail + "[layers.conv1]" + conv
    spec = parse_model(text, path="reordered.toml")
    assert [L.name for L in spec.layers][:2] == ["conv1", "relu1"]


def bad(tmp_path, text, *expected):
    p = write(tmp_path, text)
    with pytest.raises(ModelError) as e:
        load_model(p)
    msg = str(e.value)
    assert msg.startswith(str(p)), msg
    for piece in expected:
        assert piece in msg, msg
    return e.value


def test_error_unknown_layer_type(tmp_path):
    err = bad(tmp_path, GOOD.replace('type = "relu"', 'type = "tanh"'),
              "layer 'relu1'", "unknown layer type 'tanh'", "known types")
    assert err.layer == "relu1"


def test_error_unknown_key(tmp_path):
    bad(tmp_path, GOOD.replace("padding = 1", "padding = 1\nstrides = 2"),
        "layer 'conv1'", "unknown key 'strides'")
    bad(tmp_path, GOOD.replace("crop = 8", "crop = 8\nmirror = true"), "unknown key 'mirror'",
        "[data]")
    bad(tmp_path, GOOD + "\n[learning]\nlearning_rate = 0.1\n", "unknown key 'learning_rate'")
    bad(tmp_path, GOOD + "\n[extras]\nx = 1\n", "unknown section 'extras'")


def test_error_bad_values(tmp_path):
    bad(tmp_path, GOOD.replace("filters = 4", "filters = 0"), "layer 'conv1'", "filters:",
        ">= 1")
    bad(tmp_path, GOOD.replace("filters = 4", "filters = 4.5"), "filters:", "integer")
    bad(tmp_path, GOOD.replace("[data]", '[layers.drop]\ntype = "dropout"\ninput = "relu1"\n'
                                         'p = 1.0\n[data]'), "layer 'drop'", "p:")
    bad(tmp_path, GOOD.replace("filters = 4\n", ""), "layer 'conv1'",
        "missing required key 'filters'")
    bad(tmp_path, GOOD.replace("[data]", "[learning]\nlr = -1\n[data]"), "lr:", "> 0")


def test_error_shape_mismatch(tmp_path):
    # the classifier must produce one score per class
    bad(tmp_path, GOOD.replace('outputs = "classes"', "outputs = 7"), "layer 'probs'",
        "7 outputs for 4 classes")
    # a window larger than its input
    bad(tmp_path, GOOD.replace("size = 3", "size = 11"), "layer 'conv1'",
        "11x11 filter does not fit the 8x8 input")
    # a conv layer reading a flat vector
    text = GOOD.replace('[layers.probs]', '[layers.conv9]\ntype = "conv"\ninput = "fc2"\n'
                                          'filters = 4\nsize = 1\nsplit = false\n'
                                          '[layers.fc9]\ntype = "fc"\noutputs = "classes"\n'
                                          'split = false\n[layers.probs]')
    bad(tmp_path, text, "layer 'conv9'", "needs (channels, height, width)")
    # the crop larger than the image
    bad(tmp_path, GOOD.replace("crop = 8", "crop = 9"), "crop 9 is larger than image_size 8")


def test_error_groups(tmp_path):
    base = GOOD.replace("columns = 2", "columns = 1")
    bad(tmp_path, base.replace("padding = 1", "padding = 1\ngroups = 2"),
        "layer 'conv1'", "groups=2 does not divide the 3 input channels")
    bad(tmp_path, base.replace("filters = 4", "filters = 5").replace("channels = 3", "channels = 4")
        .replace("padding = 1", "padding = 1\ngroups = 2"), "groups=2 does not divide the 5 filters")
    # a split layer with groups must read column-split input
    text = GOOD.replace("channels = 3", "channels = 4").replace("padding = 1", "padding = 1\ngroups = 2")
    bad(tmp_path, text, "layer 'conv1'", "input split into the same columns")
    # split outputs must divide into the columns
    bad(tmp_path, GOOD.replace("filters = 4", "filters = 5"), "5 outputs do not split into 2 columns")


def test_error_missing_and_cyclic_inputs(tmp_path):
    bad(tmp_path, GOOD.replace('[layers.relu1]\ntype = "relu"',
                               '[layers.relu1]\ntype = "relu"\ninput = "conv0"'),
        "layer 'relu1'", "input 'conv0' is not defined")
    cyc = GOOD.replace('[layers.conv1]\ntype = "conv"\ninput = "data"',
                       '[layers.conv1]\ntype = "conv"\ninput = "pool1"')
    err = bad(tmp_path, cyc, "cycle", "conv1", "relu1", "pool1")
    assert "->" in str(err)
    bad(tmp_path, GOOD.replace('[layers.relu1]\ntype = "relu"',
                               '[layers.relu1]\ntype = "relu"\ninput = "relu1"'),
        "cannot read its own output")


def test_error_structure(tmp_path):
    bad(tmp_path, GOOD.replace('[layers.probs]\ntype = "softmax"', ""),
        "exactly one softmax")
    bad(tmp_path, GOOD.replace("[data]", '[layers.side]\ntype = "relu"\ninput = "conv1"\n[data]'),
        "layer 'side'", "not used on the way to the softmax")
    bad(tmp_path, GOOD.replace("split = false\n", ""), "layer 'probs'",
        "split into 2 columns", "split = false")
    bad(tmp_path, "[model\nname='x'", "not valid TOML")
    bad(tmp_path, GOOD.replace("[model]", "[modell]"), "unknown section 'modell'")
    bad(tmp_path, GOOD.replace('split = false', 'split = false\ncolumn = 2'),
        "layer 'fc2'", "column 2 does not exist")


def test_shipped_name_beside_a_folder_of_that_name(tmp_path, monkeypatch):
    """`--data cifar --model cifar` run where the data folder is called cifar: the bare name is
    the shipped model; a file of that name would be the user's."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cifar").mkdir()
    assert load_model("cifar").name == load_model(models_dir() / "cifar.toml").name
    (tmp_path / "lenet5").write_text((models_dir() / "lenet5.toml").read_text().replace(
        'name = "lenet5"', 'name = "mine"'))
    assert load_model("lenet5").name == "mine"


def test_unknown_model_name():
    with pytest.raises(ModelError, match="unknown model 'alexnett'.*alexnet-small"):
        load_model("alexnett")
    with pytest.raises(ModelError, match="model file not found"):
        load_model("no/such/model.toml")


def test_memory_estimate_by_hand(monkeypatch):
    """SMALL at the default batch 128, float32: parameters 3 x (conv1 4*3*3*3+4 + fc2 4*64+4);
    per image the input (3*8*8), value and gradient of conv1 and relu1 (4*8*8 each), pool1
    (4*4*4) and its int32 switches, fc2 and probs (4 each)."""
    spec = parse_model(GOOD, path="m.toml")
    per_image = 4 * 192 + 8 * 256 + 8 * 256 + 8 * 64 + 4 * 64 + 8 * 4 + 8 * 4
    m = spec.memory()
    assert m["parameters"] == 12 * (112 + 260)
    assert m["activations"] == 128 * per_image
    assert m["total"] == 12 * 372 + 128 * per_image == 733_552
    assert spec.memory(batch_size=1)["activations"] == per_image
    assert sum(m["per_layer"].values()) + 128 * 4 * 192 == m["total"]
    assert "memory of a training step at batch size 128: about 0.0 GiB (733,552 bytes)" \
        in format_summary(spec)
    # refused one byte over the limit, naming the file, the layer with the largest share and
    # the number; accepted at it
    monkeypatch.setenv("ALEXNET_EXT_MEMORY_LIMIT", "733551")
    with pytest.raises(ModelError, match=r"m.toml: layer 'conv1': needs about 0.0 GiB "
                                         r"\(733,552 bytes\) to train at batch size 128"):
        parse_model(GOOD, path="m.toml")
    monkeypatch.setenv("ALEXNET_EXT_MEMORY_LIMIT", "733552")
    parse_model(GOOD, path="m.toml")


@pytest.mark.parametrize("model,split", [("chain", False), ("twocol", False), ("twocol", True),
                                         ("alexnet-small", False)])
def test_memory_estimate_of_a_fused_net(rng, model, split):
    """A net that fuses response norm -> max pool (Net(fuse="auto") on GPUs, fuse=True anywhere)
    never writes the norm's output: the estimate for that device and fuse setting leaves out
    exactly its value, checked against a fused net's tensors after a training step. (Its
    gradient stays: the fused backward still scatters the pool's gradient into a full-size
    array.)"""
    from alexnet_ext.nn import Net
    from helpers import random_batch
    from models_fixtures import CHAIN, TWO_COLUMNS
    spec = {"chain": lambda: parse_model(CHAIN, path="chain.toml"),
            "twocol": lambda: parse_model(TWO_COLUMNS, path="twocol.toml"),
            "alexnet-small": lambda: load_model("alexnet-small")}[model]()
    n = 3
    plain = spec.memory(n)
    assert spec.memory(n, device="cpu", fuse="auto") == plain == spec.memory(n, device="cuda",
                                                                             fuse=False)
    fused = spec.memory(n, fuse=True)
    assert spec.memory(n, device="cuda") == spec.memory(n, device="cuda:1", fuse="auto") == fused
    away = spec.fused_away(fuse=True)
    assert spec.fused_away() == spec.fused_away(device="cuda", fuse=False) == set()
    assert spec.fused_away(device="cuda") == away and away      # every model here has a pair
    net = Net(spec, split_columns=split, fuse=True)               # on the CPU, fused as on a GPU
    assert {name.split("@")[0] for name in net._fused_away} == away
    x, y = random_batch(rng, spec, n)
    net.forward(x, y, train=True)
    net.backward()
    unwritten = 0
    for name in away:
        parts = [t for key, t in net.tensors.items() if key.split("@")[0] == name]
        assert parts and all(t.value is None for t in parts), name
        unwritten += n * 4 * spec.layer(name).out_size
    assert plain["total"] - fused["total"] == plain["activations"] - fused["activations"] \
        == unwritten
    assert fused["parameters"] == plain["parameters"]
    for name, b in plain["per_layer"].items():
        out = n * 4 * spec.layer(name).out_size if name in away else 0
        assert fused["per_layer"][name] == b - out, name
    with pytest.raises(ValueError, match="fuse: expected 'auto', True or False, got 'yes'"):
        spec.memory(fuse="yes")


def test_memory_estimate_counts_what_no_net_fuses():
    """A norm read by an avg pool, or by a max pool and another layer, is not fused: every
    device and fuse setting gets the plain estimate."""
    from alexnet_ext.nn import Net
    from models_fixtures import toml_model
    head = [("conv1", "conv", {"input": "data", "filters": 4, "size": 3, "padding": 1}),
            ("norm1", "lrn", {"size": 3})]
    tails = {"avg": [("pool1", "pool", {"mode": "avg", "size": 2, "stride": 2}),
                     ("fc2", "fc", {"outputs": "classes"})],
             "two_readers": [("pool1", "pool", {"mode": "max", "size": 2, "stride": 2}),
                             ("fc2", "fc", {"input": ["pool1", "norm1"], "outputs": "classes"})]}
    for name, tail in tails.items():
        text = toml_model({"name": name, "channels": 3, "classes": 4},
                          head + tail + [("probs", "softmax", {})],
                          data={"image_size": 6, "crop": 6})
        spec = parse_model(text, path=f"{name}.toml")
        assert spec.fused_away(device="cuda", fuse=True) == set(), name
        assert not Net(spec, fuse=True)._fused_away, name
        assert spec.memory(2, device="cuda") == spec.memory(2, fuse=True) == spec.memory(2)


def test_models_too_big_for_memory_are_refused(tmp_path, monkeypatch):
    # a billion filters: about 65 TB of activations at batch 128, refused on any machine
    err = bad(tmp_path, GOOD.replace("filters = 4", "filters = 1_000_000_000"), "layer 'conv1'",
              "needs about", "to train at batch size 128", "more than the")
    assert err.layer == "conv1"
    # a batch size that does not fit, from the file or from an override (--batch-size)
    monkeypatch.setenv("ALEXNET_EXT_MEMORY_LIMIT", "1G")
    bad(tmp_path, GOOD + "\n[learning]\nbatch_size = 1_000_000\n", "batch size 1000000",
        "1.0 GiB (1,073,741,824 bytes) available")
    with pytest.raises(ModelError, match="batch size 1000000"):
        parse_model(GOOD, overrides={"learning": {"batch_size": 1_000_000}})
    assert parse_model(GOOD, overrides={"learning": {"batch_size": 1000}}).learning[
        "batch_size"] == 1000
    for v in ("lots", "-1G", "inf", "0"):
        monkeypatch.setenv("ALEXNET_EXT_MEMORY_LIMIT", v)
        with pytest.raises(ModelError, match=f"ALEXNET_EXT_MEMORY_LIMIT='{v}': expected a positive"):
            parse_model(GOOD)
    # the shipped models fit the machines they are meant for
    monkeypatch.setenv("ALEXNET_EXT_MEMORY_LIMIT", "16G")
    m = load_model("alexnet").memory()
    assert m["parameters"] == 12 * 60_965_224 and 2 * 2**30 < m["total"] < 16 * 2**30
