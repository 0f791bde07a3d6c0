"""Fully connected layer: ``fc`` (forward) and ``fc_undo`` (gradients).

Kernels: ``csrc/cpu/fc.cpp`` (OpenBLAS sgemm, one slab per OpenMP thread) and ``csrc/cuda/fc.cu``
(cuBLAS sgemm in plain FP32, for ``alexnet_ext.cuda.DeviceArray`` inputs; present when the build
found cuBLAS). See ``csrc/fc.h``.

bfloat16 (GPU only): x and w (and, for ``fc_undo``, grad_y) may all be bfloat16 DeviceArrays;
the GEMMs then run through cublasGemmEx with float32 accumulation (each product exact). The
outputs y and grad_x are float32 unless asked for in bfloat16 (``out_dtype`` /
``grad_x_dtype``, or a bfloat16 ``out``): float32 keeps the logits and gradients at full
precision for the loss, and a bfloat16 one is the float32 result rounded once (bit for bit
``ops.cast`` of it). grad_w and grad_b are float32 always (they update float32 master weights).
"""
from __future__ import annotations

import numpy as np

from .. import _validate as V

__all__ = ["fc", "fc_undo"]


def _scales(scale_targets, scale_output):
    return V.real(scale_targets, "scale_targets"), V.real(scale_output, "scale_output")


_BF16_OUT = "needs bfloat16 operands (DeviceArrays on the GPU)"


def fc(x, w, b=None, *, out=None, scale_targets=0.0, scale_output=1.0, out_dtype=None):
    """Fully connected forward: ``y = x . w^T + b``.

    Args:
        x: (N, D) float32 (or a bfloat16 DeviceArray). x must be 2-D: pass a (N, C, H, W)
            activation (e.g. pool5's (N, 256, 6, 6)) as ``x.reshape(N, -1)``, which is free for
            a C-contiguous array.
        w: (F, D), x's dtype, one row per output neuron (PyTorch ``Linear`` layout; a conv
            filter bank (F, C, H, W) reshaped to (F, C*H*W) matches the reshaped activation).
        b: optional (F,) float32 bias (float32 also with bfloat16 operands).
        out, scale_targets, scale_output: accumulate form,
            ``out = scale_targets * out + scale_output * (x . w^T + b)``. With
            ``scale_targets == 0`` ``out`` is not read (it may hold garbage or NaNs).
        out_dtype: None (``out``'s dtype when given, else float32), ``numpy.float32`` or
            ``alexnet_ext.cuda.bfloat16`` (bfloat16 operands only): the float32 result
            rounded once.

    Returns:
        (N, F) of out_dtype, ``out`` itself when given.
    """
    V.real_array(x, "x", 2, "(N, D); pass a (N, C, H, W) activation as x.reshape(N, -1)")
    V.real_array(w, "w", 2, "(F, D)", like=x, like_name="x")
    st, so = _scales(scale_targets, scale_output)
    n, d = x.shape
    f = w.shape[0]
    if w.shape[1] != d:
        raise ValueError(f"w: expected (F, {d}) to match x's {d} input features, got {w.shape}")
    if b is not None:
        V.float_array(b, "b", 1, "(F,)")
        V.expect_shape(b, (f,), "b", "one per output neuron")
    k = V.backend(x, w, b, out)
    dt = V.out_dtype(out_dtype, "out_dtype", out, bf16=x.dtype == V.BF16, why=_BF16_OUT)
    out = V.output(out, (n, f), scale_targets=st, dtype=dt, x=x, w=w, b=b)
    k.fc_forward(x, w, b, out, st, so)
    return out


def fc_undo(grad_y, x, w, *, need_grad_x=True, grad_x_out=None, grad_w_out=None,
            grad_b_out=None, scale_targets=0.0, scale_output=1.0, grad_x_dtype=None):
    """Gradients of :func:`fc`.

    Args:
        grad_y: (N, F) float32 (or a bfloat16 DeviceArray), the gradient w.r.t. fc's output.
        x: (N, D), grad_y's dtype, fc's input (2-D, see :func:`fc`).
        w: (F, D), grad_y's dtype, fc's weights.
        need_grad_x: False skips grad_x (the first layer of a net has no use for it).
        grad_x_out, grad_w_out, grad_b_out: optional targets for the three gradients.
        scale_targets, scale_output: accumulate form applied to every gradient computed,
            ``target = scale_targets * target + scale_output * gradient``; a non-zero
            scale_targets needs every computed target given (two columns of a net can then
            sum into one buffer). With ``scale_targets == 0`` targets are not read.
        grad_x_dtype: as :func:`fc`'s ``out_dtype``, for grad_x (grad_x_out's dtype when given,
            else float32; bfloat16 needs bfloat16 operands). grad_w and grad_b are float32.

    Returns:
        (grad_x, grad_w, grad_b):
        grad_x (N, D) = grad_y . w, or None when ``need_grad_x`` is False;
        grad_w (F, D) = grad_y^T . x (summed over the batch);
        grad_b (F,)   = grad_y summed over the batch.
    """
    V.real_array(grad_y, "grad_y", 2, "(N, F)")
    V.real_array(x, "x", 2, "(N, D); pass a (N, C, H, W) activation as x.reshape(N, -1)",
                 like=grad_y, like_name="grad_y")
    V.real_array(w, "w", 2, "(F, D)", like=grad_y, like_name="grad_y")
    if not isinstance(need_grad_x, (bool, np.bool_)):
        raise TypeError(f"need_grad_x: expected a bool, got {type(need_grad_x).__name__}")
    st, so = _scales(scale_targets, scale_output)
    n, f = grad_y.shape
    if x.shape[0] != n:
        raise ValueError(f"x: expected {n} rows to match grad_y's batch of {n}, got {x.shape[0]}")
    d = x.shape[1]
    V.expect_shape(w, (f, d), "w", f"grad_y's {f} outputs by x's {d} features")
    if not need_grad_x and grad_x_out is not None:
        raise ValueError("grad_x_out: given, but need_grad_x is False")
    k = V.backend(grad_y, x, w, grad_x_out, grad_w_out, grad_b_out)
    ins = dict(grad_y=grad_y, x=x, w=w)  # new targets go where the inputs are (host or GPU)
    dt = V.out_dtype(grad_x_dtype, "grad_x_dtype", grad_x_out, "grad_x_out",
                     bf16=grad_y.dtype == V.BF16, why=_BF16_OUT)
    gx = V.output(grad_x_out, (n, d), "grad_x_out", st, dt, **ins) if need_grad_x else None
    gw = V.output(grad_w_out, (f, d), "grad_w_out", st, **ins)
    gb = V.output(grad_b_out, (f,), "grad_b_out", st, **ins)
    # Every target is written while the inputs are read, and no two targets may overlap.
    targets = (("grad_x_out", gx), ("grad_w_out", gw), ("grad_b_out", gb))
    for i, (t_name, t) in enumerate(targets):
        for o_name, o in (("grad_y", grad_y), ("x", x), ("w", w)) + targets[i + 1:]:
            if t is not None and o is not None and V._overlap(t, o):
                raise ValueError(f"{t_name}: must not share memory with {o_name}")
    if gx is not None:
        k.fc_grad_x(grad_y, w, gx, st, so)
    k.fc_grad_w(grad_y, x, gw, st, so)
    k.fc_grad_b(grad_y, gb, st, so)
    return gx, gw, gb
