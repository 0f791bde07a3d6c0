"""Known-answer tests of the emulated tensor-core instructions (tools/cuda_emu/mma_emu.h, reached
through csrc/cuda/mma.cuh): mma.sync m16n8k8 .tf32 and m16n8k16 .bf16, ldmatrix m8n8
.x1/.x2/.x4 (.trans) .b16, cvt.rna.tf32.f32 and cvt.rn.bf16x2.f32.

A kernel and its emulator can share one misreading of a fragment layout, so the layouts here are
transcribed separately from the PTX ISA figures (cited at each table) and are not imported from
the emulator. They are also checked against CUTLASS/CuTe's encoding of the same fragments (the
(thread, value) -> coordinate layouts of include/cute/atom/mma_traits_sm80.hpp and
copy_traits_sm75.hpp, written down here as shape/stride pairs). The emulator runs through a
one-warp driver, tools/cuda_emu/mma_kat.cpp, built here with g++ (skipped without g++).

What D can and cannot show: every lane's d registers are checked against the C/D table, and
the A and B tables fix rows of A and columns of B absolutely. Along k, D = sum_k A[:,k] B[k,:]
is unchanged by one permutation of k applied to both A and B, so only the A and B k-mappings
relative to each other are observable -- which is also all a kernel depends on (a kernel whose A
and B loads share one k-permutation is correct on hardware too). A k-mapping wrong in A alone or
B alone fails these tests.

Expected answers: matrices with distinct entries, products computed exactly (fractions), the
sum rounded once to fp32 (the emulator's documented model; real tensor cores may round
differently, which is why kernel tests use error bounds). Conversions: exact rational rounding
(ties away for tf32, to even for bf16) and, for bf16, torch's conversion as a second reference.
"""
import math
import os
import shutil
import struct
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from lowp_helpers import bf16_bits, round_bf16, round_tf32

ROOT = Path(__file__).resolve().parents[1]
EMU = ROOT / "tools" / "cuda_emu"

pytestmark = [pytest.mark.slow,  # the driver's build: ~15 s on two cores
              pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ (builds the emulator driver)")]


@pytest.fixture(scope="module")
def kat(tmp_path_factory):
    """Runs the driver: kat(args, words) -> list of rows of ints (hex words on stdout)."""
    exe = tmp_path_factory.mktemp("mma_kat") / "mma_kat"
    # MMA_KAT_CXXFLAGS: extra flags, e.g. "-fsanitize=address,undefined -g" for a sanitizer run
    extra = os.environ.get("MMA_KAT_CXXFLAGS", "").split()
    cmd = ["g++", "-std=c++20", "-O1", "-Wall", "-Wextra", "-Wno-unknown-pragmas", "-pthread", *extra,
           "-DALEXNET_EXT_WITH_CUDA=1", "-DALEXNET_EXT_CUDA_EMULATION=1",
           "-I", str(EMU), "-I", str(ROOT / "csrc"),
           str(EMU / "mma_kat.cpp"), str(EMU / "emu.cpp"), str(EMU / "emu_graph.cpp"), str(EMU / "emu_kernels.cpp"), "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]

    def run(args, words, expect_fail=False):
        r = subprocess.run([str(exe), *map(str, args)], input=" ".join(f"{w:x}" for w in words),
                           capture_output=True, text=True, timeout=120)
        if expect_fail:
            return r
        assert r.returncode == 0, r.stderr[-4000:]
        return [[int(x, 16) for x in line.split()] for line in r.stdout.splitlines() if line.strip()]
    return run


# ---------------------------------------------------------------------------------------------
# Layout tables, transcribed from the PTX ISA (section 9.7.14 "Warp-level matrix
# multiply-accumulate instructions", subsections 9.7.14.5.7 "Matrix Fragments for mma.m16n8k8"
# and 9.7.14.5.8 "Matrix Fragments for mma.m16n8k16 with floating point type"; numbering of the
# PTX ISA 8.x/9.x documents, figure names quoted below). groupID = laneid >> 2, threadID_in_group = laneid % 4.
# Each function maps (lane, element index i) -> (row, col) of the matrix, as the figure's
# formulas state it. Elements are numbered as in the figures: for .tf32, register i = element i;
# for .bf16, register r holds elements 2r (bits 0-15) and 2r+1 (bits 16-31).

def _gt(lane):
    return lane >> 2, lane % 4


def ptx_tf32_a(lane, i):
    # Figure "MMA .m16n8k8 fragment layout for matrix A with .tf32 type":
    #   row = groupID for a0 and a2, groupID + 8 for a1 and a3
    #   col = threadID_in_group for a0 and a1, threadID_in_group + 4 for a2 and a3
    g, t = _gt(lane)
    row = g if i in (0, 2) else g + 8
    col = t if i in (0, 1) else t + 4
    return row, col


def ptx_tf32_b(lane, i):
    # Figure "MMA .m16n8k8 fragment layout for matrix B with .tf32 type":
    #   row = threadID_in_group for b0, threadID_in_group + 4 for b1;  col = groupID
    g, t = _gt(lane)
    return (t if i == 0 else t + 4), g


def ptx_c_f32(lane, i):
    # Figures "MMA .m16n8k8 fragment layout for accumulator matrix C/D with .f32 type" and the
    # same for .m16n8k16 (identical): row = groupID for c0 and c1, groupID + 8 for c2 and c3;
    # col = threadID_in_group * 2 + (i & 0x1)
    g, t = _gt(lane)
    return (g if i < 2 else g + 8), t * 2 + (i & 1)


def ptx_bf16_a(lane, i):
    # Figure "MMA .m16n8k16 fragment layout for matrix A with .f16/.bf16 type" (i = 0..7):
    #   row = groupID for a_i with 0 <= i < 2 or 4 <= i < 6, groupID + 8 otherwise
    #   col = threadID_in_group * 2 + (i & 0x1) for i < 4, ... + 8 for i >= 4
    g, t = _gt(lane)
    row = g if (i < 2 or 4 <= i < 6) else g + 8
    col = t * 2 + (i & 1) + (8 if i >= 4 else 0)
    return row, col


def ptx_bf16_b(lane, i):
    # Figure "MMA .m16n8k16 fragment layout for matrix B with .f16/.bf16 type" (i = 0..3):
    #   row = threadID_in_group * 2 + (i & 0x1) for i < 2, ... + 8 for i >= 2;  col = groupID
    g, t = _gt(lane)
    return t * 2 + (i & 1) + (8 if i >= 2 else 0), g


def ptx_ldmatrix(lane, i):
    # ldmatrix section, figure "ldmatrix fragment layout for one 8x8 matrix with 16-bit
    # elements": each lane holds row laneid / 4 (groupID), elements i = 0, 1 at columns
    # threadID_in_group * 2 + i. With .trans the matrix is read in column-major order, so the
    # same (row, col) indexes the transpose: the element comes from stored row col, column row.
    g, t = _gt(lane)
    return g, t * 2 + i


def ptx_ldmatrix_address_lane(matrix, row):
    # ldmatrix section, table of thread groups supplying addresses: threads 0-7 give the rows
    # of matrix 0, 8-15 of matrix 1, 16-23 of matrix 2, 24-31 of matrix 3 (.x1: only 0-7 used,
    # .x2: only 0-15).
    return 8 * matrix + row


# ---------------------------------------------------------------------------------------------
# CUTLASS/CuTe's encoding of the same fragments: a layout (thread, value) -> linear index of a
# column-major (M x N) or (N x K)... coordinate space, as shape/stride pairs. Transcribed from
# include/cute/atom/mma_traits_sm80.hpp (MMA_Traits<SM80_16x8x8_F32TF32TF32F32_TN> and
# MMA_Traits<SM80_16x8x16_F16F16F16F16_TN>, which the bf16 traits inherit; SM80_16x8_Row for C)
# and include/cute/atom/copy_traits_sm75.hpp (Copy_Traits<SM75_U32x4_LDSM_N>::DstLayout,
# Copy_Traits<SM75_U16x8_LDSM_T>::DstLayout, in bits of 8x8 b16 row-major matrices).

def _cute_eval(shape, stride, coord_index):
    """Value of a (possibly nested) CuTe layout at a linear coordinate (colexicographic)."""
    if isinstance(shape, int):
        return (coord_index % shape) * stride
    out = 0
    for s, d in zip(shape, stride):
        size = math.prod(_flat(s))
        out += _cute_eval(s, d, coord_index % size)
        coord_index //= size
    return out


def _flat(s):
    return [s] if isinstance(s, int) else [x for y in s for x in _flat(y)]


def _cute_tv(layout, lane, value):
    (tshape, vshape), (tstride, vstride) = layout
    return _cute_eval(tshape, tstride, lane) + _cute_eval(vshape, vstride, value)


CUTE_TF32_A = (((4, 8), (2, 2)), ((16, 1), (8, 64)))           # (M16, K8) column-major
CUTE_TF32_B = (((4, 8), 2), ((8, 1), 32))                      # (N8, K8)
CUTE_C = (((4, 8), (2, 2)), ((32, 1), (16, 8)))                # SM80_16x8_Row, (M16, N8)
CUTE_BF16_A = (((4, 8), (2, 2, 2)), ((32, 1), (16, 8, 128)))   # (M16, K16)
CUTE_BF16_B = (((4, 8), (2, 2)), ((16, 1), (8, 64)))           # (N8, K16)
CUTE_LDSM_N_X4 = ((32, (32, 4)), (32, (1, 1024)))              # bits
CUTE_LDSM_T_X4 = (((4, 8), (16, 2, 4)), ((256, 16), (1, 128, 1024)))  # bits


@pytest.mark.parametrize("name", ["tf32_a", "tf32_b", "c", "bf16_a", "bf16_b"])
def test_ptx_tables_match_cute(name):
    ptx, cute, rows, nvals = {
        "tf32_a": (ptx_tf32_a, CUTE_TF32_A, 16, 4),
        "tf32_b": (lambda l, i: ptx_tf32_b(l, i)[::-1], CUTE_TF32_B, 8, 2),  # CuTe B is (N, K)
        "c": (ptx_c_f32, CUTE_C, 16, 4),
        "bf16_a": (ptx_bf16_a, CUTE_BF16_A, 16, 8),
        "bf16_b": (lambda l, i: ptx_bf16_b(l, i)[::-1], CUTE_BF16_B, 8, 4),
    }[name]
    seen = set()
    for lane in range(32):
        for i in range(nvals):
            idx = _cute_tv(cute, lane, i)
            assert ptx(lane, i) == (idx % rows, idx // rows), (name, lane, i)
            seen.add(ptx(lane, i))
    assert len(seen) == 32 * nvals  # every element held exactly once


def test_ptx_ldmatrix_table_matches_cute():
    for lane in range(32):
        for j in range(4):
            for i in range(2):
                g, t = _gt(lane)
                row, col = ptx_ldmatrix(lane, i)
                # non-transposed: bit offset -> (matrix, row, b16 column) of row-major matrices
                bit = _cute_tv(CUTE_LDSM_N_X4, lane, 16 * i + 32 * j)
                assert (bit // 1024, bit % 1024 // 128, bit % 128 // 16) == (j, row, col)
                # .trans: the value is stored element (col, row) of matrix j
                bit = _cute_tv(CUTE_LDSM_T_X4, lane, 16 * i + 32 * j)
                assert (bit // 1024, bit % 1024 // 128, bit % 128 // 16) == (j, col, row)


# ---------------------------------------------------------------------------------------------
# Exact references.

def f2u(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def u2f(u):
    return struct.unpack("<f", struct.pack("<I", u))[0]


def round_exact(x, mant_bits, min_quantum_exp, ties):
    """Rational x rounded to a binary format with `mant_bits` explicit mantissa bits, fp32's
    exponent range and quantum 2^min_quantum_exp for subnormals; -> Python float or +-inf."""
    if x == 0:
        return 0.0
    sign, a = (-1 if x < 0 else 1), abs(Fraction(x))
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:
        e -= 1
    q = Fraction(2) ** max(e - mant_bits, min_quantum_exp)
    n = a / q
    fl = n.numerator // n.denominator
    rem = n - fl
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and (ties == "away" or fl % 2 == 1)):
        fl += 1
    r = fl * q
    if r >= Fraction(2) ** 128:
        return sign * math.inf
    return sign * float(r)


def to_f32_once(x):
    return round_exact(x, 23, -149, "even")


def tf32_expected(u):
    x = u2f(u)
    if math.isnan(x) or math.isinf(x):
        return None  # checked separately
    r = round_exact(Fraction(x), 10, -136, "away")
    return f2u(r) if r != 0 else (u & 0x80000000)


def bf16_expected(u):
    x = u2f(u)
    if math.isnan(x) or math.isinf(x):
        return None
    r = round_exact(Fraction(x), 7, -133, "even")
    return (f2u(r) >> 16) if r != 0 else (u >> 16 & 0x8000)


# ---------------------------------------------------------------------------------------------
# mma.sync

def _mma_inputs(shape, A, B, C, a_bits, b_bits):
    """Per-lane register words from the PTX tables. A, B entries are already bit patterns
    (a_bits/b_bits map a value to its tf32 word or bf16 half)."""
    m, n, k = shape
    words = []
    for lane in range(32):
        if k == 8:
            a = [a_bits(A[ptx_tf32_a(lane, i)]) for i in range(4)]
            b = [b_bits(B[ptx_tf32_b(lane, i)]) for i in range(2)]
        else:
            a = [a_bits(A[ptx_bf16_a(lane, 2 * r)]) | a_bits(A[ptx_bf16_a(lane, 2 * r + 1)]) << 16
                 for r in range(4)]
            b = [b_bits(B[ptx_bf16_b(lane, 2 * r)]) | b_bits(B[ptx_bf16_b(lane, 2 * r + 1)]) << 16
                 for r in range(2)]
        c = [f2u(float(C[ptx_c_f32(lane, i)])) for i in range(4)]
        words += a + b + c
    return words


def _check_mma(rows, A, B, C, k, what=""):
    """Each lane's d registers against sum_k A*B + C (exact, rounded once), via the C/D table."""
    assert len(rows) == 32
    for lane in range(32):
        for i in range(4):
            r, c = ptx_c_f32(lane, i)
            exact = sum(Fraction(float(A[r, kk])) * Fraction(float(B[kk, c])) for kk in range(k))
            want = to_f32_once(exact + Fraction(float(C[r, c])))
            got = u2f(rows[lane][i])
            assert got == want, f"{what} lane {lane} d{i} = D[{r}][{c}]: {got!r} != {want!r}"


def _distinct_ints(rng, shape, lo, hi):
    vals = rng.permutation(np.arange(lo, hi + 1))[: math.prod(shape)]
    vals = vals * rng.choice([-1, 1], size=vals.shape)
    return vals.reshape(shape).astype(np.float64)


def test_mma_tf32_layout_distinct_integers(kat, rng):
    # Distinct entries (integers up to 2^10: exact in tf32, products exact in fp32 sums).
    A = _distinct_ints(rng, (16, 8), 1, 1024)
    B = _distinct_ints(rng, (8, 8), 1, 1024)
    C = _distinct_ints(rng, (16, 8), 1, 4096)
    rows = kat(["mma_tf32"], _mma_inputs((16, 8, 8), A, B, C, lambda v: f2u(v), lambda v: f2u(v)))
    _check_mma(rows, A, B, C, 8)


def test_mma_tf32_one_hot_positions(kat):
    # A = powers of two encoding (row, col), B = identity-like permutation: D exposes where each
    # A element landed. D[r][c] = A[r][p^-1(c)] for B the permutation matrix of p.
    A = np.array([[2.0 ** (r % 8) * (1 + k) * (1 if r < 8 else -1) for k in range(8)]
                  for r in range(16)])
    perm = [3, 0, 6, 1, 7, 2, 5, 4]
    B = np.zeros((8, 8))
    for kk, c in enumerate(perm):
        B[kk, c] = 1.0
    C = np.zeros((16, 8))
    rows = kat(["mma_tf32"], _mma_inputs((16, 8, 8), A, B, C, lambda v: f2u(v), lambda v: f2u(v)))
    _check_mma(rows, A, B, C, 8)


def test_mma_tf32_ignores_low_13_bits_and_rounds_once(kat, rng):
    # Operands straight from fp32 bits (not converted): the model uses only the top 19 bits.
    # Wide exponents make the fp32 sum need rounding; expected: exact sum rounded once.
    Araw = (rng.standard_normal((16, 8)) * 2.0 ** rng.integers(-20, 20, (16, 8))).astype(np.float32)
    Braw = (rng.standard_normal((8, 8)) * 2.0 ** rng.integers(-20, 20, (8, 8))).astype(np.float32)
    C = rng.standard_normal((16, 8)).astype(np.float32).astype(np.float64)
    trunc = np.vectorize(lambda x: u2f(f2u(float(x)) & 0xFFFFE000))
    words = _mma_inputs((16, 8, 8), Araw.astype(np.float64), Braw.astype(np.float64), C,
                        lambda v: f2u(v), lambda v: f2u(v))
    rows = kat(["mma_tf32"], words)
    _check_mma(rows, trunc(Araw), trunc(Braw), C, 8)


def test_mma_tf32_single_rounding_known_case(kat):
    # D[0][0] = 1 + 2^-24 + 2^-40 exactly (just above a tie): rounded once -> 1 + 2^-23,
    # whereas a left-to-right fp32 accumulation would give 1.
    A = np.zeros((16, 8))
    B = np.zeros((8, 8))
    C = np.zeros((16, 8))
    C[0, 0] = 1.0
    A[0, 0], B[0, 0] = 2.0 ** -12, 2.0 ** -12  # 2^-24
    A[0, 1], B[1, 0] = 2.0 ** -20, 2.0 ** -20  # 2^-40
    rows = kat(["mma_tf32"], _mma_inputs((16, 8, 8), A, B, C, lambda v: f2u(v), lambda v: f2u(v)))
    assert u2f(rows[0][0]) == 1.0 + 2.0 ** -23
    _check_mma(rows, A, B, C, 8)


def test_mma_tf32_rounds_once_beyond_double(kat, rng):
    # Sums a double cannot hold (terms 2^100 apart, cancellations): still rounded once.
    A = np.zeros((16, 8))
    B = np.zeros((8, 8))
    C = np.zeros((16, 8))
    # D[0][0] = 1 + 2^-24 + 2^-80: just above a tie -> 1 + 2^-23 (a double sum would lose 2^-80)
    C[0, 0] = 1.0
    A[0, 0], B[0, 0] = 2.0 ** -12, 2.0 ** -12
    A[0, 1], B[1, 0] = 2.0 ** -40, 2.0 ** -40
    # D[1][1] = 2^100 + 3 - 2^100 + 2^-90 = 3 + 2^-90 -> 3
    A[1, 2], B[2, 1] = 2.0 ** 50, 2.0 ** 50
    A[1, 3], B[3, 1] = 3.0, 1.0
    A[1, 4], B[4, 1] = -(2.0 ** 50), 2.0 ** 50
    A[1, 5], B[5, 1] = 2.0 ** -45, 2.0 ** -45
    # D[9][2] = -(1 + 2^-24) - 2^-100: a negative tie broken by the tiny term -> -(1 + 2^-23)
    C[9, 2] = -1.0
    A[9, 6], B[6, 2] = -(2.0 ** -12), 2.0 ** -12
    A[9, 7], B[7, 2] = 2.0 ** -50, -(2.0 ** -50)
    rows = kat(["mma_tf32"], _mma_inputs((16, 8, 8), A, B, C, lambda v: f2u(v), lambda v: f2u(v)))
    assert u2f(rows[0][0]) == 1.0 + 2.0 ** -23                       # lane 0: d0 = D[0][0]
    assert u2f(rows[4 * 1 + 0][1]) == 3.0                             # lane 4: d1 = D[1][1]
    assert u2f(rows[4 * 1 + 1][2]) == -(1.0 + 2.0 ** -23)             # lane 5: d2 = D[9][2]
    _check_mma(rows, A, B, C, 8)
    # and random data over the whole exponent range of products
    A = (rng.standard_normal((16, 8)) * 2.0 ** rng.integers(-60, 60, (16, 8))).astype(np.float32)
    B = (rng.standard_normal((8, 8)) * 2.0 ** rng.integers(-60, 60, (8, 8))).astype(np.float32)
    A, B = round_tf32(A).astype(np.float64), round_tf32(B).astype(np.float64)
    C = (rng.standard_normal((16, 8)) * 2.0 ** rng.integers(-60, 60, (16, 8))).astype(np.float32)
    C = C.astype(np.float64)
    rows = kat(["mma_tf32"], _mma_inputs((16, 8, 8), A, B, C, lambda v: f2u(v), lambda v: f2u(v)))
    _check_mma(rows, A, B, C, 8)


def test_mma_tf32_non_finite(kat):
    A = np.ones((16, 8))
    B = np.ones((8, 8))
    C = np.zeros((16, 8))
    A[3, 2] = math.inf
    B[2, 5] = 0.0
    rows = kat(["mma_tf32"], _mma_inputs((16, 8, 8), A, B, C, lambda v: f2u(v), lambda v: f2u(v)))
    for lane in range(32):
        for i in range(4):
            r, c = ptx_c_f32(lane, i)
            got = u2f(rows[lane][i])
            if r == 3:
                assert math.isnan(got) if c == 5 else got == math.inf, (lane, i, got)
            else:
                assert got == (7.0 if c == 5 else 8.0), (lane, i, got)


def test_mma_bf16_layout_distinct_integers(kat, rng):
    # Integers up to 256 are exact in bf16 (8 significant bits).
    A = _distinct_ints(rng, (16, 16), 1, 256)
    B = _distinct_ints(rng, (16, 8), 1, 256)
    C = _distinct_ints(rng, (16, 8), 1, 4096)
    bits = lambda v: f2u(v) >> 16  # exact: the low 16 bits are zero for these values
    assert all(f2u(float(v)) & 0xFFFF == 0 for v in np.concatenate([A.ravel(), B.ravel()]))
    rows = kat(["mma_bf16"], _mma_inputs((16, 8, 16), A, B, C, bits, bits))
    _check_mma(rows, A, B, C, 16)


def test_mma_bf16_random_rounds_once(kat, rng):
    A = (rng.standard_normal((16, 16)) * 2.0 ** rng.integers(-30, 30, (16, 16)))
    B = (rng.standard_normal((16, 8)) * 2.0 ** rng.integers(-30, 30, (16, 8)))
    A = np.vectorize(lambda x: u2f(bf16_expected(f2u(float(np.float32(x)))) << 16))(A)
    B = np.vectorize(lambda x: u2f(bf16_expected(f2u(float(np.float32(x)))) << 16))(B)
    C = rng.standard_normal((16, 8)).astype(np.float32).astype(np.float64)
    bits = lambda v: f2u(v) >> 16
    rows = kat(["mma_bf16"], _mma_inputs((16, 8, 16), A, B, C, bits, bits))
    _check_mma(rows, A, B, C, 16)


def test_ldmatrix_feeds_mma_bf16(kat, rng):
    # The recipe a kernel uses: A row-major in shared memory through ldmatrix_x4; B either
    # k-major through ldmatrix_x2_trans or n-major through ldmatrix_x2 (tools/cuda_emu/mma_kat.cpp
    # gemm_bf16_kernel has the per-lane row addresses). Exact: small integers.
    A = _distinct_ints(rng, (16, 16), 1, 256)
    B = _distinct_ints(rng, (16, 8), 1, 256)
    bits = [f2u(float(v)) >> 16 for v in np.concatenate([A.ravel(), B.ravel()])]
    rows = kat(["gemm_bf16"], bits)
    assert len(rows) == 64
    for half, what in ((rows[:32], "B via ldmatrix_x2_trans"), (rows[32:], "Bt via ldmatrix_x2")):
        _check_mma(half, A, B, np.zeros((16, 8)), 16, what)


def test_ldmatrix_feeds_mma_tf32(kat, rng):
    # 32-bit elements through ldmatrix (each fp32 as a b16 pair): A row-major by x4, B n-major
    # by x2 land exactly on the m16n8k8 .tf32 fragments (mma_kat.cpp gemm_tf32_kernel).
    A = _distinct_ints(rng, (16, 8), 1, 1024)
    B = _distinct_ints(rng, (8, 8), 1, 1024)
    rows = kat(["gemm_tf32"], [f2u(float(v)) for v in np.concatenate([A.ravel(), B.ravel()])])
    _check_mma(rows, A, B, np.zeros((16, 8)), 8, "tf32 via ldmatrix")


def test_mma_missing_lane_aborts(kat):
    r = kat(["mma_partial"], [], expect_fail=True)
    assert r.returncode != 0
    assert "warp operation" in r.stderr


def test_divergent_warp_instructions_abort(kat):
    r = kat(["mixed"], [], expect_fail=True)
    assert r.returncode != 0
    assert "different warp instructions" in r.stderr


# ---------------------------------------------------------------------------------------------
# ldmatrix

@pytest.mark.parametrize("n,trans", [(1, 0), (2, 0), (4, 0), (1, 1), (2, 1), (4, 1)])
def test_ldmatrix_layout(kat, rng, n, trans):
    image = rng.permutation(2 ** 16)[:512]  # 64 rows of 8 distinct b16 words
    slots = rng.permutation(64)[:32]        # each lane's row: a random 16-byte slot
    offsets = [int(s) * 16 for s in slots]
    for lane in range(8 * n, 32):
        offsets[lane] = 16 * int(slots[lane]) + 2  # unused lanes: misaligned, must be ignored
    rows = kat(["ldmatrix", n, trans], [int(w) for w in image] + offsets)
    assert len(rows) == 32
    for lane in range(32):
        assert len(rows[lane]) == n
        for j in range(n):
            for i in range(2):
                row, col = ptx_ldmatrix(lane, i)
                if trans:
                    row, col = col, row  # .trans: stored row `col`, column `row`
                src = offsets[ptx_ldmatrix_address_lane(j, row)] // 2 + col
                got = rows[lane][j] >> (16 * i) & 0xFFFF
                assert got == image[src], f"lane {lane} reg {j} half {i}"


def test_ldmatrix_misaligned_used_row_aborts(kat):
    r = kat(["ldmatrix", 4, 0], [0] * 512 + [16 * l for l in range(31)] + [8], expect_fail=True)
    assert r.returncode != 0 and "16-byte aligned" in r.stderr


# ---------------------------------------------------------------------------------------------
# Conversions

def _edge_inputs():
    t = [1.0, -1.0, 0.0, -0.0, 3.0, 0.1, -0.1, 1e-30, 65504.0, 3.4e38, -3.4e38]
    u = [f2u(x) for x in t]
    one = f2u(1.0)
    u += [one | 0x1000, one | 0x3000, one | 0x0FFF, one | 0x1001, 0x80000000 | one | 0x1000]  # tf32 ties
    u += [one | 0x8000, one | 0x18000, one | 0x7FFF, one | 0x8001, 0x80000000 | one | 0x8000]  # bf16 ties
    u += [0x3FFFFFFF, 0x3F7FFFFF, 0x3FFFF000, 0x3FFF8000, 0xBFFFFFFF]  # carries into the exponent
    u += [0x7F7FFFFF, 0xFF7FFFFF, 0x7F7FEFFF, 0x7F7FF000, 0x7F7F7FFF, 0x7F7F8000]  # max finite region
    u += [0x00000001, 0x00001000, 0x00001001, 0x00003000, 0x00002000, 0x00008000, 0x00018000,
          0x007FFFFF, 0x807FFFFF, 0x00400000, 0x00000FFF, 0x80001000]  # subnormals
    u += [0x7F800000, 0xFF800000]  # infinities
    return u


NANS = [0x7FC00000, 0xFFC00000, 0x7FA00000, 0x7F800001 | 0x200000, 0x7FFFFFFF]


def test_conversions_exact(kat, rng):
    inputs = _edge_inputs() + [int(x) for x in rng.integers(0, 2 ** 32, 3000, dtype=np.uint64)]
    rows = kat(["cvt"], inputs)
    assert len(rows) == len(inputs)
    for u, (tf, lo, hi, sw) in zip(inputs, rows):
        x = u2f(u)
        if math.isnan(x):
            continue  # NaNs: test_conversions_nan
        if math.isinf(x):
            assert tf == u and lo == u >> 16 and hi == u & 0xFFFF0000 and sw == u >> 16
            continue
        assert tf == tf32_expected(u), f"to_tf32({u:#010x}) = {tf:#010x}"
        assert tf & 0x1FFF == 0
        b = bf16_expected(u)
        assert lo == b, f"pack_bf16x2({u:#010x}, 0) low = {lo:#x}, want {b:#x}"
        assert hi == b << 16, f"pack_bf16x2(0, {u:#010x}) = {hi:#010x}"
        assert sw == b, f"float_to_bf16_bits({u:#010x}) = {sw:#x}"


def test_conversions_specific_values(kat):
    # A few answers written out by hand (independent of round_exact).
    one = 0x3F800000
    cases = {  # input: (tf32 bits, bf16 bits)
        one | 0x1000: (one | 0x2000, 0x3F80),       # tf32 tie -> away (up); bf16 -> 1
        0x80000000 | one | 0x1000: (0x80000000 | one | 0x2000, 0xBF80),
        one | 0x8000: (one | 0x8000, 0x3F80),       # bf16 tie, even below -> 1.0
        one | 0x18000: (one | 0x18000, 0x3F82),     # bf16 tie, odd below -> up to even
        0x3FFFFFFF: (0x40000000, 0x4000),           # carry into the exponent -> 2.0
        0x7F7FFFFF: (0x7F800000, 0x7F80),           # max finite fp32 -> inf in both
        0x007FFFFF: (0x00800000, 0x0080),           # largest subnormal -> smallest normal
        0x00001000: (0x00002000, 0x0000),           # tf32 subnormal tie -> away
        0x00000FFF: (0x00000000, 0x0000),
    }
    rows = kat(["cvt"], list(cases))
    for (u, (tf, bf)), row in zip(cases.items(), rows):
        assert row[0] == tf, f"to_tf32({u:#010x}) = {row[0]:#010x}, want {tf:#010x}"
        assert row[1] == bf and row[3] == bf, f"bf16({u:#010x}) = {row[1]:#x}, want {bf:#x}"


def test_conversions_bf16_agree_with_torch(kat, rng):
    torch = pytest.importorskip("torch")
    inputs = _edge_inputs() + [int(x) for x in rng.integers(0, 2 ** 32, 3000, dtype=np.uint64)]
    inputs = [u for u in inputs if not math.isnan(u2f(u))]
    rows = kat(["cvt"], inputs)
    x = torch.tensor(np.array(inputs, dtype=np.uint32).view(np.float32))
    ref = x.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    for u, row, want in zip(inputs, rows, ref):
        assert row[1] == int(want), f"{u:#010x}: {row[1]:#x} != torch {int(want):#x}"


def test_numpy_rounding_helpers_match_device(kat, rng):
    # tests/lowp_helpers.py (for kernel tests' references) against the emulated conversions.
    inputs = _edge_inputs() + NANS + [int(x) for x in rng.integers(0, 2 ** 32, 3000, dtype=np.uint64)]
    rows = np.array(kat(["cvt"], inputs), dtype=np.uint64)
    x = np.array(inputs, dtype=np.uint32).view(np.float32)
    assert np.array_equal(round_tf32(x).view(np.uint32), rows[:, 0].astype(np.uint32))
    assert np.array_equal(bf16_bits(x), rows[:, 1].astype(np.uint16))
    assert np.array_equal(round_bf16(x).view(np.uint32), rows[:, 2].astype(np.uint32))


def test_conversions_nan(kat):
    rows = kat(["cvt"], NANS)
    for u, (tf, lo, hi, sw) in zip(NANS, rows):
        assert math.isnan(u2f(tf)), f"to_tf32({u:#010x}) = {tf:#010x} is not NaN"
        assert tf & 0x1FFF == 0
        assert lo == 0x7FFF and sw == 0x7FFF and hi == 0x7FFF0000  # canonical bf16 NaN
