"""Shared by test_max_pool.py and test_max_pool_cuda.py: the max pooling references, cases and data
makers."""
import numpy as np

from pool_cases import windows


# ---------------------------------------------------------------- float64 references (direct)
def ref_max_pool(x, size=3, stride=2, padding=0, ceil_mode=False):
    """(y, switches): np.argmax gives the first maximum in row-major order and the first NaN."""
    x = np.float64(x)
    n, c, h, w = x.shape
    win = list(windows(h, w, size, stride, padding, ceil_mode))
    ho, wo = win[-1][0] + 1, win[-1][1] + 1
    y = np.empty((n, c, ho, wo))
    s = np.empty((n, c, ho, wo), np.int64)
    for oy, ox, rows, cols in win:
        assert len(rows) and len(cols), "every window must hold a real pixel"
        patch = x[:, :, rows.start:rows.stop, cols.start:cols.stop].reshape(n, c, -1)
        a = np.argmax(patch, axis=2)
        y[:, :, oy, ox] = np.take_along_axis(patch, a[..., None], 2)[..., 0]
        s[:, :, oy, ox] = (rows.start + a // len(cols)) * w + cols.start + a % len(cols)
    return y, s


def pool_kwargs(case):
    return dict(size=case[4], stride=case[5], padding=case[6], ceil_mode=case[7])


def tie_free(rng, shape):
    """Distinct values spaced 0.25 apart (exact in float32) in random order."""
    return (0.25 * (rng.permutation(int(np.prod(shape))) - np.prod(shape) / 2)).reshape(shape).astype(np.float32)
