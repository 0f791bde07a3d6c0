// The layout argument of the pooling and response-norm bindings ("NCHW" or "NHWC", as conv's) and
// the shape of an (n, c, h, w) array in it: shapes are checked in the layout's terms here (memory
// safety); alexnet_ext.ops._pool says the same with better messages.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "python/view.h"

namespace alexnet_ext::binding {

inline bool pool_nhwc(const std::string& layout) {
  if (layout != "NCHW" && layout != "NHWC")
    throw py::value_error("layout: expected 'NCHW' or 'NHWC', got '" + layout + "'");
  return layout == "NHWC";
}

inline std::vector<int64_t> layout_shape(int64_t n, int64_t c, int64_t h, int64_t w, bool nhwc) {
  return nhwc ? std::vector<int64_t>{n, h, w, c} : std::vector<int64_t>{n, c, h, w};
}

// (n, c, h, w) of a 4-d array in the layout.
struct Dims {
  int64_t n, c, h, w;
};
inline Dims layout_dims(const View& a, bool nhwc) {
  const auto& s = a.shape;
  return nhwc ? Dims{s[0], s[3], s[1], s[2]} : Dims{s[0], s[1], s[2], s[3]};
}

}  // namespace alexnet_ext::binding
