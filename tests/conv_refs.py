"""Shared by test_conv.py and test_conv_cuda.py: the convolution references, cases and data makers."""
import numpy as np

from alexnet_ext import ops


# ---------------------------------------------------------------- float64 references (direct)
def make_pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _out_size(size, k, s, p, ceil_mode):
    span = size + 2 * p - k
    return (-(-span // s) if ceil_mode else span // s) + 1


def _padded(x, kh, kw, sh, sw, ph, pw, ceil_mode):
    """x zero-padded so that every (possibly overhanging) window lies inside."""
    n, c, h, w = x.shape
    ho, wo = _out_size(h, kh, sh, ph, ceil_mode), _out_size(w, kw, sw, pw, ceil_mode)
    hp, wp = max(h + 2 * ph, (ho - 1) * sh + kh), max(w + 2 * pw, (wo - 1) * sw + kw)
    xp = np.zeros((n, c, hp, wp))
    xp[:, :, ph:ph + h, pw:pw + w] = x
    return xp, ho, wo


def ref_conv(x, w, b=None, stride=1, padding=0, groups=1, ceil_mode=False):
    (sh, sw), (ph, pw) = make_pair(stride), make_pair(padding)
    f, cg, kh, kw = w.shape
    xp, ho, wo = _padded(np.float64(x), kh, kw, sh, sw, ph, pw, ceil_mode)
    fg = f // groups
    out = np.zeros((x.shape[0], f, ho, wo))
    for g in range(groups):
        xg = xp[:, g * cg:(g + 1) * cg]
        wg = np.float64(w[g * fg:(g + 1) * fg])
        for i in range(kh):
            for j in range(kw):
                win = xg[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
                out[:, g * fg:(g + 1) * fg] += np.einsum("ncyx,fc->nfyx", win, wg[:, :, i, j])
    if b is not None:
        out += np.float64(b)[None, :, None, None]
    return out


def ref_img_grad(gy, w, image_size, stride=1, padding=0, groups=1, ceil_mode=False):
    """Scatter form of the adjoint: every output gradient flows back along its window."""
    (sh, sw), (ph, pw), (h, wd) = make_pair(stride), make_pair(padding), make_pair(image_size)
    f, cg, kh, kw = w.shape
    n, _, ho, wo = gy.shape
    gxp, _, _ = _padded(np.zeros((n, cg * groups, h, wd)), kh, kw, sh, sw, ph, pw, ceil_mode)
    fg = f // groups
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                contrib = np.einsum("nfyx,fc->ncyx", np.float64(gy[:, g * fg:(g + 1) * fg]),
                                    np.float64(w[g * fg:(g + 1) * fg, :, i, j]))
                gxp[:, g * cg:(g + 1) * cg, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw] += contrib
    return gxp[:, :, ph:ph + h, pw:pw + wd]


def ref_weight_grad(x, gy, filter_size, stride=1, padding=0, groups=1, ceil_mode=False):
    (sh, sw), (ph, pw), (kh, kw) = make_pair(stride), make_pair(padding), make_pair(filter_size)
    n, c, _, _ = x.shape
    f = gy.shape[1]
    cg, fg = c // groups, f // groups
    xp, ho, wo = _padded(np.float64(x), kh, kw, sh, sw, ph, pw, ceil_mode)
    gw = np.zeros((f, cg, kh, kw))
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                win = xp[:, g * cg:(g + 1) * cg, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
                gw[g * fg:(g + 1) * fg, :, i, j] = np.einsum(
                    "ncyx,nfyx->fc", win, np.float64(gy[:, g * fg:(g + 1) * fg]))
    return gw


# ---------------------------------------------------------------- cases
# (N, C, H, W, F, kh, kw, stride, padding, groups, ceil_mode): the layer types and geometry
# options, then the GPU tiling's edges; every conv test that runs a table runs all of them, on
# the CPU too.
CASES = {
    "conv1_11x11_s4": (2, 3, 63, 63, 12, 11, 11, 4, 2, 1, False),
    "conv2_5x5_p2_groups2": (2, 16, 13, 13, 10, 5, 5, 1, 2, 2, False),
    "conv3_3x3_p1": (3, 9, 7, 7, 11, 3, 3, 1, 1, 1, False),
    "batch1": (1, 5, 9, 9, 7, 3, 3, 1, 1, 1, False),
    "non_square": (2, 4, 11, 17, 6, 3, 5, (2, 1), (1, 2), 1, False),
    "odd_channels_groups3": (2, 9, 10, 8, 15, 4, 3, (1, 2), (0, 1), 3, False),
    "ceil_mode_overhang": (2, 3, 12, 13, 5, 3, 3, 2, 0, 1, True),
    "ceil_mode_padded_s4": (1, 3, 30, 29, 4, 11, 11, 4, 2, 1, True),
    "pointwise_1x1": (2, 7, 6, 5, 9, 1, 1, 1, 0, 1, False),
    "filter_covers_image": (2, 3, 5, 5, 4, 5, 5, 1, 0, 1, False),
    # Shapes that stress the GPU's tiling: rows/columns crossing tile edges, groups with odd
    # channel counts, strides larger than the filter (imgActs phases that no tap reaches),
    # padding wider than the filter, many blocks with few rows (the 64-row tile), long
    # reductions (split-K).
    "fg130_crosses_row_tile": (1, 5, 6, 7, 130, 3, 3, 1, 1, 1, False),
    "cg70_groups2": (2, 140, 5, 5, 6, 3, 3, 1, 1, 2, False),
    "stride3_1x1_empty_phases": (2, 3, 10, 11, 4, 1, 1, 3, 0, 1, False),
    "stride_gt_kernel_ceil": (2, 3, 11, 13, 5, 2, 2, (4, 3), (1, 0), 1, True),
    "padding_wider_than_kernel": (1, 2, 4, 5, 3, 2, 2, (1, 2), (3, 2), 1, False),
    "many_blocks_few_rows": (64, 32, 16, 16, 32, 3, 3, 1, 1, 1, False),
    "long_reduction_split_k": (64, 3, 32, 32, 4, 3, 3, 1, 0, 1, False),
    "batch1_odd_everything": (1, 7, 31, 29, 200, 4, 6, (3, 2), (2, 1), 1, True),
    "groups4_fg33": (3, 12, 9, 11, 132, 3, 2, (2, 1), (1, 1), 4, False),
    "columns_300": (3, 2, 10, 10, 3, 1, 3, 1, (0, 1), 1, True),
}


def make_data(rng, case):
    n, c, h, w, f, kh, kw, stride, padding, groups, ceil_mode = case
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((f, c // groups, kh, kw)).astype(np.float32)
    kw_args = dict(stride=stride, padding=padding, groups=groups, ceil_mode=ceil_mode)
    return x, wt, kw_args


def random_case(rng):
    groups = int(rng.integers(1, 4))
    kh, kw = (int(v) for v in rng.integers(1, 7, size=2))
    sh, sw = (int(v) for v in rng.integers(1, 5, size=2))
    ph, pw = (int(v) for v in rng.integers(0, 3, size=2))
    h = int(rng.integers(max(1, kh - 2 * ph), 20))
    w = int(rng.integers(max(1, kw - 2 * pw), 20))
    return (int(rng.integers(1, 4)), groups * int(rng.integers(1, 5)), h, w,
            groups * int(rng.integers(1, 5)), kh, kw, (sh, sw), (ph, pw), groups,
            bool(rng.integers(0, 2)))


def undo_data(rng, case):
    """images, filters, the keyword arguments and a random gradient of filter_acts' output."""
    x, w, kw = make_data(rng, case)
    gy = rng.standard_normal(ops.filter_acts(x, w, **kw).shape).astype(np.float32)
    return x, w, kw, gy

