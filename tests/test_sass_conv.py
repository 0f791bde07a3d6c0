"""Static evidence for versions 3 and 2 of the CUDA convolution (csrc/cuda/conv_mma.cu,
conv_gemm.cu) where the CUDA toolchain is installed (no GPU needed): compiled for sm_80 and sm_90,
every tensor-core conv kernel (filterActs/imgActs gather kernel and weightActs kernel, both tile
heights, tf32 and bf16, NCHW and NHWC) contains HMMA of its precision, LDSM (ldmatrix) and LDGSTS
(cp.async), every version 2 kernel FFMA, LDGSTS and LDS.128, and ptxas reports no spills, no stack
frame and no local memory for any of them. Skipped without nvcc, cuobjdump and nvdisasm
(tests/sass_helpers.py says where they are looked for). The ptxas lines are recorded in
docs/CUDA_CONV.md.
"""
import pytest

from sass_helpers import ROOT, compile_cubin, ptxas_resources, sass, sass_by_function, toolchain

TOOLS, WHY = toolchain()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(TOOLS is None, reason=WHY)]

SOURCE = ROOT / "csrc" / "cuda" / "conv_mma.cu"
# Mangled-name fragments: kernel template, tile height BM, bf16 flag (and, for the gather, DGRAD;
# then NHWC, for the gather and the weightActs kernel).
KERNELS = {}
for _bm in (64, 128):
    for _bf in (False, True):
        _p = "bf16" if _bf else "tf32"
        for _dg in (False, True):
            for _nhwc in (False, True):
                _name = f"mma_gather<{_bm},{_p},{'dgrad' if _dg else 'fprop'}{',nhwc' if _nhwc else ''}>"
                KERNELS[_name] = (f"mma_gatherILi{_bm}ELb{int(_bf)}ELb{int(_dg)}ELb{int(_nhwc)}E", _bf)
        for _nhwc in (False, True):
            KERNELS[f"mma_wgrad<{_bm},{_p}{',nhwc' if _nhwc else ''}>"] = (
                f"mma_wgradILi{_bm}ELb{int(_bf)}ELb{int(_nhwc)}E", _bf)


def _build(source, arch, tmp_path_factory):
    """(SASS by function, ptxas resources by function, ptxas report) of one conv source."""
    d = tmp_path_factory.mktemp(f"{source.stem}_sm{arch}")
    cubin, report = compile_cubin(TOOLS, source, arch, d, extra=("-DALEXNET_EXT_WITH_CUDA=1",))
    return sass_by_function(sass(TOOLS, cubin)), ptxas_resources(report), report


@pytest.fixture(scope="module", params=[80, 90])
def compiled(request, tmp_path_factory):
    return _build(SOURCE, request.param, tmp_path_factory)


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
    if "nhwc" in kernel and "gather" in kernel:
        # channels innermost: both operands arrive by 16-byte cp.async (the NCHW gather of the
        # images / hid_grads is element-wise), so there are more 16-byte LDGSTS than in the NCHW
        # kernel. (NHWC weightActs gathers element-wise like its NCHW twin: along r, the
        # reduction, neither layout is contiguous.)
        nchw = funcs[_one(funcs, KERNELS[kernel.replace(",nhwc", "")][0])]
        assert text.count("LDGSTS.E.BYPASS.128") > nchw.count("LDGSTS.E.BYPASS.128"), kernel


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_conv_mma_ptxas_no_spills_no_local_memory(compiled, kernel):
    _, res, report = compiled
    r = res[_one(res, KERNELS[kernel][0])]
    assert {"stack", "spill_stores", "spill_loads", "lmem", "registers"} <= r.keys(), report
    assert r["stack"] == 0 and r["spill_stores"] == 0 and r["spill_loads"] == 0 and r["lmem"] == 0, \
        f"{kernel}: {r}"
    # The launch bounds: 2 blocks of 256 threads (BM = 128) or 3 of 128 threads (BM = 64) per SM.
    assert r["registers"] <= (128 if "128" in kernel else 168), f"{kernel}: {r}"


# Version 2 (csrc/cuda/conv_gemm.cu, FP32 SIMT): the gather kernel (both tile heights, filterActs
# and imgActs, now with split-K) and the weightActs kernel. __launch_bounds__(256, 2) and
# (128, 4) both cap them at 128 registers.
SOURCE_V2 = ROOT / "csrc" / "cuda" / "conv_gemm.cu"
KERNELS_V2 = {
    **{f"conv_gather_gemm<{bm},128,{'dgrad' if dg else 'fprop'}>": f"conv_gather_gemmILi{bm}ELi128ELb{int(dg)}E"
       for bm in (64, 128) for dg in (False, True)},
    **{f"conv_wgrad_gemm<{bm},128>": f"conv_wgrad_gemmILi{bm}ELi128E" for bm in (64, 128)},
}


@pytest.fixture(scope="module", params=[80, 90])
def compiled_v2(request, tmp_path_factory):
    return _build(SOURCE_V2, request.param, tmp_path_factory)


@pytest.mark.parametrize("kernel", sorted(KERNELS_V2))
def test_conv_gemm_sass_and_ptxas(compiled_v2, kernel):
    funcs, res, report = compiled_v2
    text = funcs[_one(funcs, KERNELS_V2[kernel])]
    for n in ("FFMA", "LDGSTS", "LDS.128"):  # the mainloop: FFMA, cp.async, float4 fragments
        assert n in text, f"{kernel}: '{n}' not in its SASS"
    r = res[_one(res, KERNELS_V2[kernel])]
    assert {"stack", "spill_stores", "spill_loads", "lmem", "registers"} <= r.keys(), report
    assert r["stack"] == 0 and r["spill_stores"] == 0 and r["spill_loads"] == 0 and r["lmem"] == 0, \
        f"{kernel}: {r}"
    assert r["registers"] <= 128, f"{kernel}: {r}"
