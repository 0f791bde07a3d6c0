"""Checkpoints and weight files: round trips, formulations, atomic writes, bad files."""
import numpy as np
import pytest

from alexnet_ext.nn import (Net, export_weights, import_weights, load_checkpoint, load_model,
                            save_checkpoint)


def randomize(net, rng):
    vals = {k: rng.standard_normal(s).astype(np.float32) for k, s in net.param_shapes.items()}
    vels = {k: rng.standard_normal(s).astype(np.float32) for k, s in net.param_shapes.items()}
    net.load_state_dict(vals)
    net.load_state_dict(vels, kind="velocity")
    return vals, vels


def test_init_follows_the_model_file():
    spec = load_model("alexnet-small", classes=7)
    net = Net(spec, seed=3)
    sd = net.state_dict()
    for L in spec.layers:
        if L.type not in ("conv", "fc"):
            continue
        w, b = sd[f"{L.name}.weight"], sd[f"{L.name}.bias"]
        assert np.all(b == L.attrs["init_bias"])
        assert abs(w.mean()) < 4 * L.attrs["init_std"] / np.sqrt(w.size)
        assert abs(w.std() / L.attrs["init_std"] - 1) < 0.1
    assert all(np.all(v == 0) for v in net.state_dict("velocity").values())
    # the seed decides the weights; the formulation does not
    same = Net(spec, seed=3, split_columns=True).state_dict()
    other = Net(spec, seed=4).state_dict()
    assert all(np.array_equal(sd[k], same[k]) for k in sd)
    assert not np.array_equal(sd["conv1.weight"], other["conv1.weight"])


def test_round_trip_between_formulations(tmp_path, rng):
    spec = load_model("alexnet-small", classes=5)
    split = Net(spec, split_columns=True)
    vals, vels = randomize(split, rng)
    state = {"epoch": 3, "batch": 2, "step": 17, "lr": 0.001, "schedule": {"best": 0.25}}
    mean = rng.random((3, 72, 72), dtype=np.float32)
    path = save_checkpoint(tmp_path / "checkpoint.safetensors", split, state,
                           extra={"mean": mean}, info={"class_names": list("abcde")})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json",
                                                          "checkpoint.safetensors"]
    ck = load_checkpoint(tmp_path)                           # a run directory works too
    assert ck.state == state and ck.info == {"class_names": list("abcde")}
    assert ck.model_text == spec.text
    np.testing.assert_array_equal(ck.extra["mean"], mean)
    merged = Net(spec)
    merged.load_state_dict(ck.params)
    merged.load_state_dict(ck.velocities, kind="velocity")
    for k in vals:
        np.testing.assert_array_equal(merged.state_dict()[k], vals[k])
        np.testing.assert_array_equal(merged.state_dict("velocity")[k], vels[k])
    # overwriting is atomic: a second save replaces the file, no temporaries remain
    save_checkpoint(path, merged, dict(state, epoch=4))
    assert load_checkpoint(path).state["epoch"] == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_weight_file_round_trip(tmp_path, rng):
    spec = load_model("cifar")
    a = Net(spec)
    vals, _ = randomize(a, rng)
    export_weights(a, tmp_path / "w.safetensors")
    b = Net(spec, seed=9)
    import_weights(b, tmp_path / "w.safetensors")
    for k in vals:
        np.testing.assert_array_equal(b.state_dict()[k], vals[k])
    # a checkpoint works as a weight file too
    save_checkpoint(tmp_path / "c.safetensors", a, {})
    c = Net(spec, seed=10)
    import_weights(c, tmp_path / "c.safetensors")
    np.testing.assert_array_equal(c.state_dict()["fc10.weight"], vals["fc10.weight"])


def test_bad_files(tmp_path, rng):
    net = Net(load_model("lenet5"))
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError, match="no checkpoint.safetensors"):
        load_checkpoint(tmp_path)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_checkpoint(junk)
    export_weights(net, tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="not an alexnet_ext checkpoint"):
        load_checkpoint(tmp_path / "w.safetensors")
    other = Net(load_model("cifar"))
    with pytest.raises(ValueError, match="do not match the model 'cifar'.*missing conv1.weight"
                                         "|do not match the model 'cifar'"):
        import_weights(other, tmp_path / "w.safetensors")
    wrong = net.state_dict()
    wrong["fc5.weight"] = wrong["fc5.weight"][:, :10]
    with pytest.raises(ValueError, match=r"fc5.weight: expected shape \(10, 84\)"):
        net.load_state_dict(wrong)
