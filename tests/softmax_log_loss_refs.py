"""Shared by test_softmax_log_loss.py and test_softmax_log_loss_cuda.py: the softmax log loss
references, cases and data makers."""
import numpy as np

from alexnet_ext import ops


def ref_softmax(z):
    z = np.float64(z)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def ref_loss(z, labels):
    z = np.float64(z)
    m = z.max(axis=1)
    lse = np.log(np.exp(z - m[:, None]).sum(axis=1)) + m
    return float(np.mean(lse - z[np.arange(len(labels)), labels]))


def ref_top_k_errors(probs, labels, k):
    """argsort reference: the label is in the top k if it is among the k largest, counting
    entries tied with the label as below it (a stable sort on (-score, not-the-label))."""
    n, kk = probs.shape
    errors = 0
    for i in range(n):
        is_label = np.arange(kk) == labels[i]
        order = np.lexsort((~is_label, -np.float64(probs[i])))  # primary key last
        errors += labels[i] not in order[:min(k, kk)]
    return errors


CASES = {  # (N, K)
    "single": (1, 2),
    "batch1_k1000": (1, 1000),
    "odd": (7, 13),
    "alexnet_batch": (128, 1000),
    "k1": (5, 1),
}


def make_data(rng, case, scale=3.0, dtype=np.int64):
    n, k = case
    z = (scale * rng.standard_normal((n, k))).astype(np.float32)
    labels = rng.integers(0, k, n).astype(dtype)
    return z, labels


def cpu_case(rng, case, dtype):
    """Logits, labels of ``dtype`` and the CPU's softmax_log_loss of them (loss, probs)."""
    z, labels = make_data(rng, case, dtype=dtype)
    loss, probs = ops.softmax_log_loss(z, labels)
    return z, labels, loss, probs

