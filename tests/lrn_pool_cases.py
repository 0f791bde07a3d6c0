"""Shared by test_response_norm_max_pool.py and its _cuda twin: random and tabled problems for
the fused response norm + max pool, the unfused pair it must equal, bitwise comparison, and a
fused net trained beside the unfused one."""
import numpy as np

from alexnet_ext import ops
from pool_cases import CASES as POOL_CASES
from pool_cases import random_geometry

# Hyper-parameters where the window term matters (as test_response_norm.py's HYPER).
HYPER = dict(k=1.5, alpha=0.3, beta=0.75)


def pool_args(args):
    """max_pool's keywords as response_norm_max_pool's."""
    return dict(pool_size=args["size"], pool_stride=args["stride"],
                pool_padding=args["padding"], ceil_mode=args["ceil_mode"])


def lrn_args(rng, alpha_over_size, beta=0.75):
    return dict(size=int(rng.integers(1, 9)), k=HYPER["k"], alpha=HYPER["alpha"], beta=beta,
                alpha_over_size=alpha_over_size)


def random_problem(rng, alpha_over_size, beta=0.75):
    """(x, lrn keywords, pool keywords): random odd shapes and geometries, LRN sizes 1..8."""
    shape, args = random_geometry(rng)
    n, _, h, w = shape
    c = int(rng.integers(1, 10))
    x = (2 * rng.standard_normal((n, c, h, w))).astype(np.float32)
    return x, lrn_args(rng, alpha_over_size, beta), pool_args(args)


def table_problem(rng, name, alpha_over_size):
    """A named case with a random LRN size: pool_cases.CASES with 1..5 extra channels (LRN needs
    several), or BIG_CASES as they stand."""
    if name in BIG_CASES:
        n, c, h, w, size, stride, padding, ceil_mode = BIG_CASES[name]
    else:
        n, c, h, w, size, stride, padding, ceil_mode = POOL_CASES[name]
        c += int(rng.integers(1, 6))
    x = (2 * rng.standard_normal((n, c, h, w))).astype(np.float32)
    return x, lrn_args(rng, alpha_over_size), dict(pool_size=size, pool_stride=stride,
                                                   pool_padding=padding, ceil_mode=ceil_mode)


# Images tall or wide enough that the CPU cuts them into several bands of output rows and the GPU
# into several tiles each way (band/tile edges, halos, the last band's leftover rows).
BIG_CASES = {
    "alexnet_pool1_bands": ((2, 5, 55, 75, 3, 2, 0, False)),
    "tall_gaps": ((1, 4, 97, 45, 2, 3, 0, False)),
    "tall_ceil_padding": ((1, 3, 90, 50, (5, 3), (1, 2), (2, 1), True)),
    "wide": ((1, 3, 7, 700, 3, 2, 1, True)),
}


def unfused(x, lrn, pool):
    """(pooled, switches, denoms, y) of response_norm then max_pool."""
    y, d = ops.response_norm(x, **lrn)
    p, s = ops.max_pool(y, size=pool.get("pool_size", 3), stride=pool.get("pool_stride", 2),
                        padding=pool.get("pool_padding", 0), ceil_mode=pool.get("ceil_mode", False))
    return p, s, d, y


def unfused_grad(gy, x, lrn, pool, switches, y, denoms):
    g = ops.max_pool_undo(gy, switches, image_size=x.shape[2:])
    return ops.response_norm_undo(g, x, y, denoms, **lrn)


def assert_bits(a, b, what):
    """Same dtype, shape and bits (NaNs included)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, (what, a.dtype, b.dtype, a.shape, b.shape)
    view = np.uint32 if a.dtype.itemsize == 4 else np.uint64
    bad = np.flatnonzero(a.view(view) != b.view(view))
    assert bad.size == 0, f"{what}: {bad.size} of {a.size} differ, first at {bad[0]}: " \
        f"{a.ravel()[bad[0]]!r} vs {b.ravel()[bad[0]]!r}"


# ---------------------------------------------------------------- in the net
def fused_and_plain_nets(spec, split, fuse=True, **kw):
    """The same net twice, with the given fuse setting and unfused (fuse=False)."""
    from alexnet_ext.nn import Net
    return (Net(spec, seed=3, split_columns=split, fuse=fuse, **kw),
            Net(spec, seed=3, split_columns=split, fuse=False, **kw))


def assert_same_training(fused, plain, spec, rng, steps=2, n=4):
    """Same loss bits, gradient bits and updated weights, step after step."""
    from helpers import random_batch
    assert any(layer.kind == "lrn+pool" for layer in fused.layers)
    assert not any(layer.kind == "lrn+pool" for layer in plain.layers)
    for step in range(steps):
        x, y = random_batch(rng, spec, n)
        la = fused.forward(x, y, train=True, step=step, seed=5)
        lb = plain.forward(x, y, train=True, step=step, seed=5)
        assert np.float32(la).tobytes() == np.float32(lb).tobytes(), (la, lb)
        fused.backward()
        plain.backward()
        ga, gb = fused.state_dict("grad"), plain.state_dict("grad")
        for name in gb:
            assert_bits(ga[name], gb[name], f"step {step} {name} grad")
        fused.update(lr=0.01)
        plain.update(lr=0.01)
    va, vb = fused.state_dict(), plain.state_dict()
    for name in vb:
        assert_bits(va[name], vb[name], f"{name} value")
