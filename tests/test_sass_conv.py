"""Static evidence for version 3 of the CUDA convolution (csrc/cuda/conv_mma.cu) where the CUDA
toolchain is installed (no GPU needed): compiled for sm_80 and sm_90, every tensor-core conv
kernel (filterActs/imgActs gather kernel and weightActs kernel, both tile heights, tf32 and bf16)
contains HMMA of its precision, LDSM (ldmatrix) and LDGSTS (cp.async), and ptxas reports no
spills, no stack frame and no local memory for it. Skipped without nvcc, cuobjdump and nvdisasm
(tests/sass_helpers.py says where they are looked for). The ptxas lines are recorded in
docs/CUDA_CONV.md.
"""
import pytest

from sass_helpers import ROOT, compile_cubin, ptxas_resources, sass, sass_by_function, toolchain

TOOLS, WHY = toolchain()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(TOOLS is None, reason=WHY)]

SOURCE = ROOT / "csrc" / "cuda" / "conv_mma.cu"
# Mangled-name fragments: kernel template, tile height BM, bf16 flag (and DGRAD for the gather).
KERNELS = {
    f"{k}<{bm},{'bf16' if bf else 'tf32'}{',' + ('dgrad' if dg else 'fprop') if k == 'mma_gather' else ''}>":
        (f"{k}ILi{bm}ELb{int(bf)}E" + (f"Lb{int(dg)}E" if k == "mma_gather" else ""), bf)
    for k in ("mma_gather", "mma_wgrad") for bm in (64, 128) for bf in (False, True)
    for dg in ((False, True) if k == "mma_gather" else (False,))
}


@pytest.fixture(scope="module", params=[80, 90])
def compiled(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"conv_mma_sm{request.param}")
    cubin, report = compile_cubin(TOOLS, SOURCE, request.param, d,
                                  extra=("-DALEXNET_EXT_WITH_CUDA=1",))
    return sass_by_function(sass(TOOLS, cubin)), ptxas_resources(report), report


def _one(names, fragment):
    hits = [k for k in names if fragment in k]
    assert len(hits) == 1, f"{fragment} not found once among {sorted(names)}"
    return hits[0]


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_conv_mma_sass_has_tensor_core_instructions(compiled, kernel):
    funcs, _, _ = compiled
    fragment, bf16 = KERNELS[kernel]
    text = funcs[_one(funcs, fragment)]
    needles = ["HMMA.16816.F32.BF16" if bf16 else "HMMA.1688.F32.TF32", "LDSM.16.M88.4"]
    if not (bf16 and "wgrad" in kernel):  # bf16 weightActs has only 2-byte gathers: no cp.async
        needles.append("LDGSTS")
    if not bf16:
        # The gathered operand is rounded in the kernel (cvt.rna.tf32.f32): |x| < INF tested and
        # half a tf32 ulp added; the mask is dropped because HMMA ignores the low 13 bits.
        needles.append("+INF")
    for n in needles:
        assert n in text, f"{kernel}: '{n}' not in its SASS"


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_conv_mma_ptxas_no_spills_no_local_memory(compiled, kernel):
    _, res, report = compiled
    r = res[_one(res, KERNELS[kernel][0])]
    assert {"stack", "spill_stores", "spill_loads", "lmem", "registers"} <= r.keys(), report
    assert r["stack"] == 0 and r["spill_stores"] == 0 and r["spill_loads"] == 0 and r["lmem"] == 0, \
        f"{kernel}: {r}"
    # The launch bounds: 2 blocks of 256 threads (BM = 128) or 3 of 128 threads (BM = 64) per SM.
    assert r["registers"] <= (128 if "128" in kernel else 168), f"{kernel}: {r}"
