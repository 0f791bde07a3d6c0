"""Static evidence where the CUDA toolchain is installed (no GPU needed): the tensor-core building
blocks of csrc/cuda/mma.cuh compile, for sm_80 and sm_90, to the SASS instructions they stand for
(HMMA for mma.sync, LDSM for ldmatrix, F2FP for the bf16 pack, the integer add-and-mask that the
emulator models for cvt.rna.tf32.f32), with no spills, no stack frame and no local memory.
Skipped without nvcc, cuobjdump and nvdisasm (tests/sass_helpers.py says where they are looked
for). The conv kernels' own SASS checks build on the same helpers.
"""
import pytest

from sass_helpers import compile_cubin, ptxas_resources, sass, sass_by_function, toolchain

TOOLS, WHY = toolchain()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(TOOLS is None, reason=WHY)]

# One kernel per building block, so each check reads only its own function's SASS.
PROBE = r"""
#include "cuda/mma.cuh"
using namespace alexnet_ext::cuda;

__global__ void probe_mma_tf32(const float* x, float* y) {
  const int l = threadIdx.x;
  uint32_t a[4], b[2];
  for (int i = 0; i < 4; ++i) a[i] = to_tf32(x[4 * l + i]);
  for (int i = 0; i < 2; ++i) b[i] = to_tf32(x[128 + 2 * l + i]);
  float c[4] = {0.f, 0.f, 0.f, 0.f}, d[4];
  mma_m16n8k8_tf32(d, a, b, c);
  for (int i = 0; i < 4; ++i) y[4 * l + i] = d[i];
}

__global__ void probe_mma_bf16(const uint16_t* x, float* y) {
  __shared__ __align__(16) uint16_t s[4 * 64];
  for (int i = threadIdx.x; i < 256; i += 32) s[i] = x[i];
  __syncthreads();
  const void* row = &s[8 * threadIdx.x];
  uint32_t a[4], at[4], b[2], bt[2], one[1], onet[1];
  ldmatrix_x4(a, row);
  ldmatrix_x4_trans(at, row);
  ldmatrix_x2(b, row);
  ldmatrix_x2_trans(bt, row);
  ldmatrix_x1(one, row);
  ldmatrix_x1_trans(onet, row);
  float c[4] = {0.f, 0.f, 0.f, 0.f}, d[4];
  mma_m16n8k16_bf16(d, a, b, c);
  b[0] ^= one[0];
  b[1] ^= onet[0];
  mma_m16n8k16_bf16(d, at, bt, d);
  mma_m16n8k16_bf16(d, a, b, d);
  for (int i = 0; i < 4; ++i) y[4 * threadIdx.x + i] = d[i];
}

__global__ void probe_cvt_tf32(const float* x, uint32_t* y) {
  y[threadIdx.x] = to_tf32(x[threadIdx.x]);
}

__global__ void probe_cvt_bf16(const float* x, uint32_t* y) {
  y[threadIdx.x] = pack_bf16x2(x[2 * threadIdx.x], x[2 * threadIdx.x + 1]);
}
"""


@pytest.fixture(scope="module", params=[80, 90])
def compiled(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"sass_sm{request.param}")
    src = d / "mma_probe.cu"
    src.write_text(PROBE)
    cubin, report = compile_cubin(TOOLS, src, request.param, d)
    return sass_by_function(sass(TOOLS, cubin)), ptxas_resources(report), report


def _one(funcs, short):
    hits = [k for k in funcs if short in k]
    assert len(hits) == 1, f"{short} not found once among {sorted(funcs)}"
    return hits[0]


@pytest.mark.parametrize("kernel,needles", [
    ("probe_mma_tf32", ["HMMA.1688.F32.TF32"]),
    ("probe_mma_bf16", ["HMMA.16816.F32.BF16", "LDSM.16.M88.4", "LDSM.16.MT88.4",
                        "LDSM.16.M88.2", "LDSM.16.MT88.2", "LDSM.16.M88 ", "LDSM.16.MT88 "]),
    ("probe_cvt_bf16", ["F2FP.BF16"]),
    # cvt.rna.tf32.f32: an integer add of 0x1000 (half a tf32 ulp) under |x| < +INF, then the
    # mask 0xffffe000 -- what tools/cuda_emu/mma_emu.h's cvt_rna_tf32 models; if a compiler
    # lowers it differently, the emulator's model needs a second look.
    ("probe_cvt_tf32", ["0xffffe000", "+INF"]),
])
def test_sass_contains(compiled, kernel, needles):
    funcs, _, _ = compiled
    text = funcs[_one(funcs, kernel)]
    for n in needles:
        assert n in text, f"{kernel}: '{n}' not in its SASS:\n{text[:4000]}"


@pytest.mark.parametrize("kernel", ["probe_mma_tf32", "probe_mma_bf16", "probe_cvt_tf32",
                                    "probe_cvt_bf16"])
def test_ptxas_no_spills_no_local_memory(compiled, kernel):
    _, res, report = compiled
    r = res[_one(res, kernel)]
    assert {"stack", "spill_stores", "spill_loads", "lmem"} <= r.keys(), report
    assert r["stack"] == 0 and r["spill_stores"] == 0 and r["spill_loads"] == 0 and r["lmem"] == 0, \
        f"{kernel}: {r}\n{report}"
