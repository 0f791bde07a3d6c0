"""The paper's SGD step with momentum and weight decay, fused and in place: ``sgd_update``.

Kernel: ``csrc/cpu/sgd_update.cpp``. See ``csrc/sgd_update.h``.
"""
from __future__ import annotations

import numpy as np

from .. import _validate as V

__all__ = ["sgd_update"]


def sgd_update(w, grad, velocity, *, lr, momentum=0.9, weight_decay=5e-4):
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

    Returns:
        None. The arithmetic is float32, with ``weight_decay * lr`` rounded once to float32.
    """
    V.float_array(w, "w")
    if w.ndim < 1:
        raise ValueError(f"w: expected at least 1 dimension, got shape {w.shape}")
    V.float_array(grad, "grad")
    V.expect_shape(grad, w.shape, "grad", "the shape of w")
    V.float_array(velocity, "velocity")
    V.expect_shape(velocity, w.shape, "velocity", "the shape of w")
    lr = V.real(lr, "lr", 0.0, exclusive_min=True)
    momentum = V.real(momentum, "momentum", 0.0, 1.0)
    weight_decay = V.real(weight_decay, "weight_decay", 0.0)
    for name, a in (("w", w), ("velocity", velocity)):
        if not a.flags.writeable:
            raise ValueError(f"{name}: array is read-only")
    if np.may_share_memory(grad, w):
        raise ValueError("grad: must not share memory with w")
    if np.may_share_memory(grad, velocity):
        raise ValueError("grad: must not share memory with velocity")
    if np.may_share_memory(velocity, w):
        raise ValueError("velocity: must not share memory with w")
    k = V.backend(w, grad, velocity)
    k.sgd_update(w, grad, velocity, lr, momentum, weight_decay * lr)
