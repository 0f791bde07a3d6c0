"""Data parallelism (alexnet_ext.distributed): sharded batches, per-sample dropout, gradients, and
torchrun runs on the CPU (gloo) compared with one process.

Equality with one process. N ranks compute, for their samples, exactly what one process
computes (same images, crops, flips, lighting, dropout masks: checked bit for bit below without
torch); only the order of fp32 sums differs: a weight gradient over a batch of B images is one
sum of B per-image terms in one process, N sums of B/N added by the all-reduce here. Each order
is within gamma_B = B*u/(1 - B*u) (u = 2^-24) of the exact sum, relative to the sum of absolute
terms, so the two gradients differ by at most ~2*gamma_B*sum|g_i| per element (~1e-6 relative
for B = 8); the update turns that into lr times as much on the weights (momentum adds at most a
factor 1/(1 - 0.9) over the steps), and rounding w + v adds an ulp of |w| per step. On random
data no ReLU kink or max-pool switch lies within such distances, so after k steps the two runs
agree to ~k * 1e-6 of the distance the parameters travelled plus ~k ulps of their size (measured:
at most 3e-6 of the distance after 8 steps). The tests allow 1e-4 of the distance plus 8 * k
ulps (of the largest |w|), while a learning rate 1% off moves them by ~1e-2 of the distance
(checked below, so the comparison can fail).
"""
import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from alexnet_ext import train
from alexnet_ext.data import BatchLoader
from alexnet_ext.distributed import ShardedBatchLoader
from alexnet_ext.nn import Net, load_checkpoint, parse_model
from helpers import random_batch
from models_fixtures import DATA_PARALLEL
from train_helpers import make_tiny_data

TINY = DATA_PARALLEL   # two columns, a dropout over both, one merged fc

# the children import the alexnet_ext this process imported (installed, or the source tree)
from proc_helpers import REPO_PYTHON  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_tiny_data(tmp_path_factory.mktemp("dpdata"))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    p = tmp_path_factory.mktemp("dpmodel") / "tinydp.toml"
    p.write_text(TINY)
    return p


# ---- without torch: what every rank computes ------------------------------------------------


def _split(data):
    from alexnet_ext.data import open_dataset

    ds = open_dataset(data, image_size=20, workers=1)
    return ds, ds.split("train"), ds.split("val")


@pytest.mark.parametrize("world", [2, 4])
def test_shards_of_a_global_batch_are_the_single_process_batch(data, world):
    ds, tr, va = _split(data)
    kw = dict(batch_size=8, crop=16, mean=ds.mean, pca=ds.pca, train=True, flip=True,
              lighting=0.5, seed=5, workers=0)
    whole = list(BatchLoader(tr, **kw).epoch(1))
    parts = [list(ShardedBatchLoader(tr, rank=r, world_size=world, **kw).epoch(1))
             for r in range(world)]
    assert all(len(p) == len(whole) for p in parts)
    for b, (x, y) in enumerate(whole):
        xs = np.concatenate([p[b][0] for p in parts])
        ys = np.concatenate([p[b][1] for p in parts])
        np.testing.assert_array_equal(xs, x)     # the same crops, flips and lighting
        np.testing.assert_array_equal(ys, y)
    # validation: the last batch (4 images) splits unevenly or leaves empty slices
    vk = dict(kw, train=False, flip=False, lighting=0.0)
    vwhole = list(BatchLoader(va, **vk).epoch(0))
    vparts = [list(ShardedBatchLoader(va, rank=r, world_size=world, **vk).epoch(0))
              for r in range(world)]
    for b, (x, y) in enumerate(vwhole):
        np.testing.assert_array_equal(np.concatenate([p[b][0] for p in vparts]), x)
        np.testing.assert_array_equal(np.concatenate([p[b][1] for p in vparts]), y)


def test_sharded_loader_with_a_worker_process(data):
    ds, tr, _ = _split(data)
    kw = dict(batch_size=8, crop=16, mean=ds.mean, pca=ds.pca, seed=2, lighting=0.3)
    whole = list(BatchLoader(tr, workers=0, **kw).epoch(0, start_batch=1))
    with ShardedBatchLoader(tr, rank=1, world_size=2, workers=1, **kw) as ld:
        part = [(x.copy(), y) for x, y in ld.epoch(0, start_batch=1)]
    for (x, y), (xp, yp) in zip(whole, part):
        np.testing.assert_array_equal(xp, x[4:])
        np.testing.assert_array_equal(yp, y[4:])


def test_global_batch_must_split_evenly(data):
    ds, tr, _ = _split(data)
    with pytest.raises(ValueError, match="--batch-size: the global batch of 6 images .* 4 ranks"):
        ShardedBatchLoader(tr, rank=0, world_size=4, batch_size=6, crop=16, mean=ds.mean,
                           workers=0)
    with pytest.raises(ValueError, match="rank"):
        ShardedBatchLoader(tr, rank=2, world_size=2, batch_size=8, crop=16, mean=ds.mean,
                           workers=0)


@pytest.mark.parametrize("split", [False, True])
def test_a_ranks_half_of_the_batch_gets_the_global_dropout_masks_and_gradients(rng, split):
    """Rank halves with sample_offset: forward outputs equal the whole batch's rows exactly;
    the mean of the halves' gradients is the whole batch's gradient (fp32 sum order only)."""
    spec = parse_model(TINY, path="tinydp.toml")
    x, y = random_batch(rng, spec, 8)
    net = Net(spec, split_columns=split, seed=4)
    net.forward(x, y, train=True, step=3, seed=9)
    whole = net.output("drop2")
    probs = np.array(net.probs)
    net.backward()
    g_whole = net.state_dict(kind="grad")
    grads = []
    for r in range(2):
        part = Net(spec, split_columns=split, seed=4)
        part.sample_offset = 4 * r
        part.forward(x[4 * r:4 * r + 4], y[4 * r:4 * r + 4], train=True, step=3, seed=9)
        np.testing.assert_array_equal(part.output("drop2"), whole[4 * r:4 * r + 4])
        np.testing.assert_array_equal(part.probs, probs[4 * r:4 * r + 4])
        part.backward()
        grads.append(part.state_dict(kind="grad"))
    for k, g in g_whole.items():
        mean = (grads[0][k].astype(np.float64) + grads[1][k]) / 2
        np.testing.assert_allclose(mean, g, rtol=1e-5, atol=1e-6 * np.abs(g).max() + 1e-12)
    # without the offset the second half would draw the first half's masks
    wrong = Net(spec, split_columns=split, seed=4)
    wrong.forward(x[4:], y[4:], train=True, step=3, seed=9)
    assert not np.array_equal(wrong.output("drop2"), whole[4:])


def test_single_process_training_does_not_import_torch(tmp_path, data, model):
    code = ("import sys\nfrom alexnet_ext import train\n"
            f"rc = train.main(['--data', {str(data)!r}, '--model', {str(model)!r}, '--epochs', "
            f"'1', '--workers', '0', '--device', 'cpu', '--out', {str(tmp_path / 'r')!r}])\n"
            "assert rc == 0, rc\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\nprint('no torch')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "MASTER_ADDR")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "no torch" in r.stdout


# ---- with torch: torchrun over gloo ---------------------------------------------------------

def _torch_distributed() -> bool:
    # find_spec only: importing torch here would load it into every test of the session
    return importlib.util.find_spec("torch") is not None


# Only these tests need torch (pip install 'alexnet_ext[dist]'); they start subprocesses.
needs_torch = pytest.mark.skipif(not _torch_distributed(),
                                 reason="torch with torch.distributed is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def common(data, model):
    return ["--data", str(data), "--model", str(model), "--workers", "0", "--seed", "3",
            "--device", "cpu", "--split-columns", "--dist-timeout", "60"]


def torchrun(args, *, nproc=2, env=None, timeout=240):
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}", "-m", "alexnet_ext.train",
           *map(str, args)]
    e = dict(os.environ, **(env or {}))
    e["PYTHONPATH"] = os.pathsep.join([REPO_PYTHON, e.get("PYTHONPATH", "")])
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=e)
    r.seconds = time.monotonic() - t0
    return r


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data, model):
    """One process, 2 epochs of 4 steps; its initial parameters."""
    out = tmp_path_factory.mktemp("ref") / "run"
    assert train.main(common(data, model) + ["--out", str(out)]) == 0
    spec = parse_model(TINY, path="tinydp.toml", classes=3)
    init = Net(spec, seed=3).state_dict()
    return load_checkpoint(out), init


def assert_same_training(ck, reference):
    ref, init = reference
    steps = ref.state["step"]
    for k, w in ref.params.items():
        travelled = np.abs(w - init[k]).max()
        assert travelled > 0, k
        atol = 1e-4 * travelled + 8 * steps * 2.0**-23 * np.abs(w).max()
        np.testing.assert_allclose(ck.params[k], w, rtol=0, atol=atol, err_msg=k)
        np.testing.assert_allclose(ck.velocities[k], ref.velocities[k], rtol=0, atol=atol,
                                   err_msg=k)
    assert ck.state["step"] == steps


@needs_torch
def test_resume_one_process_run_on_two_ranks_equals_one_process(tmp_path, data, model,
                                                                 reference):
    """1 -> 2 ranks: one process stops after 2 steps, torchrun with 2 ranks finishes the run."""
    run = tmp_path / "run"
    stop = lambda t: t.request_stop() if t.state["step"] == 2 else None  # noqa: E731
    assert train.main(common(data, model) + ["--out", str(run)], on_step=stop) == 130
    # buckets of ~1 KB: the reduction of the last layers runs while the first ones backward
    r = torchrun(["--resume", run, "--workers", "0", "--device", "cpu", "--dist-timeout", "60"],
                 env={"ALEXNET_EXT_DIST_BUCKET_MB": "0.001"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "done: 2 epochs, 8 steps" in r.stdout
    m = re.search(r"data parallel: 2 ranks \(gloo\), (\d+) gradient bucket", r.stdout)
    assert m and int(m.group(1)) >= 3, r.stdout[-2000:]
    ck = load_checkpoint(run)
    assert ck.state["status"] == "finished"
    assert_same_training(ck, reference)
    ref = reference[0]
    # the schedule and metrics see the same validation error counts as one process
    import json
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    refrows = [json.loads(line) for line in
               (Path(ref.path).parent / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_top1"] for r in rows] == [r["val_top1"] for r in refrows]
    assert [r["lr"] for r in rows] == [r["lr"] for r in refrows]
    for a, b in zip(rows, refrows):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4 * abs(b["train_loss"])


@needs_torch
def test_two_ranks_from_scratch_ctrl_c_on_one_rank_then_resume_in_one_process(tmp_path, data,
                                                                             model, reference):
    """A SIGINT to rank 1 before step 5 stops both ranks after step 5 with one checkpoint
    (rank 0's); one process resumes it (2 -> 1 ranks) and ends where the reference ends."""
    run = tmp_path / "run"
    r = torchrun(common(data, model) + ["--out", run],
                 env={"ALEXNET_EXT_TEST_DIST_SIGINT": "1:5"})
    assert r.returncode != 0      # the ranks exit 130, which torchrun reports as a failure
    assert "exitcode  : 130" in r.stderr or "130" in r.stderr, r.stderr[-3000:]
    assert "batch 8 (global: 4 per rank x 2 ranks)" in r.stdout, r.stdout[-2000:]
    ck = load_checkpoint(run)
    assert (ck.state["epoch"], ck.state["batch"], ck.state["step"], ck.state["status"]) == \
        (1, 2, 6, "interrupted")
    assert sorted(p.name for p in run.iterdir() if p.name.startswith("checkpoint")) == \
        ["checkpoint.json", "checkpoint.safetensors"]
    assert train.main(["--resume", str(run), "--workers", "0", "--device", "cpu"]) == 0
    assert_same_training(load_checkpoint(run), reference)


@needs_torch
def test_the_tolerance_catches_a_different_run(tmp_path, data, model, reference):
    """The comparison above can fail: one process with lr 1% higher (same initial weights, same
    batches) ends far outside the tolerance."""
    run = tmp_path / "other"
    assert train.main(common(data, model) + ["--lr", "0.0202", "--out", str(run)]) == 0
    with pytest.raises(AssertionError):
        assert_same_training(load_checkpoint(run), reference)


def _rank_env(rank, world, port):
    e = dict(os.environ, WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank),
             MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1",
             ALEXNET_EXT_TEST_DIST_EXIT="1:2")
    e["PYTHONPATH"] = os.pathsep.join([REPO_PYTHON, e.get("PYTHONPATH", "")])
    return e


@needs_torch
def test_a_dead_rank_makes_the_others_exit_with_a_clear_error(tmp_path, data, model):
    """Without torchrun's supervision (two plain processes): rank 1 dies abruptly before the
    backward of step 2; rank 0 fails its next collective, says so in one line, exits 3."""
    port = free_port()
    cmd = [sys.executable, "-m", "alexnet_ext.train", *common(data, model),
           "--dist-timeout", "30", "--out", str(tmp_path / "run")]
    procs = [subprocess.Popen(cmd, env=_rank_env(r, 2, port), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    try:
        outs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert procs[1].returncode == 17
    assert procs[0].returncode == 3, outs[0][1][-3000:]
    err = outs[0][1].strip().splitlines()[-1]
    assert err.startswith("python -m alexnet_ext.train: error: rank 0 of 2:"), err
    assert "another rank probably died" in err


@needs_torch
def test_torchrun_stops_every_rank_when_one_dies(tmp_path, data, model):
    r = torchrun(common(data, model) + ["--out", tmp_path / "run"],
                 env={"ALEXNET_EXT_TEST_DIST_EXIT": "1:2"})
    assert r.returncode != 0
    assert "exitcode  : 17" in r.stderr or "exitcode: 17" in r.stderr.replace(" ", "") \
        or "17" in r.stderr, r.stderr[-3000:]


@needs_torch
def test_ctrl_c_to_torchrun_saves_one_checkpoint(tmp_path, data, model):
    """A real Ctrl-C: SIGINT to torchrun, which forwards it to every rank."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={free_port()}", "-m", "alexnet_ext.train",
           *common(data, model), "--epochs", "1000", "--out", str(run)]
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([REPO_PYTHON, e.get("PYTHONPATH", "")])
    p = subprocess.Popen(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (run / "checkpoint.json").exists():      # training is under way
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()[1][-3000:]
            time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    ck = load_checkpoint(run)
    assert ck.state["status"] == "interrupted", (out[-2000:], err[-2000:])
    assert "continue with" in out
