"""Inverted dropout with a counter-based RNG (Philox-4x32-10): ``dropout`` and ``dropout_undo``.

Kernels: ``csrc/cpu/dropout.cpp``, generator ``csrc/philox.h``. The random number of element i
(in C order) is a pure function of ``(seed, offset, i)``::

    words = philox4x32_10(counter=(lo(i // 4), hi(i // 4), lo(offset), hi(offset)),
                          key=(lo(seed), hi(seed)))
    u[i]  = (words[i % 4] >> 8) * 2**-24          # exact uniform in [0, 1)
    mask[i] = u[i] >= p                            # kept with probability 1 - p

so a mask never depends on the thread count or the GPU launch shape and can be recomputed
anywhere: the CPU (``csrc/cpu/dropout.cpp``) and the GPU (``csrc/cuda/dropout.cu``, for
``alexnet_ext.cuda.DeviceArray`` inputs) give the same mask bit for bit. Different ``offset`` values give disjoint streams for the same ``seed``
whatever the array sizes: a training loop can keep one seed and use e.g. ``offset = step * L + l``
for layer ``l`` of ``L`` at step ``step``.

bfloat16: on the GPU x (and out) may be bfloat16 DeviceArrays; the mask is the float32 one for
the same seed and offset (the same Philox words), and each kept value is ``x * scale`` in float32
rounded once to bfloat16. ``dropout_undo`` likewise (grad_y, relu_mask and out of one dtype).
"""
from __future__ import annotations

import numpy as np

from .. import _validate as V

__all__ = ["dropout", "dropout_undo", "philox4x32_10"]


def _p(p) -> float:
    p = V.real(p, "p", 0.0)
    if p >= 1.0:
        raise ValueError(f"p: expected a drop probability 0 <= p < 1, got {p}")
    return p


def dropout(x, *, p, seed, offset=0, out=None, mask_out=None, block=None):
    """Inverted dropout (training mode): ``y = x * mask / (1 - p)``.

    Args:
        x: float32 array of any shape (ndim >= 1), C-contiguous (or a bfloat16 DeviceArray).
        p: drop probability, 0 <= p < 1 (the paper uses 0.5). p = 0 keeps everything (y = x).
        seed: int in [0, 2**64), the Philox key; or ``(table, i)``: the key is element ``i`` of
            ``table``, a 1-D int64 array on x's side (its bits as uint64), read when the kernel
            runs rather than now. A captured CUDA graph replays with the seed the host writes
            there before each replay (``Net.step_graph``); the masks are those of the same seed
            passed as an int.
        offset: int in [0, 2**64), the upper 64 bits of the Philox counter; use a new one for
            every call that needs fresh randomness (see the module docstring).
        out: optional target of x's shape and dtype; ``out=x`` drops out in place.
        mask_out: optional uint8 target for the mask, x's shape.
        block: optional ``(row, stride, start)``: x is a block of a larger array A, made of rows
            of ``row`` consecutive elements taken every ``stride`` elements of A (flat, C order)
            from element ``start`` on; x then gets exactly A's mask at those positions. A net
            split into columns passes each column's block of every image, so it drops the
            same units as the merged net; a rank of a data-parallel job adds its first
            sample's offset in the global batch to ``start``, so it draws the masks one
            process would for those samples. Requires ``row`` to divide x's size,
            ``stride >= row`` and ``start >= 0`` (any start: rows may begin past ``stride``).

    Returns:
        (y, mask): y of x's shape and dtype; mask uint8 of x's shape, 1 where the element was kept,
        0 where it was dropped. Kept elements are ``x * float32(1 / (1 - p))``, dropped ones
        are exactly 0 (also for non-finite x). Element i is kept iff
        ``u[i] >= p`` with ``u`` as in the module docstring, whatever the thread count.
        At test time use x itself (inverted dropout needs no rescaling there).
    """
    V.real_array(x, "x")
    if x.ndim < 1:
        raise ValueError(f"x: expected at least 1 dimension, got shape {x.shape}")
    p = _p(p)
    seed, table, index = _seed(seed)
    offset = V.uint64(offset, "offset")
    k = V.backend(x, out, mask_out, table)
    out = V.elementwise_output(out, x.shape, may_be=("x",), like=x, x=x)
    if mask_out is None:
        mask_out = V.empty_like(x, dtype=np.uint8)
    else:
        V.mask_array(mask_out, "mask_out", x.shape, "the shape of x")
        V.writable(mask_out, "mask_out")
        for name, a in (("x", x), ("out", out)):
            if V._overlap(mask_out, a):
                raise ValueError(f"mask_out: must not share memory with {name}")
    if table is not None and any(V._overlap(table, a) for a in (out, mask_out)):
        raise ValueError("seed[0]: the seed table must not share memory with out or mask_out")
    at = {} if table is None else {"seed_table": table, "seed_index": index}
    if block is None:
        k.dropout(x, out, mask_out, p, seed, offset, **at)
    else:
        if not isinstance(block, (tuple, list)) or len(block) != 3:
            raise TypeError(f"block: expected a (row, stride, start) tuple, got {block!r}")
        row, stride, start = (V.integer(v, f"block[{i}]", 0, 2**62) for i, v in enumerate(block))
        # the element indices of the larger array are Philox counters: the last must fit int64
        if row >= 1 and (x.size // row) * stride + start >= 2**62:
            raise ValueError(f"block: {x.size} elements in rows of {row} every {stride} from "
                             f"{start} reach past element 2**62 of the larger array")
        k.dropout(x, out, mask_out, p, seed, offset, row, stride, start, **at)
    return out, mask_out


def _seed(seed):
    """(seed, table, index): an int seed, or a seed in memory (see ``dropout``'s ``seed``)."""
    if not isinstance(seed, tuple):
        return V.uint64(seed, "seed"), None, 0
    if len(seed) != 2:
        raise TypeError(f"seed: expected an int or a (table, index) pair, got a tuple of {len(seed)}")
    table, index = seed
    if not isinstance(table, np.ndarray) and not V._is_device(table):
        raise TypeError(f"seed[0]: expected an int64 array, got {type(table).__name__}")
    if table.dtype != np.int64 or table.ndim != 1:
        raise ValueError(f"seed[0]: expected a 1-D int64 array, got {table.dtype} of shape "
                         f"{tuple(table.shape)}")
    V._dense_array(table, "seed[0]", 1, "(k,)")
    return 0, table, V.integer(index, "seed[1]", 0, table.shape[0] - 1)


def dropout_undo(grad_y, mask, *, p, out=None, relu_mask=None):
    """Gradient of :func:`dropout`: ``grad_x = grad_y * mask / (1 - p)``.

    Args:
        grad_y: float32 (or a bfloat16 DeviceArray), the gradient w.r.t. dropout's output.
        mask: uint8 of grad_y's shape, the mask :func:`dropout` returned (nonzero = kept), on
            the same side (host or GPU) as grad_y.
        p: the same p as the forward call.
        out: optional target of grad_y's shape and dtype; ``out=grad_y`` (or ``out=relu_mask``)
            works in place.
        relu_mask: optional, grad_y's shape and dtype: the dropout's *input* when that is a ReLU
            output. The gradient is then also 0 where ``relu_mask <= 0`` (or NaN): the ReLU's
            backward folded in, bit for bit ``relu_undo(dropout_undo(grad_y, mask, p=p),
            relu_mask)`` in one pass.

    Returns:
        grad_x, grad_y's shape and dtype: ``grad_y * float32(1 / (1 - p))`` where kept (rounded
        once for bfloat16), exactly 0 where dropped (the same arithmetic as the forward, so
        ``dropout_undo(x, mask, p=p)`` equals the forward's y bit for bit).
    """
    V.real_array(grad_y, "grad_y")
    if grad_y.ndim < 1:
        raise ValueError(f"grad_y: expected at least 1 dimension, got shape {grad_y.shape}")
    V.mask_array(mask, "mask", grad_y.shape, "the shape of grad_y")
    if relu_mask is not None:
        V.real_array(relu_mask, "relu_mask", like=grad_y, like_name="grad_y")
        V.expect_shape(relu_mask, grad_y.shape, "relu_mask", "the shape of grad_y")
    p = _p(p)
    k = V.backend(grad_y, mask, relu_mask, out)
    out = V.elementwise_output(out, grad_y.shape, may_be=("grad_y", "relu_mask"), like=grad_y,
                               grad_y=grad_y, mask=mask, relu_mask=relu_mask)
    k.dropout_undo(grad_y, mask, out, p, relu_mask)
    return out


def philox4x32_10(counter, key):
    """The raw Philox-4x32-10 generator the dropout masks come from (``csrc/philox.h``).

    Args:
        counter: four ints in [0, 2**32), the 128-bit counter as 32-bit words, low word first.
        key: two ints in [0, 2**32), the 64-bit key, low word first.

    Returns:
        A tuple of four ints in [0, 2**32).
    """
    words = []
    for name, v, count in (("counter", counter, 4), ("key", key, 2)):
        if not isinstance(v, (tuple, list)) or len(v) != count:
            raise ValueError(f"{name}: expected a tuple of {count} ints, got {v!r}")
        for j, w in enumerate(v):
            w = V.integer(w, f"{name}[{j}]", 0)
            if w >= 2**32:
                raise ValueError(f"{name}[{j}]: expected an int < 2**32, got {w}")
            words.append(w)
    return tuple(V.backend().philox4x32_10(*words))
