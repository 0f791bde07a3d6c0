// Philox-4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random numbers: as easy as 1, 2, 3",
// SC 2011): a counter-based generator. The output is a pure function of a 128-bit counter and a
// 64-bit key, so element i of a random array can be drawn independently of every other element;
// results depend only on (key, counter), never on the thread count or the CUDA launch shape.
//
// One round maps the counter words (c0, c1, c2, c3) with key (k0, k1) to
//     (hi(M1*c2) ^ c1 ^ k0,  lo(M1*c2),  hi(M0*c0) ^ c3 ^ k1,  lo(M0*c0))
// with 32x32->64-bit products; the key is bumped by the Weyl constants (W0, W1) between rounds.
// Ten rounds, the variant whose known-answer vectors Random123 publishes.
//
// Usable from C++ and from CUDA: ALEXNET_EXT_HD is __host__ __device__ under nvcc.
#pragma once
#include <cstdint>

#include "host_device.h"  // ALEXNET_EXT_HD

namespace alexnet_ext {

struct Philox4x32 {
  uint32_t v[4];
};

namespace philox_detail {
constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // round multipliers
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // key schedule (golden ratio, sqrt(3)-1)

ALEXNET_EXT_HD inline void philox_round(uint32_t c[4], uint32_t k0, uint32_t k1) {
  const uint64_t p0 = static_cast<uint64_t>(kM0) * c[0];
  const uint64_t p1 = static_cast<uint64_t>(kM1) * c[2];
  const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
  const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
  const uint32_t c1 = c[1], c3 = c[3];
  c[0] = hi1 ^ c1 ^ k0;
  c[1] = lo1;
  c[2] = hi0 ^ c3 ^ k1;
  c[3] = lo0;
}
}  // namespace philox_detail

// The four 32-bit words for counter (c0, c1, c2, c3) and key (k0, k1).
ALEXNET_EXT_HD inline Philox4x32 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                               uint32_t k0, uint32_t k1) {
  uint32_t c[4] = {c0, c1, c2, c3};
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += philox_detail::kW0;
      k1 += philox_detail::kW1;
    }
    philox_detail::philox_round(c, k0, k1);
  }
  return Philox4x32{{c[0], c[1], c[2], c[3]}};
}

// The package's stream layout: 64-bit key = seed, 128-bit counter = (offset << 64) | block,
// i.e. words (lo(block), hi(block), lo(offset), hi(offset)). Element i of an array takes word
// i % 4 of block i / 4, so different offsets give disjoint streams whatever the array sizes.
ALEXNET_EXT_HD inline Philox4x32 philox_block(uint64_t seed, uint64_t offset, uint64_t block) {
  return philox4x32_10(static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32),
                       static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32),
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// A 32-bit word as a uniform in [0, 1): the top 24 bits times 2^-24, exact in float.
ALEXNET_EXT_HD inline float philox_uniform(uint32_t word) {
  return static_cast<float>(word >> 8) * (1.0f / 16777216.0f);
}

}  // namespace alexnet_ext
