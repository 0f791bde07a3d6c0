#!/bin/bash
# Build and run the CPU emulation of the CUDA convolution, csrc/cuda/conv*.cu (see cuda_runtime.h here),
# against one of its float64 harnesses:
#   tools/cuda_emu/run.sh [plain|asan|tsan] [seed] [random_cases] [fixed: all|none|substring]
# EMU_HARNESS=conv_emu_test (default: versions 1 and 2, fp32) or conv_mma_test (version 3, tensor
# cores in tf32 and bf16; plain or asan only: its mma collectives are warp operations), or
# conv_waves (no checks: prints the dispatcher's wave model for AlexNet, docs/CUDA_CONV.md).
# EMU_SMS=n sets the SM count the tile and split heuristics see (default 132). The binaries go
# to EMU_BUILD_DIR (default build/cuda_emu).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
mode=${1:-plain}
shift || true
case $mode in
  plain) flags="-O2" ;;
  asan) flags="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" ;;
  tsan) flags="-O1 -g -fsanitize=thread -DEMU_OS_THREADS" ;;
  *) echo "mode: plain, asan or tsan" >&2; exit 2 ;;
esac
out=${EMU_BUILD_DIR:-$root/build/cuda_emu}  # build/ is gitignored
mkdir -p "$out"
harness=${EMU_HARNESS:-conv_emu_test}
case $harness in conv_emu_test|conv_mma_test|conv_waves) ;; *) echo "EMU_HARNESS: conv_emu_test, conv_mma_test or conv_waves" >&2; exit 2 ;; esac
bin="$out/${harness}_$mode"
# The conv sources are compiled as C++: the shim header comes first on the include path.
g++ -std=c++20 $flags -Wall -Wno-unknown-pragmas -pthread \
    -DALEXNET_EXT_WITH_CUDA=1 -DALEXNET_EXT_CUDA_EMULATION=1 \
    -I "$here" -I "$root/csrc" \
    -x c++ "$root"/csrc/cuda/conv*.cu -x none "$here/emu.cpp" "$here/emu_graph.cpp" "$here/emu_kernels.cpp" "$here/$harness.cpp" -o "$bin"
"$bin" "$@"
