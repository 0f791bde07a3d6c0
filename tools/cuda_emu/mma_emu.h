// Tensor-core warp instructions for the CUDA emulator (included by cuda_runtime.h; used through
// csrc/cuda/mma.cuh): mma.sync m16n8k8 tf32 and m16n8k16 bf16 (row.col, fp32 accumulate),
// ldmatrix m8n8 .x1/.x2/.x4 (.trans) .b16, and the conversions cvt.rna.tf32.f32 and
// cvt.rn.bf16x2.f32.
//
// Warp collectives: every lane of the warp calls (mask 0xffffffff, as .sync.aligned requires;
// a lane that is missing or exited aborts, as the emulator's other warp operations do). Each lane
// deposits the address of its operand registers, reads what its fragment needs from the others,
// and meets the warp once more before returning, so that no lane's registers (or shared memory
// that ldmatrix reads) change before every lane has read them.
//
// Fragment layouts: PTX ISA, "Matrix fragments for mma.m16n8k8" (.tf32 figures) and "Matrix
// fragments for mma.m16n8k16 with floating point type" (.bf16 figures), and for ldmatrix the
// "ldmatrix fragment layout" figures of the ldmatrix section. With g = lane >> 2 (groupID) and
// t = lane % 4 (threadID_in_group):
//   m16n8k8 .tf32  A (16x8, row):  a[i] = A[g + 8*(i&1)][t + 4*(i>>1)]
//                  B (8x8, col):   b[i] = B[t + 4*i][g]
//   m16n8k16 .bf16 A (16x16, row): register i holds the pair (low half, high half)
//                                  A[g + 8*(i&1)][2t + 8*(i>>1) + {0, 1}]
//                  B (16x8, col):  register i holds B[2t + 8*i + {0, 1}][g]
//   C and D (16x8 f32), both:      c[i] = C[g + 8*(i>>1)][2t + (i&1)]
//   ldmatrix m8n8 .b16: lane l supplies the row address of row l%8 of matrix l/8; register j of
//   lane l holds matrix j's row g, columns 2t, 2t+1 (low half first); with .trans it holds
//   column g, rows 2t, 2t+1 of the stored matrix (i.e. the transpose's row g).
// tests/test_mma_layouts.py checks these against tables transcribed separately from the PTX ISA.
//
// Arithmetic model (the PTX ISA does not specify the order or the rounding inside an mma):
//   - tf32 operands: the mma reads only the top 19 bits (sign, exponent, 10 mantissa bits) of
//     each .b32 operand; an operand not produced by cvt.rna.tf32.f32 has its low 13 bits
//     ignored (truncated). Modelled as masking with 0xffffe000.
//   - every product a*b is exact (a double holds it: 11x11 or 8x8 significand bits), and the
//     sum of the k products and c is rounded once to fp32 (round to nearest even). Real tensor
//     cores align and truncate partial sums differently, so kernel tests must compare with
//     bounds, never bitwise, against references. Non-finite inputs follow IEEE double
//     arithmetic (NaN stays NaN, inf*0 = NaN, inf - inf = NaN). Subnormals are kept.
//   - cvt.rna.tf32.f32: finite x: add half an ulp of tf32 to the magnitude's bits and drop the
//     low 13 bits (round to nearest, ties away from zero; a carry runs into the exponent and
//     the largest finite values round to infinity). Inf and NaN: the low 13 bits are dropped,
//     so a quiet NaN stays NaN. This is exactly the SASS nvcc 13 emits for sm_80 and sm_90 (an
//     integer add of 0x1000 predicated on |x| < +INF, then a mask; tests/test_sass.py checks it).
//   - cvt.rn.bf16x2.f32 d, a, b: a to the upper half, b to the lower; round to nearest even,
//     subnormals kept, overflow to infinity, NaN -> the canonical NaN 0x7fff (sign dropped).
//     It is one hardware instruction (F2FP.BF16.F32.PACK_AB) whose NaN output is not documented:
//     the canonical NaN is an assumption (CUDA's host-side conversion does it); nothing here
//     depends on a NaN's bits.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace emu {

[[noreturn]] inline void mma_fail(const char* op, const char* what) {
  std::fprintf(stderr, "cuda_emu: %s: %s\n", op, what);
  std::fflush(stderr);
  std::abort();
}

// ----------------------------------------------------------------------------- conversions
inline uint32_t f32_bits(float x) { uint32_t u; std::memcpy(&u, &x, 4); return u; }
inline float bits_f32(uint32_t u) { float x; std::memcpy(&x, &u, 4); return x; }

inline uint32_t cvt_rna_tf32(float x) {
  uint32_t u = f32_bits(x);
  if ((u & 0x7f800000u) != 0x7f800000u) u += 0x1000u;  // finite: half a tf32 ulp, ties away
  return u & 0xffffe000u;
}

// fp32 -> bf16 bits, round to nearest even; NaN -> canonical 0x7fff.
inline uint16_t cvt_rn_bf16(float x) {
  const uint32_t u = f32_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
  const uint32_t lsb = (u >> 16) & 1u;
  return static_cast<uint16_t>((u + 0x7fffu + lsb) >> 16);  // carries into the exponent
}

inline float bf16_to_f32(uint16_t h) { return bits_f32(static_cast<uint32_t>(h) << 16); }

// ----------------------------------------------------------------------------- exact dot products
// sum(terms) rounded once to fp32. Every term is a double that holds its value exactly (a
// product of two tf32/bf16 values, or an fp32 c). Fast path: a double sum whose additions were
// all exact (checked with TwoSum), then one rounding. Otherwise a fixed-point accumulator
// wide enough for any such term: bit 0 weighs 2^-320 (products of the smallest subnormal
// tf32/bf16 values are >= 2^-272, fp32 c >= 2^-149), 11 limbs reach 2^384 (|sum| < 2^262).
class ExactSum {
 public:
  static float round(const double* terms, int n) {
    double s = terms[0];  // (IEEE: a sum of -0 terms is -0)
    bool exact = true, finite = std::isfinite(s);
    for (int i = 1; i < n; ++i) {
      const double t = terms[i];
      if (!std::isfinite(t)) finite = false;
      const double r = s + t;
      const double bv = r - s, err = (s - (r - bv)) + (t - bv);  // TwoSum
      if (err != 0) exact = false;
      s = r;
    }
    if (!finite) {  // IEEE semantics for inf/NaN: a plain double sum of the products
      double d = terms[0];
      for (int i = 1; i < n; ++i) d += terms[i];
      return static_cast<float>(d);
    }
    if (exact) return static_cast<float>(s);  // one rounding (double -> float is RNE)
    ExactSum acc;
    for (int i = 0; i < n; ++i) acc.add(terms[i]);
    return acc.to_float();
  }

 private:
  static constexpr int kLimbs = 11, kBias = 320;
  uint64_t limb_[kLimbs] = {};  // two's complement

  void add(double t) {
    if (t == 0) return;
    int e;
    const double m = std::frexp(std::fabs(t), &e);  // |t| = m * 2^e, m in [0.5, 1)
    const uint64_t mant = static_cast<uint64_t>(std::ldexp(m, 53));  // exact: 53 bits
    const int shift = e - 53 + kBias;  // bit position of mant's lsb
    if (shift < 0 || shift + 53 > 64 * kLimbs - 2) mma_fail("mma", "term outside the exact range");
    uint64_t v[kLimbs] = {};
    const int w = shift / 64, b = shift % 64;
    v[w] = mant << b;
    if (b != 0 && w + 1 < kLimbs) v[w + 1] = mant >> (64 - b);
    if (t < 0) {  // two's complement negate
      unsigned carry = 1;
      for (int i = 0; i < kLimbs; ++i) {
        const uint64_t x = ~v[i] + carry;
        carry = carry && x == 0;
        v[i] = x;
      }
    }
    unsigned carry = 0;
    for (int i = 0; i < kLimbs; ++i) {
      const unsigned __int128 s = static_cast<unsigned __int128>(limb_[i]) + v[i] + carry;
      limb_[i] = static_cast<uint64_t>(s);
      carry = static_cast<unsigned>(s >> 64);
    }
  }

  bool bit(const uint64_t* m, int i) const { return m[i / 64] >> (i % 64) & 1u; }

  float to_float() const {
    uint64_t m[kLimbs];
    std::memcpy(m, limb_, sizeof(m));
    const bool neg = m[kLimbs - 1] >> 63;
    if (neg) {
      unsigned carry = 1;
      for (int i = 0; i < kLimbs; ++i) {
        const uint64_t x = ~m[i] + carry;
        carry = carry && x == 0;
        m[i] = x;
      }
    }
    int top = -1;
    for (int i = 64 * kLimbs - 1; i >= 0; --i)
      if (bit(m, i)) { top = i; break; }
    if (top < 0) return neg ? -0.f : 0.f;
    // fp32 keeps 24 bits below and including `top`, but nothing below 2^-149 (subnormals).
    int lsb = top - 23;
    if (lsb < kBias - 149) lsb = kBias - 149;
    uint64_t q = 0;  // the kept bits, as an integer multiple of 2^(lsb - kBias)
    for (int i = top; i >= lsb; --i) q = q << 1 | bit(m, i);
    const bool guard = lsb >= 1 && bit(m, lsb - 1);
    bool sticky = false;
    for (int i = lsb - 2; i >= 0 && !sticky; --i) sticky = bit(m, i);
    if (guard && (sticky || (q & 1u))) ++q;  // round to nearest even (a carry is fine: exact)
    const double mag = std::ldexp(static_cast<double>(q), lsb - kBias);
    const float f = static_cast<float>(mag);  // exact, or beyond FLT_MAX -> inf
    return neg ? -f : f;
  }
};

// ----------------------------------------------------------------------------- warp plumbing
// Deposits this lane's pointer, returns all 32 (full warp). `tag` names the instruction and its
// shape: lanes that meet here from different warp instructions (divergent code; undefined on a
// GPU) abort instead of mixing their operands. Tag in bits 56-63 (user pointers are < 2^56).
inline void warp_gather_ptrs(const void* mine, const void** all, const char* op, unsigned tag) {
  const uint64_t p = reinterpret_cast<uint64_t>(mine);
  if (p >> 56) mma_fail(op, "pointer with high bits set");
  uint64_t v[32];
  // Full mask: warp_exchange returns only when all 32 lanes deposited (or aborts).
  warp_exchange(0xffffffffu, p | static_cast<uint64_t>(tag) << 56, v);
  for (int l = 0; l < 32; ++l) {
    if (v[l] >> 56 != tag)
      mma_fail(op, "lanes of one warp are at different warp instructions (or shapes) at once");
    all[l] = reinterpret_cast<const void*>(v[l] & ((uint64_t(1) << 56) - 1));
  }
}
inline void warp_done() {
  uint64_t v[32];
  warp_exchange(0xffffffffu, 0, v);
}

struct MmaRegs {
  uint32_t a[4], b[2];
  float c[4];
};

// D = A*B + C over K (8 for tf32, 16 for bf16); each lane computes its own four D elements.
template <int K>
inline void mma_warp(float d[4], const uint32_t a[4], const uint32_t b[2], const float c[4],
                     const char* op) {
  MmaRegs mine;
  std::memcpy(mine.a, a, sizeof(mine.a));
  std::memcpy(mine.b, b, sizeof(mine.b));
  std::memcpy(mine.c, c, sizeof(mine.c));
  const void* p[32];
  warp_gather_ptrs(&mine, p, op, K == 8 ? 1u : 2u);
  auto regs = [&](int lane) { return static_cast<const MmaRegs*>(p[lane]); };
  const int me = lane_id(), g = me >> 2, t = me & 3;
  // This lane's D elements need rows g and g+8 of A and columns 2t and 2t+1 of B.
  double arow[2][K], bcol[2][K];
  for (int h = 0; h < 2; ++h)
    for (int k = 0; k < K; ++k) {
      if (K == 8) {  // tf32: a[i] = A[g + 8*(i&1)][t + 4*(i>>1)], b[i] = B[t + 4*i][g]
        arow[h][k] = bits_f32(regs(g * 4 + k % 4)->a[h | (k / 4) << 1] & 0xffffe000u);
        bcol[h][k] = bits_f32(regs((2 * t + h) * 4 + k % 4)->b[k / 4] & 0xffffe000u);
      } else {  // bf16: register i of A holds A[g + 8*(i&1)][2t + 8*(i>>1) + {0,1}] (low, high);
                // register i of B holds B[2t + 8*i + {0,1}][g]
        const int sh = 16 * (k % 2);
        arow[h][k] = bf16_to_f32(static_cast<uint16_t>(
            regs(g * 4 + (k % 8) / 2)->a[h | (k / 8) << 1] >> sh));
        bcol[h][k] = bf16_to_f32(static_cast<uint16_t>(
            regs((2 * t + h) * 4 + (k % 8) / 2)->b[k / 8] >> sh));
      }
    }
  double terms[K + 1];
  for (int i = 0; i < 4; ++i) {  // d[i] = D[g + 8*(i>>1)][2t + (i&1)]
    for (int k = 0; k < K; ++k) terms[k] = arow[i >> 1][k] * bcol[i & 1][k];  // exact
    terms[K] = mine.c[i];
    d[i] = ExactSum::round(terms, K + 1);
  }
  warp_done();
}

// ldmatrix .m8n8 .b16, `n` matrices: lane l (l < 8n) supplies row l%8 of matrix l/8.
inline void ldmatrix_warp(uint32_t* r, int n, bool trans, const void* row_addr, const char* op) {
  const void* p[32];
  warp_gather_ptrs(row_addr, p, op, 16u + 2u * static_cast<unsigned>(n) + (trans ? 1u : 0u));
  for (int l = 0; l < 8 * n; ++l)
    if (p[l] == nullptr || reinterpret_cast<uintptr_t>(p[l]) % 16 != 0)
      mma_fail(op, "a row address is null or not 16-byte aligned");
  auto elem = [&](int matrix, int row, int col) -> uint32_t {
    uint16_t h;
    std::memcpy(&h, static_cast<const char*>(p[matrix * 8 + row]) + 2 * col, 2);
    return h;
  };
  const int me = lane_id(), g = me >> 2, t = me & 3;
  for (int j = 0; j < n; ++j)
    r[j] = trans ? elem(j, 2 * t, g) | elem(j, 2 * t + 1, g) << 16
                 : elem(j, g, 2 * t) | elem(j, g, 2 * t + 1) << 16;
  warp_done();
}

}  // namespace emu
