// CPU softmax / log loss / top-k ranks: OpenMP over rows. Each row is computed by one thread
// in a fixed order, and the per-row losses are summed serially, so results do not depend on the
// thread count.
#include <cmath>
#include <vector>

#include "softmax_log_loss.h"

namespace alexnet_ext::cpu {

namespace {

constexpr int64_t kParallelMin = 1 << 15;  // elements; below this one thread is faster

template <class L>
double loss_impl(const float* logits, const L* labels, float* probs, int64_t n, int64_t k) {
  std::vector<double> row_loss(n);
#pragma omp parallel for schedule(static) if (n * k >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float* x = logits + i * k;
    float* p = probs + i * k;
    float m = x[0];
    for (int64_t j = 1; j < k; ++j) m = x[j] > m ? x[j] : m;
    double s = 0.0;
    for (int64_t j = 0; j < k; ++j) {
      const float e = std::exp(x[j] - m);
      p[j] = e;
      s += e;
    }
    const float inv = static_cast<float>(1.0 / s);
    for (int64_t j = 0; j < k; ++j) p[j] *= inv;
    row_loss[i] = std::log(s) + static_cast<double>(m) - static_cast<double>(x[labels[i]]);
  }
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) total += row_loss[i];
  return total;
}

template <class L>
void undo_impl(const float* probs, const L* labels, float* grad, int64_t n, int64_t k,
               float scale) {
#pragma omp parallel for schedule(static) if (n * k >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float* p = probs + i * k;
    float* g = grad + i * k;
    const int64_t label = labels[i];
    for (int64_t j = 0; j < k; ++j) g[j] = (p[j] - (j == label ? 1.f : 0.f)) * scale;
  }
}

template <class L>
void ranks_impl(const float* probs, const L* labels, int64_t* ranks, int64_t n, int64_t k) {
#pragma omp parallel for schedule(static) if (n * k >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const float* p = probs + i * k;
    const float t = p[labels[i]];
    if (std::isnan(t)) {  // a NaN score is never a correct answer
      ranks[i] = k;
      continue;
    }
    int64_t above = 0;
    for (int64_t j = 0; j < k; ++j) above += p[j] > t;
    ranks[i] = above;
  }
}

}  // namespace

double softmax_log_loss(const float* logits, const int32_t* labels, float* probs, int64_t n,
                        int64_t k) {
  return loss_impl(logits, labels, probs, n, k);
}
double softmax_log_loss(const float* logits, const int64_t* labels, float* probs, int64_t n,
                        int64_t k) {
  return loss_impl(logits, labels, probs, n, k);
}
void softmax_log_loss_undo(const float* probs, const int32_t* labels, float* grad, int64_t n,
                           int64_t k, float scale) {
  undo_impl(probs, labels, grad, n, k, scale);
}
void softmax_log_loss_undo(const float* probs, const int64_t* labels, float* grad, int64_t n,
                           int64_t k, float scale) {
  undo_impl(probs, labels, grad, n, k, scale);
}
void label_ranks(const float* probs, const int32_t* labels, int64_t* ranks, int64_t n, int64_t k) {
  ranks_impl(probs, labels, ranks, n, k);
}
void label_ranks(const float* probs, const int64_t* labels, int64_t* ranks, int64_t n, int64_t k) {
  ranks_impl(probs, labels, ranks, n, k);
}

}  // namespace alexnet_ext::cpu
