"""The paper's SGD step with momentum and weight decay, fused and in place: ``sgd_update`` for one
parameter tensor, ``sgd_update_many`` for a whole list.

Kernels: ``csrc/cpu/sgd_update.cpp`` and ``csrc/cuda/sgd_update.cu`` (the same float32 arithmetic,
bit for bit). See ``csrc/sgd_update.h``. Arrays may be NumPy arrays (CPU) or
``alexnet_ext.cuda.DeviceArray`` (GPU); on the GPU ``sgd_update_many`` is one kernel launch for up
to 32 tensors instead of one per tensor.
"""
from __future__ import annotations

import numbers

from .. import _validate as V

__all__ = ["sgd_update", "sgd_update_many"]


def _check_triple(w, grad, velocity, wn: str, gn: str, vn: str) -> None:
    V.float_array(w, wn)
    if w.ndim < 1:
        raise ValueError(f"{wn}: expected at least 1 dimension, got shape {w.shape}")
    V.float_array(grad, gn)
    V.expect_shape(grad, w.shape, gn, f"the shape of {wn}")
    V.float_array(velocity, vn)
    V.expect_shape(velocity, w.shape, vn, f"the shape of {wn}")


def _hyper(lr, momentum, weight_decay, name_lr="lr", name_m="momentum", name_wd="weight_decay"):
    lr = V.real(lr, name_lr, 0.0, exclusive_min=True)
    momentum = V.real(momentum, name_m, 0.0, 1.0)
    weight_decay = V.real(weight_decay, name_wd, 0.0)
    return lr, momentum, weight_decay


def _copy(copy, w, name: str):
    """The optional bf16 copy of ``w``: bfloat16 of w's shape, writable (None: no copy)."""
    if copy is None:
        return None
    V.array_of(copy, name, (V.BF16,))
    V.expect_shape(copy, w.shape, name, "the shape of the parameters it copies")
    V.writable(copy, name)
    return copy


def sgd_update(w, grad, velocity, *, lr, momentum=0.9, weight_decay=5e-4, copy_bf16=None):
    """One SGD step, exactly the paper's rule, updating ``w`` and ``velocity`` in place::

        velocity <- momentum * velocity - weight_decay * lr * w - lr * grad
        w        <- w + velocity

    Args:
        w: float32 parameters (any shape), C-contiguous, writable; updated in place.
        grad: float32 of w's shape, dL/dw averaged over the batch (e.g. with the default
            ``scale`` of :func:`softmax_log_loss_undo`). Must not share memory with w or
            velocity.
        velocity: float32 of w's shape, writable, the momentum state (start from zeros);
            updated in place. Must not share memory with w.
        lr: learning rate, a finite number > 0 (the paper starts at 0.01).
        momentum: in [0, 1] (paper: 0.9).
        weight_decay: >= 0 (paper: 0.0005); pass 0 for parameters without decay.
        copy_bf16: optional bfloat16 array of w's shape: receives the new ``w`` rounded to
            bfloat16 (to nearest, ties to even, as :func:`cast`) in the same pass. With fp32
            master weights this is the copy a bf16 forward pass reads, without a second
            kernel reading ``w`` again. Must not share memory with the other arrays.

    Returns:
        None. The arithmetic is float32, with ``weight_decay * lr`` rounded once to float32.
    """
    _check_triple(w, grad, velocity, "w", "grad", "velocity")
    lr, momentum, weight_decay = _hyper(lr, momentum, weight_decay)
    for name, a in (("w", w), ("velocity", velocity)):
        V.writable(a, name)
    if V._overlap(grad, w):
        raise ValueError("grad: must not share memory with w")
    if V._overlap(grad, velocity):
        raise ValueError("grad: must not share memory with velocity")
    if V._overlap(velocity, w):
        raise ValueError("velocity: must not share memory with w")
    copy = _copy(copy_bf16, w, "copy_bf16")
    if copy is not None:
        V.disjoint([("w", w), ("velocity", velocity), ("copy_bf16", copy)], [("grad", grad)])
    k = V.backend(w, grad, velocity, copy)
    k.sgd_update(w, grad, velocity, lr, momentum, weight_decay * lr, copy)


def _per_tensor(v, name: str, count: int) -> list:
    """A number for every tensor, or a list/tuple of ``count`` numbers."""
    if isinstance(v, (list, tuple)):
        if len(v) != count:
            raise ValueError(f"{name}: expected a number or {count} numbers (one per tensor), "
                             f"got {len(v)}")
        return list(v)
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name}: expected a number or a list of numbers, got "
                        f"{V._type_name(v)}")
    return [v] * count


def _scalars(lr, momentum, weight_decay) -> None:
    """Checks the hyperparameters given as one number for all tensors, also for an empty list
    (a NaN learning rate is a bug whether or not there is anything to update)."""
    _hyper(*(v if not isinstance(v, (list, tuple)) else 1.0 for v in (lr, momentum, weight_decay)))


def sgd_update_many(ws, grads, velocities, *, lr, momentum=0.9, weight_decay=5e-4,
                    copies_bf16=None):
    """:func:`sgd_update` on every ``(ws[i], grads[i], velocities[i])``: one training step for all
    of a net's parameters.

    The result is exactly that of calling :func:`sgd_update` on each triple in turn; on the GPU it
    takes one kernel launch per 32 tensors instead of one per tensor.

    Args:
        ws, grads, velocities: lists (or tuples) of the same length; each triple as in
            :func:`sgd_update`. All arrays on one side (host or one GPU). No ``ws[i]`` or
            ``velocities[i]`` may share memory with any other array of the call (the grads may
            share memory with each other: they are only read).
        lr, momentum, weight_decay: a number for all tensors, or a list with one per tensor
            (e.g. ``weight_decay=[5e-4, 0.0, ...]`` to exempt biases); ranges as in
            :func:`sgd_update`.
        copies_bf16: optional list with, for each tensor, a bfloat16 array of its shape (or
            None) receiving the new weights in bf16, as :func:`sgd_update`'s ``copy_bf16``.

    Returns:
        None.
    """
    for name, seq in (("ws", ws), ("grads", grads), ("velocities", velocities)):
        if not isinstance(seq, (list, tuple)):
            raise TypeError(f"{name}: expected a list of arrays, got {V._type_name(seq)}")
    count = len(ws)
    for name, seq in (("grads", grads), ("velocities", velocities)):
        if len(seq) != count:
            raise ValueError(f"{name}: expected {count} arrays (one per entry of ws), got {len(seq)}")
    lrs = _per_tensor(lr, "lr", count)
    moms = _per_tensor(momentum, "momentum", count)
    wds = _per_tensor(weight_decay, "weight_decay", count)
    _scalars(lr, momentum, weight_decay)
    for i in range(count):
        _check_triple(ws[i], grads[i], velocities[i], f"ws[{i}]", f"grads[{i}]", f"velocities[{i}]")
        lrs[i], moms[i], wds[i] = _hyper(lrs[i], moms[i], wds[i], f"lr[{i}]", f"momentum[{i}]",
                                         f"weight_decay[{i}]")
        V.writable(ws[i], f"ws[{i}]")
        V.writable(velocities[i], f"velocities[{i}]")
    if copies_bf16 is None:
        copies = [None] * count
    elif not isinstance(copies_bf16, (list, tuple)):
        raise TypeError(f"copies_bf16: expected a list of arrays or None, got "
                        f"{V._type_name(copies_bf16)}")
    elif len(copies_bf16) != count:
        raise ValueError(f"copies_bf16: expected {count} entries (one per entry of ws), got "
                         f"{len(copies_bf16)}")
    else:
        copies = [_copy(c, ws[i], f"copies_bf16[{i}]") for i, c in enumerate(copies_bf16)]
    if count == 0:
        return
    k = V.backend(*ws, *grads, *velocities, *(c for c in copies if c is not None))
    written = [(f"ws[{i}]", a) for i, a in enumerate(ws)]
    written += [(f"velocities[{i}]", a) for i, a in enumerate(velocities)]
    written += [(f"copies_bf16[{i}]", a) for i, a in enumerate(copies) if a is not None]
    V.disjoint(written, [(f"grads[{i}]", a) for i, a in enumerate(grads)])
    k.sgd_update_many(list(ws), list(grads), list(velocities), lrs, moms,
                      [wd * r for wd, r in zip(wds, lrs)], copies)
