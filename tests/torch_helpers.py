"""Shared helpers of the tests/test_torch_*.py files (torch imported by the caller first)."""
import numpy as np
import torch

EPS32 = 2.0 ** -24          # unit roundoff of float32


def assert_within(actual, expected, scale, terms, what="", factor=4.0):
    """|actual - expected| <= factor * terms * eps32 * scale + a float32 ulp of expected.

    ``scale``: the sum of the absolute values of the terms (a tensor like expected, or a
    number); ``terms``: how many terms each result accumulates (see tests/test_torch_ops.py)."""
    a = torch.as_tensor(actual).double()
    e = torch.as_tensor(expected).double()
    s = torch.as_tensor(scale).double()
    bound = factor * terms * EPS32 * s + EPS32 * e.abs() + 1e-30
    err = (a - e).abs()
    bad = err > bound
    if bool(bad.any()):
        i = int(torch.argmax((err / bound).flatten()))
        raise AssertionError(f"{what}: {int(bad.sum())} of {err.numel()} entries off by more "
                             f"than the bound; worst at flat index {i}: got {a.flatten()[i]:.9g}, "
                             f"want {e.flatten()[i]:.9g}, bound {bound.flatten()[i]:.3g}")


def lrn_reference(x, *, size, k, alpha, beta, alpha_over_size, blocks=1):
    """Response norm written channel by channel from the formula (float64-friendly)."""
    n, c, h, w = x.shape
    xb = x.reshape(n * blocks, c // blocks, h, w)
    cb = c // blocks
    a = alpha / size if alpha_over_size else alpha
    out = []
    for i in range(cb):
        lo, hi = max(0, i - size // 2), min(cb - 1, i + (size - 1) // 2)
        s = (xb[:, lo:hi + 1] ** 2).sum(dim=1)
        out.append(xb[:, i] * (k + a * s) ** (-beta))
    return torch.stack(out, dim=1).reshape(n, c, h, w)


def to_numpy(t):
    return np.ascontiguousarray(t.detach().cpu().numpy())
