"""The CUDA convolution's kernels (csrc/cuda/conv*.cu) run on the CPU through tools/cuda_emu
(no GPU needed), each version against its float64 harness:

* versions 1 and 2 (fp32; tools/cuda_emu/conv_emu_test.cpp): every pass, every accumulate form,
  fixed edge cases and fresh random geometries;
* in both harnesses, cases that make the dispatcher split filterActs/imgActs along K (odd
  shapes, groups, strides) and run imgActs by space-to-depth; a full run fails unless the
  dispatcher took split-K (and, at EMU_SMS=1, space-to-depth: on 132 SMs such small cases rightly
  keep the phase grid);
* version 3 (tensor cores, tf32 and bf16; conv_mma_test.cpp, mma.sync/ldmatrix as the emulator's
  warp collectives): every pass in both precisions, every accumulate form (st = 0 into
  NaN-filled outputs), against a float64 reference on the tf32-/bf16-rounded inputs, element by
  element within gamma_{K+8} * sum|a b| (u = 2^-23; the derivation is in the harness header).

Opt-in (a few minutes on two cores; CI runs it):
    ALEXNET_CUDA_EMU=1 python -m pytest tests/test_conv_cuda_emu.py
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


@pytest.mark.parametrize("harness, random_cases", [("conv_emu_test", "6"), ("conv_mma_test", "4")])
@pytest.mark.parametrize("sms", ["1", "132"])  # the SM count steers tile and split-K choices
def test_conv_kernels_on_cpu_emulation(rng, tmp_path, sms, harness, random_cases):
    seed = int(rng.integers(1, 2**31))
    env = dict(os.environ, EMU_SMS=sms, EMU_BUILD_DIR=str(tmp_path), EMU_HARNESS=harness)
    r = subprocess.run(["bash", str(RUN), "plain", str(seed), random_cases, "all"], env=env,
                       capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, (f"{harness} seed {seed}, EMU_SMS={sms}:\n{r.stdout[-4000:]}\n"
                               f"{r.stderr[-4000:]}")
    assert " 0 failures" in r.stdout
