"""python -m alexnet_ext.train / evaluate / features end to end on a tiny generated data set."""
import json
import subprocess
import sys

import numpy as np
import pytest

import alexnet_ext
from alexnet_ext import evaluate, features, train, trainer
from alexnet_ext.nn import load_checkpoint
from helpers import random_batch
from train_helpers import TINY, ArrayLoader, assert_same_run, metrics, run_train
from train_helpers import tiny_data, tiny_model  # noqa: F401 (module-scoped fixtures)


def test_help_explains_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--data", "--model", "--epochs", "--batch-size", "--lr", "--device", "--gpus",
                "--seed", "--out", "--resume", "--summary", "--workers", "--patience"):
        assert opt in out
    assert out.count("default") >= 10
    assert "alexnet-small" in out and "Exit status" in out
    flat = " ".join(out.split())
    assert "on the GPU when one is usable" in flat
    for opt in ("--checkpoint-every", "--log-every"):
        assert opt in out
    for status in ("0 done", "1 training diverged", "2 bad input", "3 a file could not be "
                   "written", "130 interrupted by Ctrl-C", "143 stopped by SIGTERM"):
        assert status in flat, status


def test_summary_of_the_paper_net(capsys):
    assert run_train("--model", "alexnet", "--summary") == 0
    out = capsys.readouterr().out
    assert "total parameters: 60,965,224" in out
    assert "96x55x55" in out and "GFLOP" not in out and "forward FLOPs" in out


@pytest.mark.skipif(alexnet_ext.cuda_available(), reason="this machine has a GPU")
@pytest.mark.skipif(alexnet_ext.cuda_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu(capsys, tiny_data):
    assert run_train("--device", "cuda", "--data", tiny_data) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no usable GPU" in err and "CPU" in err


def one_line_error(capsys, *args):
    code = run_train(*args)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.count("\n") == 0, err
    return err


def test_bad_input_stops_before_training(capsys, tmp_path, tiny_data, tiny_model):
    out = tmp_path / "run"
    err = one_line_error(capsys, "--data", tmp_path / "nowhere", "--out", out)
    assert "nowhere: no such file or directory" in err
    # an empty class folder
    bad = tmp_path / "bad"
    for c in ("a", "b"):
        (bad / c).mkdir(parents=True)
    (tiny_data / "train").is_dir()
    import shutil
    for i, f in enumerate(sorted((tiny_data / "train").rglob("*.jpg"))[:3]):
        shutil.copy(f, bad / "a" / f"{i}.jpg")
    err = one_line_error(capsys, "--data", bad, "--model", tiny_model, "--out", out)
    assert "bad" in err and "b" in err
    # a one-channel model on RGB images
    err = one_line_error(capsys, "--data", tiny_data, "--model", "lenet5", "--out", out)
    assert "1-channel" in err and "3-channel" in err
    # a model file with a mistake, and options out of range
    broken = tmp_path / "broken.toml"
    broken.write_text(TINY.replace('type = "relu"', 'type = "tanh"', 1))
    err = one_line_error(capsys, "--data", tiny_data, "--model", broken, "--out", out)
    assert "broken.toml: layer 'relu1': unknown layer type 'tanh'" in err
    assert "--epochs" in one_line_error(capsys, "--epochs", "0")
    assert not out.exists()


def test_bad_input_from_the_real_command(tmp_path):
    r = subprocess.run([sys.executable, "-m", "alexnet_ext.train", "--data",
                        str(tmp_path / "missing")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "missing: no such file" in r.stderr


def test_train_evaluate_features(capsys, tmp_path, tiny_data, tiny_model):
    run = tmp_path / "run"
    assert run_train("--data", tiny_data, "--model", tiny_model, "--out", run, "--workers", "0",
                     "--split-columns") == 0
    out = capsys.readouterr().out
    assert f"run directory: {run}" in out and "curves.png" in out
    for name in ("metrics.jsonl", "checkpoint.safetensors", "checkpoint.json", "curves.png",
                 "conv1_filters.png", "config.json", "model.toml", "train.log"):
        assert (run / name).is_file(), name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for r in rows:
        for key in ("lr", "train_loss", "train_top1", "val_top1", "val_top5", "img_per_s",
                    "seconds"):
            assert np.isfinite(r[key]), key
    ck = load_checkpoint(run)
    assert ck.state["epoch"] == 2 and ck.state["step"] == 2 * (36 // 8)
    assert ck.info["class_names"] == ["00-disc", "01-ring", "02-square"]
    assert ck.extra["mean"].shape == (3, 20, 20)

    assert evaluate.main([str(run), "--views", "10", "--workers", "0",
                          "--json", str(tmp_path / "e.json")]) == 0
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["images"] == 12 and 0 <= res["ten_top1"] <= 1
    # the centre view of the ten equals the single centre crop through the loader
    assert evaluate.main([str(run / "checkpoint.safetensors"), "--data", str(tiny_data),
                          "--workers", "0", "--json", str(tmp_path / "c.json")]) == 0
    one = json.loads((tmp_path / "c.json").read_text())
    assert one["centre_top1"] == res["centre_top1"]
    assert abs(one["centre_loss"] - res["centre_loss"]) < 1e-5
    assert abs(one["centre_top1"] - rows[-1]["val_top1"]) < 1e-9

    fdir = tmp_path / "nn"
    assert features.main([str(run), "--out", str(fdir), "--queries", "3", "--neighbors", "4",
                          "--workers", "0"]) == 0
    recs = json.loads((fdir / "neighbors.json").read_text())
    assert len(recs) == 3 and all(len(r["neighbors"]) == 4 for r in recs)
    d = [n["distance"] for n in recs[0]["neighbors"]]
    assert d == sorted(d)
    assert (fdir / "neighbors.png").stat().st_size > 1000
    capsys.readouterr()
    assert features.main([str(run), "--out", str(fdir), "--layer", "nope"]) == 2
    assert "--layer nope" in capsys.readouterr().err


def test_resume_reproduces_an_uninterrupted_run(tmp_path, tiny_data, tiny_model):
    common = ("--data", tiny_data, "--model", tiny_model, "--workers", "0", "--seed", "7")
    straight, parts, mid = tmp_path / "straight", tmp_path / "parts", tmp_path / "mid"
    assert run_train(*common, "--epochs", "2", "--out", straight) == 0
    # 1 epoch, then resume for a second
    assert run_train(*common, "--epochs", "1", "--out", parts) == 0
    assert run_train("--resume", parts, "--epochs", "2", "--workers", "0") == 0
    assert metrics(parts) == metrics(straight)
    # Ctrl-C in the middle of the first epoch (request_stop is what the SIGINT handler calls)
    stop = lambda t: t.request_stop() if t.state["step"] == 2 else None  # noqa: E731
    assert run_train(*common, "--epochs", "2", "--out", mid, on_step=stop) == 130
    ck = load_checkpoint(mid)
    assert (ck.state["epoch"], ck.state["batch"], ck.state["status"]) == (0, 2, "interrupted")
    assert run_train("--resume", mid, "--workers", "0") == 0
    assert_same_run(straight, mid)
    # a finished run is not run again; an existing run directory is not overwritten
    assert run_train("--resume", mid) == 0
    assert run_train(*common, "--out", mid) == 2


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(capsys, tmp_path, tiny_data,
                                                                  tiny_model):
    run = tmp_path / "run"

    def poison(t):
        if t.state["epoch"] == 1 and t.state["batch"] == 1:
            t.net.params[0].value[...] = np.nan

    assert run_train("--data", tiny_data, "--model", tiny_model, "--workers", "0",
                     "--epochs", "3", "--out", run, on_step=poison) == 1
    captured = capsys.readouterr()
    assert "the loss became nan at epoch 2" in captured.out
    assert "last good checkpoint" in captured.out and "diverged" in captured.err
    ck = load_checkpoint(run)
    assert ck.state["epoch"] == 1
    assert all(np.all(np.isfinite(v)) for v in ck.params.values())
    assert len(metrics(run)) == 1


def tiny_trainer(rng, learning, val=True):
    from alexnet_ext.nn import Net, parse_model

    spec = parse_model(TINY, path="tiny.toml")
    learn = dict(spec.learning, **learning)
    x, y = random_batch(rng, spec, 24)
    loader = ArrayLoader(x, y, batch_size=8, seed=1)
    val_loader = ArrayLoader(x[:10], y[:10], batch_size=8, train=False) if val else None
    lines = []
    t = trainer.Trainer(Net(spec), learn, loader, val_loader, log=lines.append, progress=False)
    return t, lines


def test_plateau_schedule_without_validation(rng):
    # the training loss never improves by 10: lr drops after every `patience` epochs, 3 times
    t, lines = tiny_trainer(rng, {"epochs": 6, "lr": 0.01, "patience": 1, "min_improvement": 10.0},
                            val=False)
    assert t.train() == "finished"
    lrs = [h["lr"] for h in t.history]
    assert np.allclose(lrs, [0.01, 0.01, 1e-3, 1e-4, 1e-5, 1e-5]), lrs
    assert all(h["val_top1"] is None for h in t.history)
    assert sum("learning rate" in line for line in lines) == 3


def test_step_schedule(rng):
    t, _ = tiny_trainer(rng, {"epochs": 5, "lr": 0.02, "schedule": "steps", "steps": [2, 4],
                              "lr_factor": 0.5})
    assert t.train() == "finished"
    assert np.allclose([h["lr"] for h in t.history], [0.02, 0.02, 0.01, 0.01, 0.005])
    assert t.state["schedule"]["reductions"] == 2
    assert all(0 <= h["val_top1"] <= 1 for h in t.history)
