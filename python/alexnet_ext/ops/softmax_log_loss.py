"""Softmax with multinomial logistic loss (the paper's objective) and top-k error counts.

Kernels: ``csrc/cpu/softmax_log_loss.cpp`` and ``csrc/cuda/softmax_log_loss.cu`` (for
``alexnet_ext.cuda.DeviceArray`` inputs). See ``csrc/softmax_log_loss.h``.

On the GPU the labels are range-checked inside the kernels, which record the first bad label and
how many there are. ``softmax_log_loss`` and ``top_k_errors`` read that record back (they wait
for the GPU anyway, to return host numbers); ``softmax_log_loss_undo`` never waits: a bad label
turns its row of the gradient into NaN and the error is raised at the next synchronisation (the
loss read ``float(PendingLoss)``, a ``get()``, ``cuda.synchronize()``). The errors are the CPU's.
A training loop that must not wait passes ``wait=False``: the loss then stays on the GPU as a
:class:`PendingLoss` (``float()`` of it waits), and a bad label shows up as a NaN loss there and
as the undo's error at that read.

bfloat16 (GPU only): the logits may be a bfloat16 DeviceArray (fc8's output in a bf16 net); they
are read widened, so loss and probs are the float32 op's on the widened logits, float32 both.
``softmax_log_loss_undo(..., out_dtype=alexnet_ext.cuda.bfloat16)`` returns the logits gradient
in bfloat16 (the float32 gradient rounded once).
"""
from __future__ import annotations

import numpy as np

from .. import _validate as V

__all__ = ["softmax_log_loss", "softmax_log_loss_undo", "top_k_errors", "PendingLoss"]


class PendingLoss:
    """A mean loss still on the GPU (``softmax_log_loss(..., wait=False)``): ``float(loss)``
    copies it back, waiting for the GPU then."""

    def __init__(self, total, n: int):
        self.total, self.n = total, n   # total: float32 DeviceArray (1,), the summed loss

    def __float__(self) -> float:
        return float(self.total.get()[0]) / self.n

    def __repr__(self):
        return f"PendingLoss(n={self.n})"


def _labels(labels, n: int, k: int, rows: str) -> np.ndarray:
    V.index_array(labels, "labels", 1, "(N,)")
    V.expect_shape(labels, (n,), "labels", f"one per row of {rows}")
    if V._is_device(labels):
        return labels  # range-checked by the GPU kernels, with the same error (see module doc)
    bad = np.flatnonzero((labels < 0) | (labels >= k))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"labels: labels[{i}] = {int(labels[i])} is outside [0, {k}) "
                         f"({bad.size} bad label{'s' if bad.size > 1 else ''} in all)")
    return labels


def softmax_log_loss(logits, labels, *, out=None, wait=True):
    """Softmax and the mean negative log-probability of the correct labels.

    Args:
        logits: (N, K) float32 scores (fc8's output), or a bfloat16 DeviceArray (math in float32).
        labels: (N,) int32 or int64, each in [0, K); a label outside raises ValueError naming it.
        out: optional (N, K) float32 target for probs (must not overlap logits or labels).
        wait: on the GPU, False returns the loss as a :class:`PendingLoss` without waiting for
            the GPU (labels are still range-checked there, but a bad one gives a NaN loss
            instead of an exception). No effect on the CPU.

    Returns:
        (loss, probs): loss a Python float,
        ``mean_n -log probs[n, labels[n]]``, computed as ``log sum_k exp(logits - max) + max -
        logits[label]`` in double (finite even when a probability underflows to 0);
        probs (N, K) float32, ``softmax(logits)`` per row, computed with the row maximum
        subtracted (no overflow for large logits). probs is what :func:`softmax_log_loss_undo`
        and :func:`top_k_errors` take.
    """
    V.real_array(logits, "logits", 2, "(N, K)")
    n, k = logits.shape
    _labels(labels, n, k, "logits")
    kern = V.backend(logits, labels, out)
    out = V.output(out, (n, k), logits=logits, labels=labels)
    if not wait and V._is_device(logits):
        from .. import cuda
        total = cuda.empty((1,), np.float32, device=logits.device)
        kern.softmax_log_loss_nosync(logits, labels, out, total)
        return PendingLoss(total, n), out
    total = kern.softmax_log_loss(logits, labels, out)
    return total / n, out


def softmax_log_loss_undo(probs, labels, *, scale=None, out=None, out_dtype=None):
    """Gradient of the loss w.r.t. the logits: ``(probs - onehot(labels)) * scale``.

    Args:
        probs: (N, K) float32, the probs :func:`softmax_log_loss` returned.
        labels: (N,) int32 or int64 in [0, K), the same labels.
        scale: a finite number; default ``1 / N``, which makes this the gradient of the *mean*
            loss that :func:`softmax_log_loss` returns. Use 1.0 for the summed loss.
        out: optional (N, K) target of out_dtype; ``out=probs`` (float32) overwrites probs in
            place.
        out_dtype: None (``out``'s dtype when given, else float32), ``numpy.float32`` or
            ``alexnet_ext.cuda.bfloat16`` (GPU only): each float32 gradient value rounded once.

    Returns:
        (N, K) gradient w.r.t. the logits (``out`` itself when given).
    """
    V.float_array(probs, "probs", 2, "(N, K)")
    n, k = probs.shape
    _labels(labels, n, k, "probs")
    scale = 1.0 / n if scale is None else V.real(scale, "scale")
    kern = V.backend(probs, labels, out)
    dt = V.out_dtype(out_dtype, "out_dtype", out, bf16=V._is_device(probs),
                     why="runs on the GPU only (DeviceArrays)")
    if dt == V.BF16:  # no in place: probs is float32
        out = V.output(out, (n, k), dtype=dt, probs=probs, labels=labels)
    else:
        out = V.elementwise_output(out, (n, k), may_be=("probs",), probs=probs, labels=labels)
    kern.softmax_log_loss_undo(probs, labels, out, scale)
    return out


def top_k_errors(probs, labels, ks=(1, 5)):
    """How many rows' label is not among their k highest scores, for each k in ``ks``.

    A label counts as in the top k iff fewer than k entries of its row are strictly greater
    than the label's own score. Ties therefore count in the label's favour (a row of all-equal
    scores is correct for every k); a NaN score for the label is always an error, NaN entries
    elsewhere are never greater. k > K is treated as K (an error only for a NaN label score).

    Args:
        probs: (N, K) float32 scores; probs from :func:`softmax_log_loss`, or logits (same
            order up to rounding), or the paper's 10-view average.
        labels: (N,) int32 or int64 in [0, K).
        ks: a tuple or list of ints >= 1; the paper reports top-1 and top-5.

    Returns:
        A tuple of ints, one error count per k (divide by N for the error rate).
    """
    V.float_array(probs, "probs", 2, "(N, K)")
    n, k = probs.shape
    _labels(labels, n, k, "probs")
    if not isinstance(ks, (tuple, list)) or len(ks) == 0:
        raise ValueError(f"ks: expected a non-empty tuple of ints, got {ks!r}")
    ks = [V.integer(v, f"ks[{i}]", 1) for i, v in enumerate(ks)]
    kern = V.backend(probs, labels)
    thresholds = [min(j, k) for j in ks]  # label in the top j <=> rank < min(j, K)
    if V._is_device(probs):
        return tuple(int(c) for c in kern.top_k_errors(probs, labels, thresholds))
    ranks = np.empty(n, dtype=np.int64)
    kern.label_ranks(probs, labels, ranks)
    return tuple(int(np.count_nonzero(ranks >= t)) for t in thresholds)
