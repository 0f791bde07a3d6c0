"""Shared by test_max_pool.py and test_max_pool_cuda.py: the max pooling references, cases and data
makers."""
import numpy as np

from alexnet_ext import ops

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


def bad_switch_cases(rng):
    """grad_y and switches of max_pool on a (2, 3, 5, 6) input, and (bad, switches with ``bad`` at
    (1, 2, 1, 0)) as int32 and int64 for values outside [0, 30): what max_pool_undo must refuse."""
    y, s = ops.max_pool(tie_free(rng, (2, 3, 5, 6)))
    gy = rng.standard_normal(y.shape).astype(np.float32)
    cases = []
    for dtype in (np.int32, np.int64):
        for bad in (-1, 30, 2**31 - 1):
            t = s.astype(dtype)
            t[1, 2, 1, 0] = bad
            cases.append((bad, t))
    return gy, s, cases

