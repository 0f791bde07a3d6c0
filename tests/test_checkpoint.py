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


def _tensor_span(path, name):
    """Byte range of tensor ``name``'s data in a safetensors file (from its header)."""
    import json
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    begin, end = json.loads(raw[8:8 + n])[name]["data_offsets"]
    return 8 + n + begin, 8 + n + end


def test_flipped_bytes_are_found_and_named(tmp_path, rng):
    net = Net(load_model("lenet5"))
    randomize(net, rng)
    path = save_checkpoint(tmp_path / "c.safetensors", net, {"epoch": 1})
    load_checkpoint(path)                                    # intact: loads
    a, b = _tensor_span(path, "param/conv1.weight")
    raw = bytearray(path.read_bytes())
    raw[(a + b) // 2] ^= 0x10                                # one bit of one weight
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"c.safetensors: tensor param/conv1.weight is damaged"):
        load_checkpoint(path)
    with pytest.raises(ValueError, match="param/conv1.weight is damaged"):
        import_weights(Net(load_model("lenet5")), path)
    # the file is still valid safetensors: only the checksum notices
    from safetensors import safe_open
    with safe_open(str(path), framework="numpy") as f:
        assert f.get_tensor("param/conv1.weight").shape == net.param_shapes["conv1.weight"]


def test_incomplete_checkpoint_metadata(tmp_path):
    from safetensors.numpy import save_file

    from alexnet_ext.nn.checkpoint import CHECKPOINT_FORMAT
    p = tmp_path / "c.safetensors"
    save_file({"param/x": np.zeros(2, np.float32)}, str(p),
              metadata={"format": CHECKPOINT_FORMAT, "model": "x"})
    with pytest.raises(ValueError, match=r"c.safetensors: incomplete checkpoint \(no 'state'"):
        load_checkpoint(p)
    save_file({"param/x": np.zeros(2, np.float32)}, str(p),
              metadata={"format": CHECKPOINT_FORMAT, "model": "x", "state": '{"epoch": 1'})
    with pytest.raises(ValueError, match="'state' metadata is not JSON"):
        load_checkpoint(p)


def test_non_finite_weights_are_never_saved(tmp_path, rng):
    from alexnet_ext.nn.checkpoint import NonFiniteError
    net = Net(load_model("lenet5"))
    path = save_checkpoint(tmp_path / "c.safetensors", net, {"epoch": 1})
    before = path.read_bytes()
    net.params[0].value[...] = np.inf
    with pytest.raises(NonFiniteError, match="not written: .*non-finite") as e:
        save_checkpoint(path, net, {"epoch": 2})
    assert e.value.tensor == f"param/{net.params[0].name}"
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "c.safetensors"]


def test_disk_full_keeps_the_previous_file_and_no_temporary(tmp_path, monkeypatch, rng):
    import errno

    from alexnet_ext.nn import checkpoint as C
    net = Net(load_model("lenet5"))
    path = save_checkpoint(tmp_path / "c.safetensors", net, {"epoch": 1})
    before = path.read_bytes()

    def full(f, tensors, metadata):
        f.write(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(C, "_write_safetensors", full)
    with pytest.raises(OSError) as e:
        save_checkpoint(path, net, {"epoch": 2})
    assert e.value.errno == errno.ENOSPC
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "c.safetensors"]


def test_writes_never_follow_a_planted_symlink(tmp_path):
    import os

    from alexnet_ext.nn.checkpoint import atomic_write_text, open_append
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    run = tmp_path / "run"
    run.mkdir()
    # the temporary names of earlier versions, planted as links to the victim
    for name in (f".config.json.tmp{os.getpid()}", f".config.json.tmp{os.getpid() + 1}"):
        (run / name).symlink_to(victim)
    atomic_write_text(run / "config.json", "{}\n")
    # a link planted at the final name is replaced, not written through
    (run / "model.toml").symlink_to(victim)
    atomic_write_text(run / "model.toml", "x = 1\n")
    assert not (run / "model.toml").is_symlink() and (run / "model.toml").read_text() == "x = 1\n"
    (run / "metrics.jsonl").symlink_to(victim)
    with pytest.raises(OSError):
        open_append(run / "metrics.jsonl")
    assert victim.read_text() == "precious\n"
    assert (run / "config.json").read_text() == "{}\n"


def test_run_directory_lock(tmp_path):
    import subprocess
    import sys

    from alexnet_ext.nn.checkpoint import RunDirLocked, lock_run_dir
    held = lock_run_dir(tmp_path)
    with pytest.raises(RunDirLocked, match=r"in use by another trainer \(pid \d+\)"):
        lock_run_dir(tmp_path)
    # another process is refused as well, at once
    code = ("import sys; from alexnet_ext.nn.checkpoint import lock_run_dir, RunDirLocked\n"
            "try:\n    lock_run_dir(sys.argv[1])\nexcept RunDirLocked:\n    sys.exit(7)\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], timeout=60)
    assert r.returncode == 7
    held.close()
    lock_run_dir(tmp_path).close()                           # released with the file
