"""fp32 -> tf32 / bf16 rounding in numpy, bit-exact with the device conversions of
csrc/cuda/mma.cuh (cvt.rna.tf32.f32, cvt.rn.bf16x2.f32; checked against the emulated ones in
tests/test_mma_layouts.py), for references computed on the rounded inputs.

  round_tf32(x): nearest tf32 (10 mantissa bits), ties away from zero, as float32; inf and NaN
                 keep their top 19 bits (a quiet NaN stays NaN)
  round_bf16(x): nearest bf16 (7 mantissa bits), ties to even, as float32; NaN -> 0x7fff
  bf16_bits(x) / bf16_to_float32(bits): the same rounding as uint16 bit patterns and back
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
