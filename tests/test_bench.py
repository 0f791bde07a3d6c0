"""bench/: every public op has an entry that runs, and the scripts run from any directory and
write their results there (never into the source tree). Timings are never checked."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import alexnet_ext
from alexnet_ext import _shapes as S

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _env():
    env = dict(os.environ)
    pkg = str(Path(alexnet_ext.__file__).resolve().parent.parent)  # absolute: cwd changes
    env["PYTHONPATH"] = os.pathsep.join([pkg, *filter(None, [env.get("PYTHONPATH")])])
    return env


@pytest.fixture(scope="module")
def bench_run():
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


@pytest.fixture(scope="module")
def entries(bench_run):
    return bench_run.build_entries(1, np.random.default_rng(0), None, "cpu")


def test_every_op_has_an_entry_and_each_runs(bench_run, entries):
    assert bench_run.missing_ops(entries) == []
    names = [e.name for e in entries]
    assert len(set(names)) == len(names)
    for layer in S.CONV:
        for p in bench_run.CONV_PASSES:
            assert f"{layer}.{p}" in names
    for e in entries:
        assert e.flops > 0 or e.bytes > 0, e.name
        e.ours()


def test_missing_ops_sees_a_missing_entry(bench_run, entries):
    assert bench_run.missing_ops([e for e in entries if "avg_pool" not in e.ops]) == \
        ["avg_pool", "avg_pool_undo"]


@pytest.mark.parametrize("script", ["run.py", "conv_cuda.py", "data.py"])
def test_help_from_another_directory(tmp_path, script):
    r = subprocess.run([sys.executable, str(BENCH / script), "--help"], cwd=tmp_path, env=_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "usage" in r.stdout


def test_results_go_to_the_working_directory(tmp_path):
    before = sorted(p.relative_to(BENCH) for p in BENCH.rglob("*") if "__pycache__" not in p.parts)
    r = subprocess.run([sys.executable, str(BENCH / "run.py"), "--ops", "relu1,add", "--batch", "1",
                        "--repeat", "1", "--no-torch"], cwd=tmp_path, env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    written = list(tmp_path.glob("bench-*-cpu.json"))
    assert len(written) == 1, r.stdout
    data = json.loads(written[0].read_text())
    assert set(data["results"]) == {"relu1.fprop", "relu1.bprop", "add.grad"}
    assert data["header"]["device"] == "cpu" and data["batch"] == 1
    out = tmp_path / "sub" / "r.json"
    r = subprocess.run([sys.executable, str(BENCH / "run.py"), "--ops", "add", "--batch", "1",
                        "--repeat", "1", "--no-torch", "--out", str(out)], cwd=tmp_path,
                       env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert set(json.loads(out.read_text())["results"]) == {"add.grad"}
    after = sorted(p.relative_to(BENCH) for p in BENCH.rglob("*") if "__pycache__" not in p.parts)
    assert after == before


@pytest.mark.parametrize("only", [["sgd.conv_params"], ["conv2.bprop", "relu1"], ["add", "fc6."],
                                  ["softmax"], ["dropout7.b"]])
def test_ops_selection_builds_what_it_selects(bench_run, entries, only):
    """--ops builds only the groups it can select, and every entry it names."""
    picked = bench_run.build_entries(1, np.random.default_rng(0), None, "cpu", only=only)
    want = {e.name for e in entries if any(e.name.startswith(w) for w in only)}
    assert want and want <= {e.name for e in picked}
    assert len(picked) < len(entries)


@pytest.mark.parametrize("args", [["--precision", "bf16"], ["--precision", "tf32", "--step"],
                                  ["--precision", "bf16", "--step"],
                                  ["--precision", "bf16", "--device", "cuda", "--data"]])
def test_precision_needs_the_gpu_kernels(tmp_path, args):
    """tf32/bf16 name the tensor-core kernels and bfloat16: refused on the CPU and for --data."""
    r = subprocess.run([sys.executable, str(BENCH / "run.py"), *args], cwd=tmp_path, env=_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "run on the GPU only" in r.stderr, r.stderr
    assert not list(tmp_path.iterdir())


def test_nhwc_conv_entries_run(bench_run):
    """--layout nhwc: the conv entries hold channels-innermost arrays and every one runs."""
    picked = bench_run.build_entries(1, np.random.default_rng(0), None, "cpu", only=["conv2."],
                                     layout="NHWC")
    assert {e.name for e in picked} == {f"conv2.{p}" for p in
                                        (*bench_run.CONV_PASSES, "bprop_bias")}
    for e in picked:
        e.ours()
