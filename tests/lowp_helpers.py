"""fp32 -> tf32 / bf16 rounding in numpy, bit-exact with the device conversions of
csrc/cuda/mma.cuh (cvt.rna.tf32.f32, cvt.rn.bf16x2.f32; checked against the emulated ones in
tests/test_mma_layouts.py), for references computed on the rounded inputs.

  round_tf32(x): nearest tf32 (10 mantissa bits), ties away from zero, as float32; inf and NaN
                 keep their top 19 bits (a quiet NaN stays NaN)
  round_bf16(x): nearest bf16 (7 mantissa bits), ties to even, as float32; NaN -> 0x7fff
  bf16_bits(x) / bf16_to_float32(bits): the same rounding as uint16 bit patterns and back
  bf16_rne_reference(x): float32 -> bf16 bits as ops.cast does them (NaN -> sign | 0x7fc0), by
                 exact comparison with the two neighbours: the independent reference of the cast
"""
import numpy as np


def round_tf32(x):
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    finite = (u & np.uint32(0x7F800000)) != np.uint32(0x7F800000)
    u = np.where(finite, u + np.uint32(0x1000), u) & np.uint32(0xFFFFE000)
    return u.astype(np.uint32).view(np.float32)


def bf16_bits(x):
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16  # round to nearest even; carries are right
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    return np.where(nan, 0x7FFF, r).astype(np.uint16)


def bf16_to_float32(bits):
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def round_bf16(x):
    return bf16_to_float32(bf16_bits(x))


def bf16_value(bits):
    """The exact value of bf16 bit patterns (sign ignored, NaN/inf not handled) as float64, from
    the fields: (128 + m) * 2^(e - 134), subnormal m * 2^-133; exponent 255 reads as 2^128, the
    first value past the largest finite bf16 (where rounding up overflows to inf)."""
    b = np.asarray(bits, dtype=np.int64) & 0x7FFF
    e, m = b >> 7, b & 0x7F
    return np.where(e == 0, np.ldexp(m.astype(np.float64), -133),
                    np.ldexp((128 + m).astype(np.float64), (e - 134).astype(np.int32)))


def bf16_rne_reference(x):
    """float32 -> bf16 bits by exact comparison, independent of the bit trick of csrc/cast.h: the
    two bf16 neighbours of |x| (float64 holds them and both distances exactly), the nearer wins,
    a tie goes to the even pattern; NaN -> the quiet NaN of its sign (ml_dtypes' choice)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    u = x.view(np.uint32).astype(np.int64)
    sign = (u >> 16) & 0x8000
    lo = (u & 0x7FFFFFFF) >> 16  # the neighbour at or below |x|
    hi = lo + 1
    with np.errstate(invalid="ignore"):  # signalling NaNs
        mag = np.abs(x.astype(np.float64))
        d_lo, d_hi = mag - bf16_value(lo), bf16_value(hi) - mag
        pick = np.where((d_hi < d_lo) | ((d_hi == d_lo) & (lo % 2 == 1)), hi, lo)
    pick = np.where(np.isinf(x), 0x7F80, pick)
    out = np.where(np.isnan(x), 0x7FC0, pick) | sign
    return out.astype(np.uint16)
