#!/bin/bash
# Build and run the CPU emulation of version 3 of the CUDA convolution (csrc/cuda/conv_mma.cu,
# tensor cores in tf32 and bf16) against its float64 harness, conv_mma_test.cpp.
#   tools/cuda_emu/run_mma.sh [plain|asan] [seed] [random_cases] [fixed: all|none|substring]
# EMU_SMS=n sets the SM count the tile and split heuristics see (default 132).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
mode=${1:-plain}
shift || true
case $mode in
  plain) flags="-O2" ;;
  asan) flags="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" ;;
  *) echo "mode: plain or asan" >&2; exit 2 ;;
esac
out=${EMU_BUILD_DIR:-$root/build/cuda_emu}  # build/ is gitignored
mkdir -p "$out"
bin="$out/conv_mma_test_$mode"
g++ -std=c++20 $flags -Wall -Wno-unknown-pragmas -pthread \
    -DALEXNET_EXT_WITH_CUDA=1 -DALEXNET_EXT_CUDA_EMULATION=1 \
    -I "$here" -I "$root/csrc" \
    -x c++ "$root"/csrc/cuda/conv*.cu -x none "$here/emu.cpp" "$here/emu_kernels.cpp" "$here/conv_mma_test.cpp" -o "$bin"
"$bin" "$@"
