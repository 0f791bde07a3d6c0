// Softmax + multinomial logistic loss (the paper's objective: maximise the mean log-probability
// of the correct label over a K-way softmax). logits and probs are dense (N, K) float32, labels
// (N,) int32 or int64, each in [0, K) (a precondition: the binding checks it first).
//   probs[n, :]   = exp(logits[n, :] - m_n) / s_n,   m_n = max_k logits[n, k],
//                                                    s_n = sum_k exp(logits[n, k] - m_n)
//   returns       sum_n -log probs[n, label_n] = sum_n (log s_n + m_n - logits[n, label_n]),
//                 in double, summed over rows in order (the log-sum-exp form stays finite when
//                 the label's probability underflows to 0 in float32)
//   undo:         grad[n, k] = (probs[n, k] - [k == label_n]) * scale   (grad may be probs)
//   label_ranks:  rank[n] = #{k : probs[n, k] > probs[n, label_n]}, or K when that
//                 probability is NaN; the label is in the top j iff rank[n] < j.
// Results do not depend on the thread count.
#pragma once
#include <cstdint>

namespace alexnet_ext::cpu {
double softmax_log_loss(const float* logits, const int32_t* labels, float* probs, int64_t n,
                        int64_t k);
double softmax_log_loss(const float* logits, const int64_t* labels, float* probs, int64_t n,
                        int64_t k);
void softmax_log_loss_undo(const float* probs, const int32_t* labels, float* grad, int64_t n,
                           int64_t k, float scale);
void softmax_log_loss_undo(const float* probs, const int64_t* labels, float* grad, int64_t n,
                           int64_t k, float scale);
void label_ranks(const float* probs, const int32_t* labels, int64_t* ranks, int64_t n, int64_t k);
void label_ranks(const float* probs, const int64_t* labels, int64_t* ranks, int64_t n, int64_t k);
}  // namespace alexnet_ext::cpu
