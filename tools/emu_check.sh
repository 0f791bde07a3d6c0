#!/usr/bin/env bash
# The GPU test suite without a GPU: build the package with its CUDA sources compiled against
# tools/cuda_emu (a CPU emulation of the CUDA runtime, kernels, streams and two GPUs) into a
# throwaway virtualenv, then run the tests marked `cuda` there. Correctness only: nothing here
# says anything about speed, warp scheduling or the GPU memory model (tools/gpu_check.sh does
# that on a real GPU).
#
#   bash tools/emu_check.sh [pytest arguments]       # default: -m cuda tests
#
# Environment: EMU_VENV (default .venv-emu in the repository, gitignored), ALEXNET_EXT_EMU_DEVICES (default 2),
# ALEXNET_EXT_EMU_PEER=0 (no peer access between the emulated GPUs: copies go through the host).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${EMU_VENV:-.venv-emu}
PY=${PYTHON:-python3}
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q scikit-build-core pybind11 numpy scipy-openblas32 pillow tqdm \
      matplotlib safetensors pytest ml_dtypes "tomli; python_version < '3.11'"
fi
t0=$(date +%s)
ALEXNET_EXT_CUDA_EMULATION=ON "$VENV/bin/pip" install -q --no-build-isolation --no-deps \
    -C build-dir=build/emu .
echo "emulated build: $(( $(date +%s) - t0 )) s"
"$VENV/bin/python" -m alexnet_ext
if [ $# -eq 0 ]; then set -- -m cuda tests; fi
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
