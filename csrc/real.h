// The element types of the float ops (relu, add, pooling): float32, or bfloat16 carried as its
// uint16_t bit pattern (cast.h). A kernel templated over T widens each loaded element exactly
// (to_f32), computes in float32 and rounds each stored result once (from_f32<T>: identity for
// float, round to nearest even for bf16), so a bf16 op is the float32 op on the widened inputs
// followed by one rounding of every output.
#pragma once
#include <cstdint>

#include "cast.h"
#include "host_device.h"

namespace alexnet_ext {

ALEXNET_EXT_HD inline float to_f32(float v) { return v; }
ALEXNET_EXT_HD inline float to_f32(uint16_t b) { return float_from_bf16(b); }

template <class T> ALEXNET_EXT_HD inline T from_f32(float v);
template <> ALEXNET_EXT_HD inline float from_f32<float>(float v) { return v; }
template <> ALEXNET_EXT_HD inline uint16_t from_f32<uint16_t>(float v) { return bf16_from_float(v); }

}  // namespace alexnet_ext
