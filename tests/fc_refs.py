"""Shared by test_fc.py and test_fc_cuda.py: the fully connected layer references, cases and data
makers."""
import numpy as np

from helpers import assert_close


def ref_fc(x, w, b=None):
    y = np.einsum("nd,fd->nf", np.float64(x), np.float64(w))
    return y if b is None else y + np.float64(b)[None, :]


def ref_fc_undo(gy, x, w):
    gy, x, w = np.float64(gy), np.float64(x), np.float64(w)
    return (np.einsum("nf,fd->nd", gy, w), np.einsum("nf,nd->fd", gy, x), gy.sum(axis=0))


# (N, D, F)
CASES = {
    "tiny": (1, 1, 1),
    "batch1": (1, 7, 13),
    "odd": (3, 7, 13),
    "fc8_like": (5, 96, 1000),
    "large_d_small_n": (2, 9216, 40),
    "wide_f_small_d": (17, 5, 301),
    "parallel_slabs": (33, 515, 257),
}


def make_data(rng, case, bias=True):
    n, d, f = case
    x = rng.standard_normal((n, d)).astype(np.float32)
    w = rng.normal(0, 1 / np.sqrt(d), (f, d)).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32) if bias else None
    return x, w, b


def undo_data(rng, case):
    """x, w and a random grad_y of fc's output shape."""
    x, w, _ = make_data(rng, case)
    gy = rng.standard_normal((x.shape[0], w.shape[0])).astype(np.float32)
    return x, w, gy


def assert_undo_matches_reference(grads, gy, x, w):
    """fc_undo's (grad_x, grad_w, grad_b) against float64, each bounded by its sum's length."""
    n, f = gy.shape
    for got, ref, terms, what in zip(grads, ref_fc_undo(gy, x, w), (f, n, n),
                                     ("grad_x", "grad_w", "grad_b")):
        assert_close(got, ref, terms, what=what)
