// The channel walk of the CPU response norm (response_norm.cpp, both directions, and the fused
// forward of response_norm_max_pool.cpp): per pixel a running double sum over a window of
// channels, one channel entering and one leaving per step, so each step costs two passes over
// the pixels whatever the window size.
#pragma once
#include <algorithm>
#include <cstdint>

namespace alexnet_ext::cpu {

// For i = 0 .. c-1 in order: leaves sum[q] (q < len) = the sum of term(ch, q) over the channels
// ch of [i - below, i + above] clipped to [0, c - 1], then calls step(i). A NaN or inf that
// entered a running sum would stay after its channel left, so where the sum is not finite it is
// recomputed over the current window; the check is a separate vectorisable pass and the
// recompute runs only for pixels that see a non-finite value. Each pass over the pixels is a
// branch-free loop, so a term chosen once per walk (a template parameter) vectorises.
template <class Term, class Step>
void walk_channel_windows(double* sum, int64_t len, int64_t c, int64_t below, int64_t above,
                          Term term, Step step) {
  std::fill(sum, sum + len, 0.0);
  auto add = [&](int64_t ch, double sign) {
    for (int64_t q = 0; q < len; ++q) sum[q] += sign * term(ch, q);
  };
  for (int64_t j = 0; j < std::min(above, c); ++j) add(j, 1.0);
  for (int64_t i = 0; i < c; ++i) {
    if (i + above < c) add(i + above, 1.0);
    if (i - below - 1 >= 0) add(i - below - 1, -1.0);
    bool any = false;
    for (int64_t q = 0; q < len; ++q) any |= !(sum[q] - sum[q] == 0.0);
    if (any) {
      const int64_t lo = std::max<int64_t>(i - below, 0), hi = std::min(i + above, c - 1);
      for (int64_t q = 0; q < len; ++q) {
        if (sum[q] - sum[q] == 0.0) continue;
        double s = 0.0;
        for (int64_t ch = lo; ch <= hi; ++ch) s += term(ch, q);
        sum[q] = s;
      }
    }
    step(i);
  }
}

}  // namespace alexnet_ext::cpu
