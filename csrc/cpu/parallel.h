// Thread-count control for the CPU kernels (OpenMP). One knob for the whole package:
// alexnet_ext.set_num_threads(n); the default is OpenMP's (all cores, or OMP_NUM_THREADS).
#pragma once
#include <omp.h>

namespace alexnet_ext::cpu {

inline int num_threads() { return omp_get_max_threads(); }
inline void set_num_threads(int n) { omp_set_num_threads(n); }

}  // namespace alexnet_ext::cpu
