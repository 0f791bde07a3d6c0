// Tensor-core building blocks for the conv kernels (sm_80+): warp-wide mma.sync, ldmatrix and
// the fp32 -> tf32/bf16 conversions, each one inline-PTX instruction under nvcc.
//   - mma_m16n8k8_tf32:  D(16x8) = A(16x8, row) * B(8x8, col) + C, tf32 operands, fp32 accumulate
//   - mma_m16n8k16_bf16: D(16x8) = A(16x16, row) * B(16x8, col) + C, bf16 pairs, fp32 accumulate
//   - ldmatrix_x{1,2,4}[_trans]: 1, 2 or 4 8x8 b16 matrices from shared memory (transposed)
// Fragment layouts (which lane and register holds which element) are those of the PTX ISA,
// "Matrix fragments for mma.m16n8k8" / "mma.m16n8k16" and the ldmatrix figures; they are
// written out in tools/cuda_emu/mma_emu.h and checked by tests/test_mma_layouts.py. All 32
// lanes of a warp must call each warp function (converged, as .sync.aligned requires).
// Under ALEXNET_EXT_CUDA_EMULATION each function is the emulator's warp collective
// (tools/cuda_emu/mma_emu.h, which states its arithmetic model: an emulated mma rounds once,
// real tensor cores do not, so kernel tests compare against references with error bounds).
// Before sm_80 the warp functions trap: the dispatcher must not select tensor-core kernels there.
//
// Feeding the mma from shared memory (lane l; tested in tests/test_mma_layouts.py):
//   bf16, A 16x16 row-major [m][k]:  ldmatrix_x4(a, &A[l % 16][(l / 16) * 8])
//         B 16x8 stored [k][n]:      ldmatrix_x2_trans(b, &B[l % 16][0])
//         B stored [n][k]:           ldmatrix_x2(b, &Bt[l % 8][((l / 8) % 2) * 8])
//   tf32 (fp32 words as b16 pairs), A 16x8 row-major: ldmatrix_x4(a, &A[l % 16][(l / 16) * 4])
//         B stored [n][k]:           ldmatrix_x2(b, &Bt[l % 8][((l / 8) % 2) * 4])
//   (tf32 B stored [k][n] has no ldmatrix form: .trans moves 16-bit elements.)
// Each row address must be 16-byte aligned; swizzle the row's 16-byte chunk, not within it.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace alexnet_ext::cuda {

// ----------------------------------------------------------------------------- conversions
// fp32 -> tf32 (cvt.rna.tf32.f32): round to nearest, ties away from zero; the result is fp32
// bits with the low 13 mantissa bits zero (a valid float, and an mma tf32 operand).
__device__ __forceinline__ uint32_t to_tf32(float x) {
#if defined(ALEXNET_EXT_CUDA_EMULATION)
  return emu::cvt_rna_tf32(x);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
#else
  __trap();
  return 0;
#endif
}

// Two fp32 -> one register of two bf16 (cvt.rn.bf16x2.f32): round to nearest even, `lo` in
// bits 0-15 (the element with the lower index in a fragment), `hi` in bits 16-31.
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
#if defined(ALEXNET_EXT_CUDA_EMULATION)
  return static_cast<uint32_t>(emu::cvt_rn_bf16(lo)) |
         static_cast<uint32_t>(emu::cvt_rn_bf16(hi)) << 16;
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  uint32_t r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));  // first source: upper half
  return r;
#else
  __trap();
  return 0;
#endif
}

// bf16 bits <-> fp32 on host and device (no cuda_bf16.h). float_to_bf16_bits: round to nearest
// even, overflow to infinity, NaN -> canonical NaN 0x7fff (as the emulated cvt).
__host__ __device__ __forceinline__ float bf16_bits_to_float(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

__host__ __device__ __forceinline__ uint16_t float_to_bf16_bits(float x) {
#if defined(__CUDA_ARCH__)
  const uint32_t u = __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, 4);
#endif
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);  // RNE; carries are right
}

// ----------------------------------------------------------------------------- mma.sync
// asm volatile: a warp-collective instruction must not be sunk into a branch that only some
// lanes take (a plain asm counts as a pure per-thread function the compiler may move).
// One body for both shapes: K = 8 is m16n8k8 with tf32 operands (tf32 bits from to_tf32; the
// hardware ignores the low 13 bits of unconverted fp32 bits), K = 16 is m16n8k16 with bf16
// pairs (pack_bf16x2 or ldmatrix, the lower-index element in the low half).
#define ALEXNET_EXT_MMA(TYPES)                                                          \
  asm volatile("mma.sync.aligned." TYPES                                                \
               " {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};\n" \
               : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])                         \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]),      \
                 "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]))

template <int K>
__device__ __forceinline__ void mma_m16n8(float d[4], const uint32_t a[4], const uint32_t b[2],
                                          const float c[4]) {
  static_assert(K == 8 || K == 16, "m16n8k8 (tf32) or m16n8k16 (bf16)");
#if defined(ALEXNET_EXT_CUDA_EMULATION)
  emu::mma_warp<K>(d, a, b, c, K == 8 ? "mma.sync.m16n8k8.tf32" : "mma.sync.m16n8k16.bf16");
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (K == 8)
    ALEXNET_EXT_MMA("m16n8k8.row.col.f32.tf32.tf32.f32");
  else
    ALEXNET_EXT_MMA("m16n8k16.row.col.f32.bf16.bf16.f32");
#else
  __trap();
#endif
}
#undef ALEXNET_EXT_MMA

__device__ __forceinline__ void mma_m16n8k8_tf32(float d[4], const uint32_t a[4],
                                                 const uint32_t b[2], const float c[4]) {
  mma_m16n8<8>(d, a, b, c);
}
__device__ __forceinline__ void mma_m16n8k16_bf16(float d[4], const uint32_t a[4],
                                                  const uint32_t b[2], const float c[4]) {
  mma_m16n8<16>(d, a, b, c);
}

// ----------------------------------------------------------------------------- ldmatrix
// Lane i passes the shared-memory address of row i % 8 of matrix i / 8 (16 bytes, 16-byte
// aligned); x1 reads lanes 0-7's addresses, x2 lanes 0-15, x4 all. Register j receives matrix j.
// Like any shared-memory read of other threads' data, a __syncthreads/__syncwarp must order the
// stores before it (the asm has no memory clobber, as CUTLASS's).
// One body for N = 1, 2, 4 matrices, plain or .trans (TRANS).
#define ALEXNET_EXT_LDMATRIX(T)                                                            \
  if constexpr (N == 1)                                                                    \
    asm volatile("ldmatrix.sync.aligned.m8n8.x1" T ".shared.b16 {%0}, [%1];\n"           \
                 : "=r"(r[0]) : "r"(addr));                                                \
  else if constexpr (N == 2)                                                               \
    asm volatile("ldmatrix.sync.aligned.m8n8.x2" T ".shared.b16 {%0, %1}, [%2];\n"       \
                 : "=r"(r[0]), "=r"(r[1]) : "r"(addr));                                    \
  else                                                                                     \
    asm volatile("ldmatrix.sync.aligned.m8n8.x4" T ".shared.b16 {%0, %1, %2, %3}, [%4];\n" \
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr))

template <int N, bool TRANS>
__device__ __forceinline__ void ldmatrix(uint32_t* r, const void* smem_row) {
  static_assert(N == 1 || N == 2 || N == 4, "ldmatrix .x1, .x2 or .x4");
#if defined(ALEXNET_EXT_CUDA_EMULATION)
  constexpr const char* names[2][3] = {{"ldmatrix.x1", "ldmatrix.x2", "ldmatrix.x4"},
                                       {"ldmatrix.x1.trans", "ldmatrix.x2.trans",
                                        "ldmatrix.x4.trans"}};
  emu::ldmatrix_warp(r, N, TRANS, smem_row, names[TRANS][N / 2]);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem_row));
  if constexpr (TRANS) {
    ALEXNET_EXT_LDMATRIX(".trans");
  } else {
    ALEXNET_EXT_LDMATRIX("");
  }
#else
  __trap();
#endif
}
#undef ALEXNET_EXT_LDMATRIX

// The named forms the kernels and tests call.
__device__ __forceinline__ void ldmatrix_x1(uint32_t r[1], const void* p) { ldmatrix<1, false>(r, p); }
__device__ __forceinline__ void ldmatrix_x2(uint32_t r[2], const void* p) { ldmatrix<2, false>(r, p); }
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void* p) { ldmatrix<4, false>(r, p); }
__device__ __forceinline__ void ldmatrix_x1_trans(uint32_t r[1], const void* p) { ldmatrix<1, true>(r, p); }
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t r[2], const void* p) { ldmatrix<2, true>(r, p); }
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void* p) { ldmatrix<4, true>(r, p); }

// ----------------------------------------------------------------------------- cp.async
// The conv kernels' global -> shared copies (conv_mma.cu): cp.async from sm_80, plain copies
// under the emulator (and in compilation passes that never run them).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800 && !defined(ALEXNET_EXT_CUDA_EMULATION)
#define CONV_MMA_ASYNC 1
__device__ __forceinline__ unsigned smem_u32(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}
#endif

// BYTES = 4 (through L1) or 16 (L2 only; both sides 16-byte aligned), zero-filled when !pred
// (a valid address is passed regardless).
template <int BYTES>
__device__ __forceinline__ void cpz(char* s, const void* g, bool pred) {
#ifdef CONV_MMA_ASYNC
  if constexpr (BYTES == 16)
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(s)), "l"(g),
                 "r"(pred ? 16 : 0)
                 : "memory");
  else
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_u32(s)), "l"(g),
                 "r"(pred ? 4 : 0)
                 : "memory");
#else
  using W = std::conditional_t<BYTES == 16, float4, uint32_t>;
  *reinterpret_cast<W*>(s) = pred ? *static_cast<const W*>(g) : W{};
#endif
}

// 16 bytes, both sides 16-byte aligned, L2 only.
__device__ __forceinline__ void cp16(char* s, const void* g) {
#ifdef CONV_MMA_ASYNC
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_u32(s)), "l"(g)
               : "memory");
#else
  *reinterpret_cast<float4*>(s) = *static_cast<const float4*>(g);
#endif
}

__device__ __forceinline__ void cp_commit() {
#ifdef CONV_MMA_ASYNC
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

// Waits until at most N of this thread's committed groups are in flight.
template <int N>
__device__ __forceinline__ void cp_wait() {
#ifdef CONV_MMA_ASYNC
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

}  // namespace alexnet_ext::cuda
