"""Shared by test_avg_pool.py and test_avg_pool_cuda.py: the average pooling references, cases and
data makers."""
import numpy as np

from pool_cases import windows


# ---------------------------------------------------------------- float64 references (direct)
def ref_avg_pool(x, size, stride, padding=0, ceil_mode=False):
    """Mean over each window's real pixels (padding and overhang not counted)."""
    x = np.float64(x)
    n, c, h, w = x.shape
    win = list(windows(h, w, size, stride, padding, ceil_mode))
    y = np.empty((n, c, win[-1][0] + 1, win[-1][1] + 1))
    for oy, ox, rows, cols in win:
        y[:, :, oy, ox] = x[:, :, rows.start:rows.stop, cols.start:cols.stop].mean(axis=(2, 3))
    return y


def ref_avg_pool_grad(gy, image_size, size, stride, padding=0, ceil_mode=False):
    """Scatter form: each output's gradient spread evenly over its window's real pixels."""
    gy = np.float64(gy)
    h, w = image_size
    gx = np.zeros(gy.shape[:2] + (h, w))
    for oy, ox, rows, cols in windows(h, w, size, stride, padding, ceil_mode):
        count = len(rows) * len(cols)
        gx[:, :, rows.start:rows.stop, cols.start:cols.stop] += (gy[:, :, oy, ox] / count)[:, :, None, None]
    return gx


def pool_kwargs(case):
    return dict(size=case[4], stride=case[5], padding=case[6], ceil_mode=case[7])


def pool_args(case):
    size = case[4]
    return size * size if isinstance(size, int) else size[0] * size[1]
