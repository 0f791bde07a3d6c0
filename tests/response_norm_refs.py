"""Shared by test_response_norm.py and test_response_norm_cuda.py: the local response normalization
references, cases and data makers."""
import numpy as np

from alexnet_ext import ops


# ---------------------------------------------------------------- float64 references (direct)
def _window(i, size, c):
    """Channels summed for channel i: i - size//2 .. i + (size-1)//2, clipped to [0, c-1]."""
    return range(max(0, i - size // 2), min(c - 1, i + (size - 1) // 2) + 1)


def _coef(alpha, size, alpha_over_size):
    return alpha / size if alpha_over_size else alpha


def ref_lrn(x, size=5, k=2.0, alpha=1e-4, beta=0.75, alpha_over_size=False):
    """(y, denoms) in float64, summing each window directly."""
    x = np.float64(x)
    a = _coef(alpha, size, alpha_over_size)
    c = x.shape[1]
    denoms = np.empty_like(x)
    for i in range(c):
        s = np.zeros_like(x[:, 0])
        for j in _window(i, size, c):
            s += x[:, j] ** 2
        denoms[:, i] = k + a * s
    return x * denoms ** -beta, denoms


def ref_lrn_grad(gy, x, size=5, k=2.0, alpha=1e-4, beta=0.75, alpha_over_size=False):
    """The chain rule written output by output: y_i depends on x_i and on x_j for j in window(i)."""
    gy, x = np.float64(gy), np.float64(x)
    a = _coef(alpha, size, alpha_over_size)
    _, d = ref_lrn(x, size, k, alpha, beta, alpha_over_size)
    c = x.shape[1]
    gx = gy * d ** -beta
    for i in range(c):
        # d y_i / d d_i = -beta x_i d_i^(-beta-1), d d_i / d x_j = 2 a x_j
        back = gy[:, i] * (-beta) * x[:, i] * d[:, i] ** (-beta - 1)
        for j in _window(i, size, c):
            gx[:, j] += back * 2 * a * x[:, j]
    return gx


# ---------------------------------------------------------------- cases
# (N, C, H, W, size); H*W > 128 and not a multiple of it exercises the pixel blocking.
CASES = {
    "size1": (2, 6, 5, 4, 1),
    "size2_even": (2, 7, 6, 5, 2),
    "size4_even": (2, 9, 13, 17, 4),
    "size5_paper": (2, 11, 7, 9, 5),
    "size7": (3, 13, 4, 5, 7),
    "size_gt_channels": (2, 3, 6, 6, 7),
    "even_size_gt_channels": (1, 5, 3, 4, 8),
    "one_channel": (2, 1, 5, 7, 5),
    "odd_channels_batch1": (1, 15, 11, 12, 3),
}


# Hyper-parameters large enough that the window term matters (paper's alpha=1e-4 barely moves
# unit-variance data); the paper's values are tested on ReLU-scale activations below.
HYPER = dict(k=1.5, alpha=0.3, beta=0.75)


def make_data(rng, case, scale=2.0):
    n, c, h, w, size = case
    return (scale * rng.standard_normal((n, c, h, w))).astype(np.float32), size


def forward_case(rng, case, alpha_over_size):
    """x, size, the keyword arguments (HYPER) and the CPU's response_norm (y, denoms)."""
    x, size = make_data(rng, case)
    kw = dict(size=size, alpha_over_size=alpha_over_size, **HYPER)
    y, d = ops.response_norm(x, **kw)
    return x, size, kw, y, d
