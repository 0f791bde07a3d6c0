"""Static evidence from the CUDA toolchain without a GPU: compile CUDA sources to a cubin with
nvcc (ptxas -v reports registers, stack, spills, local memory) and read its SASS with cuobjdump.

Tools are looked up in: $NVCC / $CUOBJDUMP / $NVDISASM, PATH, $CUDA_HOME/bin, next to nvcc, and
the bin/ folders of the nvidia-cuda-cuobjdump / nvidia-cuda-nvdisasm wheels installed in this
Python (cuobjdump -sass runs nvdisasm, so both are needed). Tests skip when any is missing.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _wheel_bins():
    out = []
    for p in map(Path, sys.path):
        nv = p / "nvidia"
        if nv.is_dir():
            out += sorted(nv.glob("cu*/bin")) + sorted(nv.glob("*/bin"))
    return out


def find_tool(name):
    env = os.environ.get(name.upper())
    if env and Path(env).is_file():
        return env
    found = shutil.which(name)
    if found:
        return found
    dirs = []
    if os.environ.get("CUDA_HOME"):
        dirs.append(Path(os.environ["CUDA_HOME"]) / "bin")
    nvcc = shutil.which("nvcc")
    if nvcc:
        dirs.append(Path(nvcc).resolve().parent)
    dirs += [Path("/usr/local/cuda/bin")] + _wheel_bins()
    for d in dirs:
        if (d / name).is_file():
            return str(d / name)
    return None


def toolchain():
    """(nvcc, cuobjdump, nvdisasm) paths, or None with the reason."""
    tools = {n: find_tool(n) for n in ("nvcc", "cuobjdump", "nvdisasm")}
    missing = [n for n, p in tools.items() if p is None]
    if missing:
        return None, "needs " + ", ".join(missing) + " (CUDA toolkit, or the nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm wheels)"
    return (tools["nvcc"], tools["cuobjdump"], tools["nvdisasm"]), ""


def compile_cubin(tools, source, arch, out_dir, extra=()):
    """nvcc -cubin for sm_<arch> with ptxas -v; returns (cubin path, ptxas report text)."""
    nvcc = tools[0]
    cubin = Path(out_dir) / f"{Path(source).stem}_sm{arch}.cubin"
    cmd = [nvcc, "-std=c++17", f"-arch=sm_{arch}", "-cubin", "-O3", "-Xptxas", "-v",
           "--expt-relaxed-constexpr", "-I", str(ROOT / "csrc"), *extra, str(source), "-o", str(cubin)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stderr[-6000:]}"
    return cubin, r.stdout + r.stderr


def sass(tools, cubin):
    """The SASS text of a cubin (cuobjdump -sass, with nvdisasm on its PATH)."""
    _, cuobjdump, nvdisasm = tools
    env = dict(os.environ, PATH=str(Path(nvdisasm).parent) + os.pathsep + os.environ.get("PATH", ""))
    r = subprocess.run([cuobjdump, "-sass", str(cubin)], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    return r.stdout


def sass_by_function(text):
    """{mangled function name: its SASS} from cuobjdump -sass output."""
    funcs, name = {}, None
    for line in text.splitlines():
        m = re.match(r"\s*Function : (\S+)", line)
        if m:
            name = m.group(1)
            funcs[name] = []
        elif name:
            funcs[name].append(line)
    return {k: "\n".join(v) for k, v in funcs.items()}


def ptxas_resources(report):
    """{mangled function name: dict(stack, spill_stores, spill_loads, lmem, registers)} from
    ptxas -v output."""
    res, name = {}, None
    for line in report.splitlines():
        m = re.search(r"Compiling entry function '(\S+)'", line) or \
            re.search(r"Function properties for (\S+)", line)
        if m:
            name = m.group(1)
            res.setdefault(name, {})
        if name is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            res[name].update(stack=int(m.group(1)), spill_stores=int(m.group(2)),
                             spill_loads=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            res[name]["registers"] = int(m.group(1))
            lm = re.search(r"(\d+) bytes lmem", line)
            res[name]["lmem"] = int(lm.group(1)) if lm else 0
    return res
