"""fp32 -> tf32 / bf16 rounding in numpy, bit-exact with the device conversions of
csrc/cuda/mma.cuh (cvt.rna.tf32.f32, cvt.rn.bf16x2.f32; checked against the emulated ones in
tests/test_mma_layouts.py), for references computed on the rounded inputs.

  round_tf32(x): nearest tf32 (10 mantissa bits), ties away from zero, as float32; inf and NaN
                 keep their top 19 bits (a quiet NaN stays NaN)
  round_bf16(x): nearest bf16 (7 mantissa bits), ties to even, as float32; NaN -> 0x7fff
  bf16_bits(x) / bf16_to_float32(bits): the same rounding as uint16 bit patterns and back
  bf16_rne_reference(x): float32 -> bf16 bits as ops.cast does them (NaN -> sign | 0x7fc0), by
                 exact comparison with the two neighbours: the independent reference of the cast
  bf16_rne_f64(x): float64 -> bf16 bits, rounded once from the float64 value (exact references)
  ulp_bf16(v), assert_bf16_within(bits, ref, err32), gamma32(n): the bound of a float32
                 computation rounded once to bf16 (the bf16 activation ops)
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


def bf16_rne_f64(x):
    """float64 -> bf16 bits, round to nearest even of the float64 value itself (no float32 step):
    the float32 rounding's bf16 neighbours and theirs, the nearest by exact float64 distance, a tie
    to the even pattern; past the largest finite bf16 the candidate 0x7F80 reads as 2^128, so
    halfway and beyond round to inf as IEEE does. Finite inputs only."""
    x = np.asarray(x, dtype=np.float64)
    assert np.isfinite(x).all()
    with np.errstate(over="ignore"):
        c = bf16_rne_reference(x.astype(np.float32)).astype(np.int64) & 0x7FFF
    mag = np.abs(x)
    best, best_d = c, np.abs(bf16_value(c) - mag)
    for cand in (c - 1, c + 1):
        cand = np.clip(cand, 0, 0x7F80)
        d = np.abs(bf16_value(cand) - mag)
        take = (d < best_d) | ((d == best_d) & (cand % 2 == 0) & (best % 2 == 1))
        best, best_d = np.where(take, cand, best), np.where(take, d, best_d)
    return (best | np.where(np.signbit(x), 0x8000, 0)).astype(np.uint16)


def ulp_bf16(v):
    """The spacing of bf16 values at magnitude |v| (float64): 2^(e - 7) in binade [2^e, 2^(e+1)),
    2^-133 below 2^-126 (subnormals)."""
    e = np.floor(np.log2(np.maximum(np.abs(np.asarray(v, dtype=np.float64)), 2.0**-126)))
    return np.ldexp(1.0, (e - 7).astype(np.int32))


def assert_bf16_within(got_bits, ref, err32, what=""):
    """bf16 results (bit patterns) of a float32 computation rounded once, against the exact float64
    ``ref``: |got - ref| <= err32 + ulp_bf16(|ref| + err32) / 2, with err32 the float32
    computation's own bound (the value it rounded is within err32 of ref, so at most that far up
    in magnitude, and the rounding moves it at most half a bf16 ulp there)."""
    got = bf16_to_float32(got_bits).astype(np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    err32 = np.broadcast_to(np.asarray(err32, dtype=np.float64), ref.shape)
    assert got.shape == ref.shape, f"{what} shape {got.shape} != {ref.shape}"
    assert np.isfinite(got).all(), f"{what} has non-finite values"
    bound = err32 + ulp_bf16(np.abs(ref) + err32) / 2
    err = np.abs(got - ref)
    bad = err > bound
    if bad.any():
        i = np.unravel_index(np.argmax(err - bound), err.shape)
        raise AssertionError(f"{what}: {int(bad.sum())} of {err.size} beyond the bound; worst at "
                             f"{i}: |{got[i]!r} - {ref[i]!r}| = {err[i]:.3g} > {bound[i]:.3g}")


def gamma32(n):
    """gamma_n = n u / (1 - n u) for float32 (u = 2^-24): the bound on the relative error of n
    rounded float32 operations chained (Higham, section 3.1)."""
    u = 2.0**-24
    return n * u / (1 - n * u)


def specials(rng, shape):
    """float32 normals with zeros of both signs, NaN and infinities sprinkled in."""
    x = rng.standard_normal(shape).astype(np.float32)
    flat = x.reshape(-1)
    flat[::7] = 0.0
    flat[3::11] = -0.0
    flat[5::13] = np.nan
    flat[6::17] = -np.inf
    flat[8::19] = np.inf
    return x


def bf16_array(x):
    """float values rounded to bf16 (a NumPy bfloat16 array, ml_dtypes): test inputs."""
    import ml_dtypes
    return bf16_rne_reference(np.asarray(x, np.float32)).view(ml_dtypes.bfloat16)


def device_bits(d):
    """A bf16 DeviceArray's bits (uint16) on the host."""
    return d.get().view(np.uint16)


def bf16_wide(b):
    """A bf16 array's exact values as float32."""
    return bf16_to_float32(np.asarray(b).view(np.uint16))
