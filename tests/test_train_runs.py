"""The trainer under crashes, kills, damage and careless use: no lost or wrong work, one-line
errors with documented exit statuses, step logs without a terminal (issue 10)."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import alexnet_ext
from alexnet_ext import evaluate, features, train, trainer
from alexnet_ext.nn import checkpoint as C
from alexnet_ext.nn import load_checkpoint
from helpers import random_batch
from train_helpers import TINY, ArrayLoader, assert_same_run, metrics, run_train
from train_helpers import tiny_data, tiny_model  # noqa: F401 (module-scoped fixtures)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_data, tiny_model):
    """A run of 2 epochs (seed 7) and its directory; tests copy it before changing it."""
    run = tmp_path_factory.mktemp("runs") / "straight"
    assert run_train("--data", tiny_data, "--model", tiny_model, "--workers", "0", "--seed", "7",
                     "--epochs", "2", "--out", run, "--log-every", "off") == 0
    return run


def copy_run(run, tmp_path, name="run"):
    dst = tmp_path / name
    shutil.copytree(run, dst)
    return dst


def strict_lines(path):
    def no_constant(name):
        raise ValueError(f"bare {name}")
    return [json.loads(line, parse_constant=no_constant) for line in path.read_text().splitlines()]


def one_line(capsys, code, expected_code=2):
    err = capsys.readouterr().err.strip()
    assert code == expected_code, err
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


def rewrite_checkpoint(path, drop=(), replace=None, meta_drop=(), state_drop=()):
    """Rewrite a checkpoint file with tensors / metadata removed or replaced (checksums redone)."""
    from safetensors import safe_open
    with safe_open(str(path), framework="numpy") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for k in list(tensors):
        if any(k.startswith(d) for d in drop):
            del tensors[k]
    tensors.update(replace or {})
    state = json.loads(meta["state"])
    for k in state_drop:
        del state[k]
    meta["state"] = json.dumps(state)
    for k in meta_drop:
        del meta[k]
    meta.pop("crc32", None)
    C._atomic_save(tensors, path, meta)


# ---- lost or wrong work ------------------------------------------------------------------------

def test_nan_validation_loss_keeps_the_last_good_checkpoint(capsys, tmp_path, tiny_data,
                                                           tiny_model):
    # The last step of epoch 2 blows the weights up after its (finite) loss was taken: only the
    # validation pass sees it. Neither that state nor a bare NaN may be written.
    run = tmp_path / "run"

    def blow_up(t):
        if t.state["epoch"] == 1 and t.state["batch"] == len(t.train_loader):
            for p in t.net.params:
                p.value[...] = 1e30

    assert run_train("--data", tiny_data, "--model", tiny_model, "--workers", "0",
                     "--epochs", "3", "--out", run, on_step=blow_up) == 1
    out = capsys.readouterr().out
    assert "validation loss became" in out and "last good checkpoint" in out
    ck = load_checkpoint(run)
    assert ck.state["epoch"] == 1 and ck.state["status"] != "diverged"
    assert all(np.all(np.abs(v) < 1e10) for v in ck.params.values())
    rows = strict_lines(run / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["val_loss"] is None and "val_loss" in rows[1]["non_finite"]
    assert load_checkpoint(run / "best.safetensors").state["epoch"] == 1
    # resuming from the last good checkpoint drops the bad epoch's line
    assert run_train("--resume", run, "--workers", "0", "--epochs", "2") == 0
    assert [r["epoch"] for r in strict_lines(run / "metrics.jsonl")] == [1, 2]
    assert "non_finite" not in strict_lines(run / "metrics.jsonl")[1]


def test_non_finite_step_is_strict_json_in_the_step_log(capsys, tmp_path, tiny_data, tiny_model):
    run = tmp_path / "run"

    def poison(t):
        if t.state["step"] == 5:
            t.net.params[0].value[...] = np.nan

    assert run_train("--data", tiny_data, "--model", tiny_model, "--workers", "0", "--out", run,
                     on_step=poison) == 1
    steps = strict_lines(run / "steps.jsonl")
    assert [s["step"] for s in steps] == list(range(1, 7))
    assert steps[-1]["loss"] is None and steps[-1]["non_finite"] == ["loss"]
    assert load_checkpoint(run).state["epoch"] == 1


def test_step_checkpoints_survive_a_crash_and_resume_exactly(tmp_path, finished_run, tiny_data,
                                                             tiny_model):
    run = tmp_path / "run"

    def crash(t):                        # what kill -9 leaves: no handler runs, nothing saved
        if t.state["step"] == 7:
            raise SystemExit("killed")

    with pytest.raises(SystemExit):
        run_train("--data", tiny_data, "--model", tiny_model, "--workers", "0", "--seed", "7",
                  "--epochs", "2", "--out", run, "--checkpoint-every", "3", on_step=crash)
    ck = load_checkpoint(run)
    # steps 3 and 6 were checkpoints; 6 is in the middle of epoch 2 (4 batches an epoch)
    assert (ck.state["epoch"], ck.state["batch"], ck.state["step"]) == (1, 2, 6)
    assert ck.state["status"] == "running"
    assert run_train("--resume", run, "--workers", "0") == 0
    assert_same_run(finished_run, run)
    assert [s["step"] for s in strict_lines(run / "steps.jsonl")] == list(range(1, 9))


def test_checkpoint_every_by_time(tmp_path, rng):
    from alexnet_ext.nn import Net, parse_model
    spec_model = parse_model(TINY)
    x, y = random_batch(rng, spec_model, 24)
    saves = []
    t = trainer.Trainer(Net(spec_model), dict(spec_model.learning, epochs=1),
                        ArrayLoader(x, y, batch_size=8), run_dir=tmp_path, log=lambda s: None,
                        progress=False, checkpoint_seconds=1e-9,
                        on_step=lambda t: saves.append(
                            load_checkpoint(tmp_path).state["step"]
                            if (tmp_path / "checkpoint.safetensors").exists() else None))
    assert t.train() == "finished"
    t.close()
    # on_step runs before the step's checkpoint: it sees the previous step's
    assert saves == [None, 1, 2]
    assert train.parse_every("10m", "--x") == (None, 600.0)
    assert train.parse_every("250", "--x") == (250, None)
    assert train.parse_every("off", "--x") == (None, None)
    with pytest.raises(train.UsageError, match="--x 5 minutes"):
        train.parse_every("5 minutes", "--x")


def test_best_checkpoint_is_the_lowest_validation_error(finished_run):
    rows = metrics(finished_run)
    best = load_checkpoint(finished_run / "best.safetensors")
    i = int(np.argmin([r["val_top1"] for r in rows]))
    assert best.state["epoch"] == rows[i]["epoch"]
    assert best.state["best_val_top1"] == rows[i]["val_top1"]
    assert evaluate.main([str(finished_run / "best.safetensors"), "--workers", "0"]) == 0


def test_sigterm_saves_one_checkpoint_and_exits_143(tmp_path, tiny_data, tiny_model):
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    p = subprocess.Popen([sys.executable, "-m", "alexnet_ext.train", "--data", str(tiny_data),
                          "--model", str(tiny_model), "--workers", "0", "--epochs", "100000",
                          "--out", str(run), "--log-every", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        for line in p.stdout:
            if line.startswith("step ") or time.monotonic() > deadline:
                break
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 143, err
    assert "SIGTERM: stopping after this step" in out and "continue with:" in out
    assert "Traceback" not in err
    assert load_checkpoint(run).state["status"] == "interrupted"


def test_partial_metrics_line_does_not_break_resume(capsys, tmp_path, tiny_data, tiny_model):
    run = tmp_path / "run"
    assert run_train("--data", tiny_data, "--model", tiny_model, "--workers", "0",
                     "--epochs", "1", "--out", run) == 0
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "step": 8, "lr": 0.0')            # cut short by a crash
    with open(run / "steps.jsonl", "a") as f:
        f.write('{"step": 5, "lo')
    capsys.readouterr()
    assert run_train("--resume", run, "--workers", "0", "--epochs", "2") == 0
    assert "ignored 1 unreadable line(s)" in capsys.readouterr().out
    assert [r["epoch"] for r in strict_lines(run / "metrics.jsonl")] == [1, 2]
    assert [s["step"] for s in strict_lines(run / "steps.jsonl")] == list(range(1, 9))


def test_flipped_bytes_in_a_run_are_named(capsys, tmp_path, finished_run):
    run = copy_run(finished_run, tmp_path)
    path = run / "checkpoint.safetensors"
    raw = bytearray(path.read_bytes())
    n = int.from_bytes(raw[:8], "little")
    a, b = json.loads(raw[8:8 + n])["param/fc3.weight"]["data_offsets"]
    raw[8 + n + (a + b) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    err = one_line(capsys, run_train("--resume", run, "--epochs", "3", "--workers", "0"))
    assert "checkpoint.safetensors: tensor param/fc3.weight is damaged" in err
    err = one_line(capsys, evaluate.main([str(run), "--workers", "0"]))
    assert "param/fc3.weight is damaged" in err


def test_second_trainer_on_the_same_directory_stops_at_once(capsys, tmp_path, finished_run,
                                                             tiny_data, tiny_model):
    run = copy_run(finished_run, tmp_path)
    held = C.lock_run_dir(run)
    try:
        err = one_line(capsys, run_train("--resume", run, "--epochs", "3", "--workers", "0"))
        assert f"--resume {run}: in use by another trainer (pid {os.getpid()})" in err
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        other = C.lock_run_dir(fresh)
        err = one_line(capsys, run_train("--data", tiny_data, "--model", tiny_model,
                                         "--out", fresh))
        assert "in use by another trainer" in err
        other.close()
        assert not (fresh / "config.json").exists()
    finally:
        held.close()
    assert load_checkpoint(run).state["epoch"] == 2


# ---- clean errors ------------------------------------------------------------------------------

def test_damaged_checkpoints_and_configs_are_one_line(capsys, tmp_path, finished_run):
    resume = ("--epochs", "3", "--workers", "0")
    cases = {
        "wrong shape": (dict(replace={"param/fc3.weight": np.zeros((3, 3), np.float32)}),
                        r"fc3.weight: expected shape"),
        "missing parameter": (dict(drop=("param/conv2.weight",)), "missing conv2.weight"),
        "no velocities": (dict(drop=("velocity/",)), "holds no velocities"),
        "missing velocity": (dict(drop=("velocity/fc4.bias",)), "velocities: .*missing fc4.bias"),
        "no state": (dict(meta_drop=("state",)), r"incomplete checkpoint \(no 'state'"),
        "state keys": (dict(state_drop=("partial",)), r"incomplete loop state \(no 'partial'"),
    }
    import re
    for what, (change, pattern) in cases.items():
        run = copy_run(finished_run, tmp_path, what.replace(" ", "_"))
        rewrite_checkpoint(run / "checkpoint.safetensors", **change)
        err = one_line(capsys, run_train("--resume", run, *resume))
        assert "checkpoint.safetensors" in err and re.search(pattern, err), (what, err)
        if what in ("wrong shape", "missing parameter"):
            err = one_line(capsys, evaluate.main([str(run), "--workers", "0"]))
            assert "checkpoint.safetensors" in err and re.search(pattern, err), (what, err)
    # config.json cut short, or without a key
    run = copy_run(finished_run, tmp_path, "config")
    text = (run / "config.json").read_text()
    (run / "config.json").write_text(text[:len(text) // 2])
    err = one_line(capsys, run_train("--resume", run, *resume))
    assert "config.json: not valid JSON" in err
    cfg = json.loads(text)
    del cfg["learning"]
    (run / "config.json").write_text(json.dumps(cfg))
    err = one_line(capsys, run_train("--resume", run, *resume))
    assert "config.json: incomplete (no 'learning')" in err


def test_out_is_a_file_and_json_into_a_missing_directory(capsys, tmp_path, finished_run,
                                                         tiny_data, tiny_model):
    f = tmp_path / "afile"
    f.write_text("x")
    err = one_line(capsys, run_train("--data", tiny_data, "--model", tiny_model, "--out", f))
    assert f"--out {f}: exists and is not a directory" in err
    err = one_line(capsys, run_train("--data", tiny_data, "--model", tiny_model,
                                     "--out", f / "sub"))
    assert f"--out {f / 'sub'}" in err
    missing = tmp_path / "nowhere" / "e.json"
    err = one_line(capsys, evaluate.main([str(finished_run), "--workers", "0",
                                          "--json", str(missing)]))
    assert f"--json {missing}: no such directory" in err
    assert "checkpoint" not in capsys.readouterr().out      # refused before any work
    err = one_line(capsys, features.main([str(finished_run), "--out", str(f)]))
    assert "exists and is not a directory" in err


def test_disk_full_while_saving(capsys, tmp_path, monkeypatch, tiny_data, tiny_model):
    run = tmp_path / "run"
    real = C._write_safetensors

    def writer(fh, tensors, metadata):
        if json.loads(metadata["state"])["epoch"] == 2:
            fh.write(b"\0" * 4096)
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fh, tensors, metadata)

    monkeypatch.setattr(C, "_write_safetensors", writer)
    err = one_line(capsys, run_train("--data", tiny_data, "--model", tiny_model, "--workers",
                                     "0", "--epochs", "3", "--out", run), expected_code=3)
    assert "No space left on device" in err and "previous checkpoint is kept" in err
    assert load_checkpoint(run).state["epoch"] == 1
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def test_ctrl_c_while_loader_workers_start(capsys, tmp_path, monkeypatch, tiny_data, tiny_model):
    # Ctrl-C goes to the whole process group: the loader's workers, still starting, die of it
    # and the loader reports a WorkerError right after the trainer's handler asked to stop.
    from alexnet_ext.data import BatchLoader, WorkerError
    real = BatchLoader.epoch

    def epoch(self, e, start_batch=0):
        if self.train:
            os.kill(os.getpid(), signal.SIGINT)
            raise WorkerError("data loader worker 0 (pid 1) was killed by signal SIGINT; the "
                              "loader is closed")
        return real(self, e, start_batch)

    monkeypatch.setattr(BatchLoader, "epoch", epoch)
    run = tmp_path / "run"
    code = run_train("--data", tiny_data, "--model", tiny_model, "--workers", "0", "--out", run)
    captured = capsys.readouterr()
    assert code == 130, captured.err
    assert "Traceback" not in captured.err and "WorkerError" not in captured.err
    assert "checkpoint saved" in captured.out
    ck = load_checkpoint(run)
    assert (ck.state["step"], ck.state["status"]) == (0, "interrupted")


# ---- watching a run ----------------------------------------------------------------------------

def test_step_lines_step_log_and_tensorboard(capsys, tmp_path, monkeypatch, tiny_data,
                                             tiny_model):
    calls = []

    class FakeWriter:                    # stands in for tensorboardX when it is not installed
        def __init__(self, logdir):
            calls.append(("init", logdir))

        def add_scalar(self, tag, value, step):
            calls.append((tag, value, step))

        def flush(self):
            pass

        def close(self):
            calls.append(("close",))

    fake = type(sys)("tensorboardX")
    fake.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "tensorboardX", fake)
    run = tmp_path / "run"
    assert run_train("--data", tiny_data, "--model", tiny_model, "--workers", "0",
                     "--epochs", "1", "--out", run, "--log-every", "2") == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("step ")]
    assert [ln.split()[1] for ln in lines] == ["2", "4"]
    for ln in lines:
        assert "loss" in ln and "top-1 error" in ln and "img/s" in ln and "data wait" in ln
    steps = strict_lines(run / "steps.jsonl")
    assert [s["step"] for s in steps] == [1, 2, 3, 4]
    assert all({"loss", "top1", "lr", "seconds", "data_wait"} <= set(s) for s in steps)
    # the step line's loss is the mean of the step log's losses over its interval
    shown = float(lines[1].split("loss")[1].split()[0])
    assert abs(shown - np.mean([s["loss"] for s in steps[2:4]])) < 1e-4
    assert calls[0] == ("init", str(run / "tensorboard"))
    assert [c[2] for c in calls if c[0] == "step/loss"] == [1, 2, 3, 4]
    assert any(c[0] == "epoch/val_top1" for c in calls) and calls[-1] == ("close",)
    # one epoch is "1 epoch"; 3 classes: no top-5 error (always 0)
    assert "done: 1 epoch, 4 steps" in out and "1 epochs" not in out
    assert "top-5" not in out
    assert "1 epochs" not in (run / "train.log").read_text()
    assert f"{run / 'steps.jsonl'}" in out


def test_implausible_first_loss_is_flagged(rng):
    from alexnet_ext.nn import Net, parse_model
    spec = parse_model(TINY, path="tiny.toml")
    x, y = random_batch(rng, spec, 16)
    y[:] = np.arange(16) % 3                         # every class: a confident guess is wrong
    for bias, flagged in ((0.0, False), (40.0, True)):
        net = Net(spec, seed=1)
        fc4 = [p for p in net.params if p.name == "fc4.bias"][0]
        fc4.value[...] = np.array([bias, -bias, 0.0], np.float32)   # logits far from uniform
        lines = []
        t = trainer.Trainer(net, dict(spec.learning, epochs=1, lr=1e-6),
                            ArrayLoader(x, y, batch_size=8), log=lines.append, progress=False)
        t.train()
        assert any("far above ln(classes)" in ln for ln in lines) == flagged, lines


def test_gpus_implies_cuda_and_no_driver_message(capsys, monkeypatch, tiny_data):
    if alexnet_ext.cuda_available():
        pytest.skip("this machine has a GPU")
    err = one_line(capsys, run_train("--gpus", "2", "--data", tiny_data))
    assert "--gpus 2: no usable GPU" in err and "needs --device cuda" not in err
    status = {"built_with_cuda": True, "emulated": False, "available": False,
              "reason": "CUDA runtime: CUDA driver version is insufficient for CUDA runtime "
                        "version", "runtime_version": 13000, "driver_version": 0, "devices": []}
    monkeypatch.setattr(alexnet_ext, "cuda_status", lambda: status)
    for args in (("--device", "cuda"), ("--gpus", "2")):
        err = one_line(capsys, run_train(*args, "--data", tiny_data))
        assert "no NVIDIA driver was found" in err and "insufficient" not in err, err


def test_features_are_written_with_their_items(tmp_path, finished_run):
    out = tmp_path / "nn"
    assert features.main([str(finished_run), "--out", str(out), "--queries", "3",
                          "--neighbors", "4", "--workers", "0"]) == 0
    base = np.load(out / "train_features.npy")
    q = np.load(out / "query_features.npy")
    items = (out / "train_items.txt").read_text().split()
    assert base.shape == (36, 16) and base.dtype == np.float32 and q.shape == (3, 16)
    # the generated set is an image folder: each row's file, in the split's order
    assert len(items) == 36 == len(set(items)) and all(Path(i).is_file() for i in items), items
    qitems = (out / "query_items.txt").read_text().split()
    recs = json.loads((out / "neighbors.json").read_text())
    # the distances in neighbors.json follow from the saved rows
    for r, rec in enumerate(recs):
        assert Path(qitems[r]).is_file()
        for nb in rec["neighbors"]:
            d = np.linalg.norm(q[r].astype(np.float64) - base[nb["index"]])
            assert abs(d - nb["distance"]) <= 1e-4 * max(1.0, d)

    class WithPaths:
        paths = [f"/data/img{i}.jpg" for i in range(5)]

        def __len__(self):
            return 5

    assert features.item_names(WithPaths(), np.array([3, 0])) == ["/data/img3.jpg",
                                                                   "/data/img0.jpg"]


def test_planted_symlinks_in_the_run_directory_are_not_followed(tmp_path, tiny_data, tiny_model):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    run = tmp_path / "run"
    run.mkdir()
    pid = os.getpid()
    # the predictable temporary names of earlier versions, and the logs themselves
    for name in (f".config.json.tmp{pid}", f".checkpoint.safetensors.tmp{pid}",
                 f".checkpoint.json.tmp{pid}", f".curves.tmp{pid}.png", "metrics.jsonl",
                 "steps.jsonl"):
        (run / name).symlink_to(victim)
    assert run_train("--data", tiny_data, "--model", tiny_model, "--workers", "0",
                     "--epochs", "1", "--out", run) == 0
    assert victim.read_text() == "precious\n"
    assert len(strict_lines(run / "metrics.jsonl")) == 1


def test_disk_full_outside_the_loop_is_one_line(capsys, tmp_path, monkeypatch, finished_run):
    run = copy_run(finished_run, tmp_path)

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(train, "atomic_write_text", full)    # rewriting config.json on resume
    err = one_line(capsys, run_train("--resume", run, "--epochs", "3", "--workers", "0"),
                   expected_code=3)
    assert f"{run / 'config.json'}: No space left on device" in err
