"""Shared by test_dropout.py and test_dropout_cuda.py: the dropout references, cases and data
makers."""
import numpy as np

from alexnet_ext import ops


MASK32 = 0xFFFFFFFF


# ---------------------------------------------------------------- float-free reference Philox
def philox_ref(counter, key):
    """Philox-4x32-10 on Python ints only (Salmon et al. 2011), written for this test."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(10):
        if r:
            k0 = (k0 + 0x9E3779B9) & MASK32
            k1 = (k1 + 0xBB67AE85) & MASK32
        p0 = 0xD2511F53 * c0
        p1 = 0xCD9E8D57 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0, p1 & MASK32, (p0 >> 32) ^ c3 ^ k1, p0 & MASK32)
    return c0, c1, c2, c3


def mask_ref(n, p, seed, offset):
    """The documented mask: element i keeps iff (word >> 8) * 2**-24 >= p (exact in doubles)."""
    mask = np.empty(n, dtype=np.uint8)
    for b in range((n + 3) // 4):
        words = philox_ref((b & MASK32, b >> 32, offset & MASK32, offset >> 32),
                           (seed & MASK32, seed >> 32))
        for j in range(min(4, n - 4 * b)):
            mask[4 * b + j] = (words[j] >> 8) * 2.0**-24 >= p
    return mask


# ---------------------------------------------------------------- the mask
def random_seed(rng):
    return int(rng.integers(0, 2**63, dtype=np.int64)) * 2 + int(rng.integers(0, 2))


# (images, columns, per-image column block): aligned blocks take the four-at-a-time path,
# others the per-element one; a single column is the identity layout.
BLOCKS = [(3, 2, 2048 // 64), (2, 2, 7), (1, 3, 12), (4, 2, 6), (2, 1, 9),
          (16, 2, 2048), (20, 2, 1001)]   # the last two run in parallel


def tail_mask(n, count, p, seed, offset):
    """mask_ref restricted to the last `count` elements (cheap for large n)."""
    out = []
    for i in range(n - count, n):
        b = i // 4
        words = philox_ref((b & MASK32, b >> 32, offset & MASK32, offset >> 32),
                           (seed & MASK32, seed >> 32))
        out.append((words[i % 4] >> 8) * 2.0**-24 >= p)
    return np.array(out, dtype=np.uint8)


def undo_case(rng, shape, p):
    """x, dropout's (y, mask) for it on the CPU, a random grad_y and the CPU's dropout_undo."""
    x = rng.standard_normal(shape).astype(np.float32)
    y, mask = ops.dropout(x, p=p, seed=random_seed(rng))
    gy = rng.standard_normal(x.shape).astype(np.float32)
    return x, y, mask, gy, ops.dropout_undo(gy, mask, p=p)
