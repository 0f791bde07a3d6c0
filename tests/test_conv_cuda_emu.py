"""The CUDA convolution's kernels (csrc/cuda/conv*.cu) run on the CPU through tools/cuda_emu
(no GPU needed).

Opt-in (about a minute on two cores): ALEXNET_CUDA_EMU=1 python -m pytest tests/test_conv_cuda_emu.py
The harness compares every pass of both kernel versions, in every accumulate form, with its own
float64 reference, on fixed edge cases and fresh random geometries; see tools/cuda_emu/.
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "tools" / "cuda_emu" / "run.sh"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("ALEXNET_CUDA_EMU") != "1",
                       reason="CPU emulation of the CUDA conv kernels: set ALEXNET_CUDA_EMU=1"),
    pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++"),
]


@pytest.mark.parametrize("sms", ["1", "132"])  # the SM count steers tile and split-K choices
def test_conv_kernels_on_cpu_emulation(rng, tmp_path, sms):
    seed = int(rng.integers(1, 2**31))
    env = dict(os.environ, EMU_SMS=sms, EMU_BUILD_DIR=str(tmp_path))
    r = subprocess.run(["bash", str(RUN), "plain", str(seed), "6", "all"], env=env,
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, f"seed {seed}, EMU_SMS={sms}:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    assert " 0 failures" in r.stdout
