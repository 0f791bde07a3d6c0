"""Version 3 of the CUDA convolution (csrc/cuda/conv_mma.cu: tensor cores, tf32 and bf16) runs
on the CPU through tools/cuda_emu (no GPU needed), its mma.sync/ldmatrix as the emulator's warp
collectives.

Opt-in like the version 2 harness (a few minutes on two cores):
    ALEXNET_CUDA_EMU=1 python -m pytest tests/test_conv_mma_emu.py
The harness (tools/cuda_emu/conv_mma_test.cpp) compares every pass in both precisions, in every
accumulate form (st = 0 into NaN-filled outputs), with a float64 reference on the tf32-/bf16-
rounded inputs, element by element against gamma_{K+8} * sum|a b| (u = 2^-23; the derivation is
in the harness header), on fixed edge cases and fresh random geometries.
"""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "tools" / "cuda_emu" / "run_mma.sh"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("ALEXNET_CUDA_EMU") != "1",
                       reason="CPU emulation of the CUDA conv kernels: set ALEXNET_CUDA_EMU=1"),
    pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++"),
]


@pytest.mark.parametrize("sms", ["1", "132"])  # the SM count steers tile and split-K choices
def test_conv_mma_kernels_on_cpu_emulation(rng, tmp_path, sms):
    seed = int(rng.integers(1, 2**31))
    env = dict(os.environ, EMU_SMS=sms, EMU_BUILD_DIR=str(tmp_path))
    r = subprocess.run(["bash", str(RUN), "plain", str(seed), "4", "all"], env=env,
                       capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, f"seed {seed}, EMU_SMS={sms}:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    assert " 0 failures" in r.stdout
