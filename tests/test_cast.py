"""ops.cast on NumPy arrays (csrc/cpu/cast.cpp): float32 -> bfloat16 compared bit for bit with an
independent reference (exact comparison with the two bf16 neighbours, tests/lowp_helpers.py) and
with ml_dtypes' astype; bfloat16 -> float32 checked exact on all 65536 patterns. Errors name the
argument. The GPU kernel is tests/test_cast_cuda.py (same cases, same bits)."""
import ml_dtypes
import numpy as np
import pytest

from alexnet_ext import cuda, ops
from lowp_helpers import bf16_rne_reference

BF16 = np.dtype(ml_dtypes.bfloat16)

# float32 bit patterns of every edge: ties to even (down: 1 + 2^-8, up: 1 + 3*2^-8), subnormal
# ties (to 0, to 2 ulps), the smallest subnormal, the largest finite (rounds to inf), the tie just
# below inf (to inf: 0x7f7f is odd), just below that tie (stays finite), +-0, +-inf, signalling
# and quiet NaNs with payloads and both signs, the smallest normal.
EDGES = np.array([0x3F808000, 0x3F818000, 0x00008000, 0x00018000, 0x00000001, 0x7F7FFFFF,
                  0x7F7F8000, 0x7F7F7FFF, 0x00000000, 0x80000000, 0x7F800000, 0xFF800000,
                  0x7F800001, 0xFF800001, 0x7FC12345, 0xFFC00001, 0x7FBFFFFF, 0x00800000,
                  0x80008000, 0x80018000, 0x007FFFFF, 0x3F7FFFFF],
                 dtype=np.uint32).view(np.float32)


def cases(rng):
    """Edges, uniform random bit patterns (every class of float32), and ordinary values."""
    bits = rng.integers(0, 2**32, size=20011, dtype=np.uint64).astype(np.uint32).view(np.float32)
    normal = (rng.standard_normal(5003) * 10.0 ** rng.integers(-40, 39, 5003)).astype(np.float32)
    return np.concatenate([EDGES, bits, normal])


def ml_dtypes_bits(x):
    with np.errstate(invalid="ignore", over="ignore"):
        return x.astype(BF16).view(np.uint16)


def test_to_bf16_matches_exact_reference_and_ml_dtypes(rng):
    x = cases(rng).reshape(1, -1)  # any shape
    y = ops.cast(x, cuda.bfloat16)
    assert y.dtype == BF16 and y.shape == x.shape
    got = y.view(np.uint16).ravel()
    np.testing.assert_array_equal(got, bf16_rne_reference(x.ravel()))
    np.testing.assert_array_equal(got, ml_dtypes_bits(x.ravel()))
    # the edges by name: NaN stays a quiet NaN of its sign, overflow is inf, -0.0 keeps its sign
    e = got[:len(EDGES)]
    assert [hex(v) for v in e[:8]] == ["0x3f80", "0x3f82", "0x0", "0x2", "0x0", "0x7f80",
                                       "0x7f80", "0x7f7f"]
    assert [hex(v) for v in e[8:16]] == ["0x0", "0x8000", "0x7f80", "0xff80", "0x7fc0", "0xffc0",
                                         "0x7fc0", "0xffc0"]


def test_to_float32_is_exact_on_every_pattern():
    bits = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    y = ops.cast(bits.view(BF16), np.float32)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y.view(np.uint32), bits.astype(np.uint32) << 16)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(y.view(np.uint32), bits.view(BF16).astype(np.float32).view(np.uint32))
    # and back: every non-NaN pattern survives the round trip
    back = ops.cast(y, "bfloat16").view(np.uint16)
    keep = ~np.isnan(y)
    np.testing.assert_array_equal(back[keep], bits[keep])
    assert np.isnan(back[~keep].view(BF16).astype(np.float32)).all()


def test_out_and_threads(rng):
    x = rng.standard_normal((3, 7, 11, 13)).astype(np.float32)  # above nothing: odd sizes
    out = np.full(x.shape, 0x1234, np.uint16).view(BF16)
    assert ops.cast(x, BF16, out=out) is out
    np.testing.assert_array_equal(out.view(np.uint16), bf16_rne_reference(x))
    big = rng.standard_normal(1 << 16).astype(np.float32)  # past the parallel threshold
    np.testing.assert_array_equal(ops.cast(big, BF16).view(np.uint16), bf16_rne_reference(big))
    back = np.full(x.shape, np.nan, np.float32)
    assert ops.cast(out, np.float32, out=back) is back
    np.testing.assert_array_equal(back, out.astype(np.float32))


def test_errors_name_the_argument():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="x: expected dtype bfloat16, got float32"):
        ops.cast(x, np.float32)
    with pytest.raises(TypeError, match="x: expected dtype float32, got float64"):
        ops.cast(x.astype(np.float64), BF16)
    with pytest.raises(TypeError, match="dtype: expected float32 or bfloat16, got int32"):
        ops.cast(x, np.int32)
    with pytest.raises(TypeError, match="dtype: expected float32 or bfloat16"):
        ops.cast(x, "no such dtype")
    with pytest.raises(TypeError, match="x: expected a numpy.ndarray"):
        ops.cast([1.0], BF16)
    with pytest.raises(ValueError, match="x: expected a C-contiguous"):
        ops.cast(np.ones((4, 4), np.float32)[:, ::2], BF16)
    with pytest.raises(ValueError, match="x: expected a non-empty"):
        ops.cast(np.ones((0, 4), np.float32), BF16)
    with pytest.raises(TypeError, match="out: expected dtype bfloat16, got float32"):
        ops.cast(x, BF16, out=np.empty((2, 3), np.float32))
    with pytest.raises(ValueError, match="out: expected shape"):
        ops.cast(x, BF16, out=np.empty((3, 2), BF16))
    ro = np.empty((2, 3), BF16)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out: array is read-only"):
        ops.cast(x, BF16, out=ro)
    raw = np.zeros(6, np.float32)
    with pytest.raises(ValueError, match="out: must not share memory with x"):
        ops.cast(raw, BF16, out=raw.view(BF16)[:6])


def test_binding_checks_memory_safety():
    """_core directly (no Python checks): shapes and dtypes are still enforced."""
    from alexnet_ext import _core
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="out: expected the shape of x"):
        _core.cpu.cast(x, np.empty((3, 2), BF16))
    with pytest.raises(TypeError, match="out: expected dtype bfloat16"):
        _core.cpu.cast(x, np.empty((2, 3), np.int32))
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        _core.cpu.cast(np.ones((2, 3), np.float64), np.empty((2, 3), BF16))
