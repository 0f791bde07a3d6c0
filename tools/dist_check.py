"""Data-parallel smoke test on GPUs (tools/gpu_check.sh, stage "dist"): torchrun over NCCL.

Trains alexnet-small for one short epoch on a small generated data set twice -- once as one
plain process, once under ``torchrun --nproc_per_node=N`` with the same global batch -- and
compares the parameters of the two checkpoints. N = 1 (one GPU) exercises the whole NCCL path
(process group, DLPack views of our gradient DeviceArrays, bucketed asynchronous all-reduce,
stream ordering, rank-0 checkpoint) at world size 1, where the all-reduce is the identity: the
parameters must agree to GPU run-to-run noise. With >= 2 GPUs it also runs N = 2 (one GPU per
rank) and, with >= 4, N = 2 with ``--gpus 2`` (two-column split inside each rank); those agree
up to fp32 summation order (tolerance as in tests/test_distributed.py).

    python tools/dist_check.py [--out DIR] [--nproc N ...]

Writes under ``--out`` (default ``dist_check`` in the working directory); exit 0 when every run
passed.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, env=None, timeout=600) -> int:
    print("$", " ".join(map(str, cmd)), flush=True)
    t0 = time.monotonic()
    rc = subprocess.run([str(c) for c in cmd], env=env, timeout=timeout).returncode
    print(f"  -> exit {rc} in {time.monotonic() - t0:.1f} s", flush=True)
    return rc


def compare(a_dir: Path, b_dir: Path, init, rel: float) -> bool:
    from alexnet_ext.nn import load_checkpoint

    a, b = load_checkpoint(a_dir), load_checkpoint(b_dir)
    worst = 0.0
    for k, w in a.params.items():
        travelled = max(float(np.abs(w - init[k]).max()), 1e-12)
        worst = max(worst, float(np.abs(b.params[k] - w).max()) / travelled)
    ok = worst <= rel and a.state["step"] == b.state["step"]
    print(f"  max |difference| / distance travelled = {worst:.2e} (limit {rel:g}), steps "
          f"{a.state['step']} vs {b.state['step']}: {'OK' if ok else 'FAILED'}", flush=True)
    return ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="dist_check")
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    from alexnet_ext import cuda
    from alexnet_ext.data.synthetic import default_dataset
    from alexnet_ext.nn import Net, load_model

    ngpu = cuda.device_count()
    data = default_dataset(out / "data", classes=4, train_per_class=96, val_per_class=16,
                           size=72, seed=1)
    common = ["--model", "alexnet-small", "--data", data, "--epochs", "1", "--batch-size",
              args.batch_size, "--workers", "2", "--seed", "5", "--device", "cuda",
              "--dist-timeout", "120"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python"), env.get("PYTHONPATH", "")])
    init = Net(load_model("alexnet-small", classes=4), seed=5).state_dict()
    py = sys.executable
    ok = run([py, "-m", "alexnet_ext.train", *common, "--out", out / "one"], env) == 0
    plans = [(1, 1, 1e-5)]
    if ngpu >= 2:
        plans.append((2, 1, 1e-3))
    if ngpu >= 4:
        plans.append((2, 2, 1e-3))
    for nproc, gpus, rel in plans:
        name = f"torchrun{nproc}x{gpus}"
        extra = ["--gpus", "2"] if gpus == 2 else []
        rc = run([py, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
                  "--master_addr=127.0.0.1", f"--master_port={free_port()}",
                  "-m", "alexnet_ext.train", *common, *extra, "--out", out / name], env)
        print(f"== {name}: exit {rc}", flush=True)
        ok &= rc == 0 and compare(out / "one", out / name, init, rel)
    print("dist check:", "OK" if ok else "FAILED", f"({ngpu} GPU(s))")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
