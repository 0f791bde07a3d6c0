// The output loop of the CPU pooling forwards (max_pool.cpp, avg_pool.cpp): one output row per
// OpenMP iteration over (plane, output row) -- in NHWC over (image, output row), the channels
// innermost within each output pixel so reads and writes run along memory -- each output's window
// clipped to the image by pool_window (pool.h).
#pragma once
#include <cstdint>

#include "pool.h"

namespace alexnet_ext::cpu {

// Calls f(plane, o, y0, y1, x0, x1) for every output: plane points at its input plane's first
// element (pixel (iy, ix) at plane[iy * g.row_step(g.w) + ix * g.col_step()]), o is its flat
// index in the output (in the layout of g), and rows [y0, y1) x columns [x0, x1) its window.
template <class F>
void for_each_pool_window(const float* x, const PoolGeometry& g, F f) {
  const int64_t outer = g.nhwc ? g.n : g.planes();  // NHWC: the channels loop inside
  const int64_t inner = g.nhwc ? g.c : 1;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t pl = 0; pl < outer; ++pl) {
    for (int64_t oy = 0; oy < g.ho; ++oy) {
      const int64_t row = (pl * g.ho + oy) * g.wo;
      int64_t y0, y1;
      pool_window(oy, g.kh, g.sh, g.ph, g.h, y0, y1);
      for (int64_t ox = 0; ox < g.wo; ++ox) {
        int64_t x0, x1;
        pool_window(ox, g.kw, g.sw, g.pw, g.w, x0, x1);
        for (int64_t k = 0; k < inner; ++k)
          f(x + pl * g.h * g.w * inner + k, (row + ox) * inner + k, y0, y1, x0, x1);
      }
    }
  }
}

}  // namespace alexnet_ext::cpu
