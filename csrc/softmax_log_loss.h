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
// bf16 logits (GPU only, uint16_t bits): each read widened exactly, everything else as above in
// float32 / double (probs stay float32); the undo's grad may be bf16 (each value rounded once).
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

#ifdef ALEXNET_EXT_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/report.h"

// The same on device pointers, queued on `stream` (cuda/softmax_log_loss.cu). Labels are
// range-checked in the kernels: a bad one is recorded in `bad` and its row's loss (or gradient)
// becomes NaN; nothing is indexed with it.
namespace alexnet_ext::cuda {
// L (the label type) is int32_t or int64_t, X (the logits) and G (the gradient) float or
// uint16_t (bf16), instantiated there.
// row_loss: scratch of n doubles. The summed loss goes to *total (double) and/or *total_f
// (float); either may be null. Deterministic (fixed reduction order), not the CPU's bits.
template <class X, class L>
void softmax_log_loss(const X* logits, const L* labels, float* probs, int64_t n, int64_t k,
                      double* row_loss, double* total, float* total_f, BadValues* bad,
                      cudaStream_t stream);
template <class L, class G>
void softmax_log_loss_undo(const float* probs, const L* labels, G* grad, int64_t n, int64_t k,
                           float scale, BadValues* bad, cudaStream_t stream);
// ranks (may be null): as cpu::label_ranks. counts[i] += #{rows : rank >= thresholds[i]} for
// i < num_thresholds (counts must start at 0; thresholds and counts live on the device).
template <class L>
void label_ranks(const float* probs, const L* labels, int64_t n, int64_t k, int64_t* ranks,
                 const int64_t* thresholds, unsigned long long* counts, int num_thresholds,
                 BadValues* bad, cudaStream_t stream);
}  // namespace alexnet_ext::cuda
#endif
