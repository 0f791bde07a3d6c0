"""The graph: gradients of whole nets, two-column vs merged formulations, learning.

The float64 reference (tests/net_reference.py) never calls the package's kernels: a net's
float32 loss and gradients are checked against it (forward value, and central differences of
the reference for the gradients).
"""
import numpy as np
import pytest

import alexnet_ext.nn.device as device
from alexnet_ext.nn import ModelError, Net, load_model, parse_model
from alexnet_ext.nn import schema
from alexnet_ext.nn.layers import LAYER_TYPES, Layer, emit_grad
from helpers import assert_same_params, random_batch, random_images, random_params
from models_fixtures import BRANCHES, CHAIN, TWO_COLUMNS
from net_reference import ref_forward, ref_lrn


# Layers that can pass nothing: a ReLU dead on the whole batch (or a dropout dropping every unit
# still alive) leaves each parameter below it with an exact zero gradient, and comparing zeros
# with zeros checks nothing. The small nets here draw such weights now and then (about 1 draw in
# 300 for BRANCHES' relu2: 5 units on a 1x1 map), so check_gradients draws until every one of
# these layers passes something; the checks themselves are the same for every draw.
GATES = ("relu", "dropout")


def forward_with_live_gates(spec, net, rng, n, train, tries=20):
    """(params, x, y, loss) of the first draw of weights and batch under which every GATES
    layer has a non-zero output."""
    gates = [layer.name for layer in spec.layers if layer.type in GATES]
    for _ in range(tries):
        params = random_params(net, rng)
        x, y = random_batch(rng, spec, n)
        loss = net.forward(x, y, train=train, step=3, seed=11)
        if all(np.any(net.output(name) != 0) for name in gates):
            return params, x, y, loss
    raise AssertionError(f"in {tries} draws, always a layer of {gates} passing nothing")


def check_gradients(spec, net, rng, n=4, coords=12, train=True):
    params, x, y, loss = forward_with_live_gates(spec, net, rng, n, train)
    net.backward()
    masks = {}
    for layer in net.layers:                    # split nets: one mask per column, concatenated
        if layer.kind == "dropout" and layer.mask is not None:
            masks.setdefault(layer.name.split("@")[0], []).append(layer.mask.astype(np.float64))
    masks = {k: np.concatenate(v, axis=1) for k, v in masks.items()}
    ref = ref_forward(spec, params, x, y, masks)
    assert abs(loss - ref) <= 1e-5 * max(1.0, abs(ref)), (loss, ref)
    grads = net.state_dict("grad")
    hstep = 1e-6
    for name, g in grads.items():
        p = params[name]
        assert np.any(g != 0), f"{name}: zero gradient"
        # half the coordinates where the gradient is non-zero, half anywhere (dead ReLUs and
        # dropped units give exact zeros, which the reference must reproduce too)
        nz = np.flatnonzero(g)
        flat = np.concatenate([rng.choice(nz, size=min(coords // 2, nz.size), replace=False),
                               rng.choice(p.size, size=min(coords - coords // 2, p.size),
                                          replace=False)])
        num, ana = [], []
        for f in flat:
            idx = np.unravel_index(f, p.shape)
            old = p[idx]
            p[idx] = old + hstep
            up = ref_forward(spec, params, x, y, masks)
            p[idx] = old - hstep
            down = ref_forward(spec, params, x, y, masks)
            p[idx] = old
            num.append((up - down) / (2 * hstep))
            ana.append(g[idx])
        num, ana = np.array(num), np.array(ana)
        err = np.linalg.norm(num - ana) / max(np.linalg.norm(num), 1e-6)
        assert err < 2e-3, f"{name}: relative gradient error {err:.2e}\n{num}\n{ana}"
    return loss


def test_gradients_of_a_chain(rng):
    spec = parse_model(CHAIN, path="chain.toml")
    net = Net(spec)
    check_gradients(spec, net, rng)
    # the dropout layer was active: some units of fc1 were dropped
    drop = next(layer for layer in net.layers if layer.kind == "dropout")
    assert 0 < drop.mask.mean() < 1


def test_gradients_with_fan_out_and_several_inputs(rng):
    spec = parse_model(BRANCHES, path="branches.toml")
    assert spec.layer("fc3").params["fc3.weight"] == (4, 5 + 3 * 2 * 2)
    check_gradients(spec, Net(spec), rng)


def test_gradients_of_two_columns_split(rng):
    spec = parse_model(TWO_COLUMNS, path="twocol.toml")
    check_gradients(spec, Net(spec, split_columns=True), rng)


def test_two_columns_equal_the_grouped_net(rng, monkeypatch):
    """Split into per-column subgraphs == one graph with groups=2: outputs, gradients, updates."""
    spec = parse_model(TWO_COLUMNS, path="twocol.toml")
    merged, split = Net(spec, seed=5), Net(spec, seed=5, split_columns=True)
    assert sum(layer.kind == "transfer" for layer in merged.layers) == 0
    moves = []
    real = device.transfer

    def counting(x, src, dst, *, out):
        moves.append((x.shape, src, dst))
        return real(x, src, dst, out=out)

    monkeypatch.setattr(device, "transfer", counting)
    params = random_params(merged, rng, scale=0.3)
    split.load_state_dict({k: v.astype(np.float32) for k, v in params.items()})
    x, y = random_batch(rng, spec, 3)
    for step in range(2):
        lm = merged.forward(x, y, train=True, step=step)
        merged.backward()
        n_fwd = len(moves)
        ls = split.forward(x, y, train=True, step=step)
        assert len(moves) > n_fwd                     # activations crossed columns
        n_fwd = len(moves)
        split.backward()
        assert len(moves) > n_fwd                     # and gradients crossed back
        # float32 sums in another order: errors relative to each array's scale
        assert abs(lm - ls) < 1e-5 * abs(lm)
        np.testing.assert_allclose(split.probs, merged.probs, rtol=1e-4, atol=1e-6)
        for name in ("pool1", "conv3", "relu4"):
            m = merged.output(name)
            np.testing.assert_allclose(split.output(name), m, rtol=1e-5,
                                       atol=1e-5 * np.abs(m).max(), err_msg=name)
        assert_same_params(split, merged, "grad", 1e-4, 5e-5)
        merged.update(lr=0.05)
        split.update(lr=0.05)
    assert_same_params(split, merged, "value", 1e-5, 1e-5)
    # both directions between the two columns were used
    assert {(s, d) for _, s, d in moves} == {("cpu", "cpu")}
    assert len({shape for shape, _, _ in moves}) >= 3
    # the split net's cross-column layers hold one weight block per input column
    conv3 = [layer for layer in split.layers if layer.name == "conv3@1"][0]
    assert len(conv3.sources) == 2 and conv3.inputs[0].name == "relu2@0->1"


def test_split_columns_drop_the_units_the_merged_net_drops(rng):
    """With dropout active (alexnet-small: dropout on the column-split fc6 and fc7), the split
    net's per-column dropout layers draw the merged net's masks: same loss and gradients."""
    spec = load_model("alexnet-small", classes=7)
    merged, split = Net(spec, seed=3), Net(spec, seed=3, split_columns=True)
    drops = [layer for layer in split.layers if layer.kind == "dropout"]
    assert len(drops) >= 4 and all(layer.block is not None for layer in drops)
    x, y = random_batch(rng, spec, 3)
    lm = merged.forward(x, y, train=True, step=4, seed=9)
    ls = split.forward(x, y, train=True, step=4, seed=9)
    assert abs(lm - ls) < 1e-5 * abs(lm)
    masks_m = {layer.name: layer.mask for layer in merged.layers if layer.kind == "dropout"}
    for layer in drops:
        base, c = layer.name.split("@")
        width = layer.mask.shape[1]
        np.testing.assert_array_equal(
            layer.mask, masks_m[base][:, int(c) * width:(int(c) + 1) * width], err_msg=layer.name)
    merged.backward()
    split.backward()
    assert_same_params(split, merged, "grad", 1e-4, 5e-5)


def test_lrn_stays_within_a_column(rng):
    """Merged, a column-split tensor is normalised per column: the maps of the other column
    do not enter a map's window."""
    spec = parse_model(TWO_COLUMNS, path="twocol.toml")
    net = Net(spec)
    random_params(net, rng)
    x = random_images(rng, spec, 2)
    net.forward(x)
    a = net.output("relu1").astype(np.float64)
    got = net.output("norm1")
    np.testing.assert_allclose(got, ref_lrn(a, 3, 1.5, 0.2, 0.75, blocks=2), rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, ref_lrn(a, 3, 1.5, 0.2, 0.75, blocks=1), rtol=1e-5, atol=1e-6)


def test_overfits_a_few_dozen_images(rng):
    spec = parse_model(CHAIN.replace("outputs = 12", "outputs = 32").replace("p = 0.5", "p = 0.0"),
                       path="chain.toml")
    net = Net(spec, seed=1)
    random_params(net, rng, scale=0.3)
    x, y = random_batch(rng, spec, 36)
    losses = []
    for step in range(300):
        for b in range(0, 36, 12):
            losses.append(net.forward(x[b:b + 12], y[b:b + 12], train=True, step=step))
            net.backward()
            net.update(lr=0.05, weight_decay=0.0)
    net.forward(x, y)
    err = np.mean(net.probs.argmax(1) != y)
    assert err == 0.0, f"training error {err} after 300 epochs; loss {losses[-3:]}"
    assert np.mean(losses[-3:]) < 0.05 < losses[0]


def test_forward_until_and_output(rng):
    spec = parse_model(TWO_COLUMNS, path="twocol.toml")
    net = Net(spec, split_columns=True)
    x = random_images(rng, spec, 2)
    assert net.forward(x, until="relu4") is None
    assert net.output("relu4").shape == (2, 8)
    with pytest.raises(ValueError, match="no tensor 'nope'"):
        net.forward(x, until="nope")
    with pytest.raises(ValueError, match=r"x: expected images of shape \(N, 3, 15, 15\)"):
        net.forward(x[:, :, :14])
    with pytest.raises(RuntimeError, match="backward needs a forward pass with labels"):
        net.backward()


def test_buffers_are_kept_between_steps(rng):
    spec = parse_model(CHAIN, path="chain.toml")
    net = Net(spec)
    x, y = random_batch(rng, spec, 4)
    net.forward(x, y, train=True)
    net.backward()
    # outputs of ops that take out= (conv, relu, fc, dropout, softmax) and gradients written
    # by the undo ops that take out= (into pool1 from fc1, into fc1 from relu2, ...)
    values = ("conv1", "relu1", "fc1", "relu2", "drop", "fc2", "probs")
    grads = ("pool1", "fc1", "relu2", "drop", "fc2")
    first = ({n: net.tensors[n].value for n in values}, {n: net.tensors[n].grad for n in grads})
    net.forward(x, y, train=True, step=1)
    net.backward()
    for n in values:
        assert net.tensors[n].value is first[0][n], n
    for n in grads:
        assert net.tensors[n].grad is first[1][n], n


def test_paper_net_trains_a_few_steps_on_the_cpu(rng):
    """The full two-column net (merged) at batch 4: loss finite and falling on a fixed batch.

    The same 4 images every step give the same gradient every step, which momentum 0.9 piles up;
    at the paper's lr 0.01 that overshoots within two steps (the net is big enough to fit 4
    images almost at once), so this uses lr 1e-4.
    """
    spec = load_model("alexnet", classes=1000)
    net = Net(spec, seed=0)
    x = rng.standard_normal((4, 3, 224, 224)).astype(np.float32) * 50   # pixel-like scale
    y = rng.integers(0, 1000, 4).astype(np.int64)
    losses, test_losses = [], [net.forward(x, y)]
    for step in range(6):
        losses.append(net.forward(x, y, train=True, step=step))
        net.backward()
        net.update(lr=1e-4)
        test_losses.append(net.forward(x, y))          # without dropout's noise
    assert all(np.isfinite(losses + test_losses)), losses
    assert all(b < a for a, b in zip(test_losses, test_losses[1:])), test_losses
    assert test_losses[-1] < test_losses[0] - 1.0, test_losses
    assert losses[-1] < losses[0] - 1.0, losses


@pytest.mark.parametrize("name", ["alexnet-small", "cifar", "lenet5"])
def test_shipped_models_take_a_step(rng, name):
    spec = load_model(name, classes=7)
    for split in (False, True):
        net = Net(spec, split_columns=split, seed=2)
        x, y = random_batch(rng, spec, 3)
        first = net.forward(x, y, train=True)
        net.backward()
        net.update(lr=0.01)
        assert np.isfinite(first) and np.isfinite(net.forward(x, y))
        assert all(np.all(np.isfinite(g)) for g in net.state_dict("grad").values())


class Scale(Layer):
    """A layer type written as a user would add one: ``y = factor * x`` (NumPy, CPU only)."""

    kind = type = "scale"
    keys = {"factor": schema.number(2.0)}

    @classmethod
    def from_spec(cls, L, name, src, out, part, parts):
        layer = cls(name, [src], out)
        layer.factor = np.float32(L.attrs["factor"])
        return layer

    def forward(self, ctx):
        self.output.value = self.inputs[0].value * self.factor

    def backward(self, ctx):
        gy = self.output.grad
        emit_grad(self.inputs[0], ctx.n, lambda out: np.multiply(gy, self.factor, out=out))


@pytest.mark.parametrize("split", [False, True])
def test_a_new_layer_type_is_one_class(rng, monkeypatch, split):
    """Registering one class makes a type usable in model files, merged and split into columns:
    a net scaling relu3 by 0.5 equals the net without it whose fc4 weights are halved (loss,
    gradients of everything below; fc4's gradient is halved)."""
    monkeypatch.setitem(LAYER_TYPES, "scale", Scale)
    text = TWO_COLUMNS.replace("[layers.fc4]", '[layers.half]\ntype = "scale"\nfactor = 0.5\n\n'
                                               "[layers.fc4]")
    spec, plain = parse_model(text, path="scaled.toml"), parse_model(TWO_COLUMNS, path="p.toml")
    assert spec.layer("half").blocks == 2 and spec.shapes["half"] == spec.shapes["relu3"]
    scaled, ref = Net(spec, split_columns=split), Net(plain, split_columns=split)
    params = random_params(scaled, rng, scale=0.3)
    ref.load_state_dict({k: np.float32(v * (0.5 if k == "fc4.weight" else 1.0))
                         for k, v in params.items()})
    x, y = random_batch(rng, spec, 3)
    ls, lr = scaled.forward(x, y, train=True), ref.forward(x, y, train=True)
    assert abs(ls - lr) <= 1e-5 * abs(lr)
    scaled.backward()
    ref.backward()
    gs, gr = scaled.state_dict("grad"), ref.state_dict("grad")
    gr["fc4.weight"] *= 0.5
    for k in gr:
        np.testing.assert_allclose(gs[k], gr[k], rtol=1e-4, atol=1e-5 * np.abs(gr[k]).max(),
                                   err_msg=k)
    with pytest.raises(ModelError, match="layer 'half': factor: expected a number, got 'x'"):
        parse_model(text.replace("factor = 0.5", 'factor = "x"'), path="scaled.toml")
