"""Pooling geometry shared by test_max_pool.py and test_avg_pool.py: the case table, random
geometries and an independent enumeration of the (clipped) windows. The references themselves live
in the test files."""


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def ref_out_size(size, k, s, p, ceil_mode):
    """Count the window starts o*s - p that PyTorch's rule keeps."""
    span = size + 2 * p - k
    out = span // s + 1
    if ceil_mode and span % s:
        out += 1
        if (out - 1) * s >= size + p:  # the last window would start in the trailing padding
            out -= 1
    return out


def windows(h, w, size, stride, padding, ceil_mode):
    """Yields (oy, ox, rows, cols): each output's window clipped to the image."""
    (kh, kw), (sh, sw), (ph, pw) = _pair(size), _pair(stride), _pair(padding)
    ho, wo = ref_out_size(h, kh, sh, ph, ceil_mode), ref_out_size(w, kw, sw, pw, ceil_mode)
    for oy in range(ho):
        r0 = oy * sh - ph
        for ox in range(wo):
            c0 = ox * sw - pw
            yield oy, ox, range(max(r0, 0), min(r0 + kh, h)), range(max(c0, 0), min(c0 + kw, w))


def random_geometry(rng):
    """A random pooling problem: ``(shape, args)``, an input shape (N, C, H, W) and the size,
    stride, padding and ceil_mode arguments (windows up to 5x5, padding at most half a window,
    the padded image at least one window)."""
    kh, kw = (int(v) for v in rng.integers(1, 6, size=2))
    sh, sw = (int(v) for v in rng.integers(1, 5, size=2))
    ph, pw = int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1))
    h = int(rng.integers(max(1, kh - 2 * ph), 16))
    w = int(rng.integers(max(1, kw - 2 * pw), 16))
    args = dict(size=(kh, kw), stride=(sh, sw), padding=(ph, pw),
                ceil_mode=bool(rng.integers(0, 2)))
    return (int(rng.integers(1, 3)), int(rng.integers(1, 5)), h, w), args


# ---------------------------------------------------------------- cases
# (N, C, H, W, size, stride, padding, ceil_mode)
CASES = {
    "alexnet_pool1_55": (2, 6, 55, 55, 3, 2, 0, False),
    "alexnet_pool2_27": (2, 5, 27, 27, 3, 2, 0, False),
    "alexnet_pool5_13": (3, 7, 13, 13, 3, 2, 0, False),
    "batch1": (1, 3, 9, 9, 3, 2, 0, False),
    "non_square": (2, 3, 11, 17, (3, 2), (2, 1), 0, False),
    "padding": (2, 4, 10, 9, 3, 2, 1, False),
    "padding_non_square": (2, 3, 8, 13, (5, 3), (3, 2), (2, 1), False),
    "ceil_mode_overhang": (2, 3, 12, 13, 3, 2, 0, True),
    "ceil_mode_padding_drops_last": (1, 2, 6, 8, 2, 2, 1, True),
    "ceil_mode_padding": (2, 3, 10, 11, (3, 4), (3, 2), (1, 2), True),
    "non_overlapping_gaps": (2, 3, 11, 10, 2, 3, 0, False),
    "window_covers_image": (2, 3, 4, 5, (4, 5), 1, 0, False),
    "size1": (1, 2, 5, 6, 1, 2, 0, True),
}
