"""Argument checks shared by every op in :mod:`alexnet_ext.ops`.

One rule for all ops: data must already be a C-contiguous ``float32`` array (integer index and
label arrays: ``int32`` or ``int64``; the convolutions' operands may be ``bfloat16``, see
:func:`conv_precision`, and so may the activations of relu, add, the pooling ops and response
norm, dropout, fc's operands and softmax's logits on the GPU, see :func:`real_array`; bfloat16
outputs are chosen with :func:`out_dtype`), a NumPy array for the CPU kernels or an
:class:`alexnet_ext.cuda.DeviceArray` for the GPU ones. Nothing is converted silently, because a silent copy hides
a slow path and turns ``out=`` writes into writes to a temporary. A wrong dtype raises
``TypeError``; a wrong rank, shape, layout or value raises ``ValueError``. Each message names the
argument and what was expected.
"""
from __future__ import annotations

import bisect
import math
import numbers

import ml_dtypes
import numpy as np

from . import _core

FLOAT = np.dtype(np.float32)
BF16 = np.dtype(ml_dtypes.bfloat16)
# Largest stride, padding, window or filter side, image side or LRN size any op accepts (C++:
# kGeometryMax in csrc/host_device.h). Larger values have no meaning (a stride or padding past
# the padded image) and would overflow the kernels' index arithmetic.
GEOMETRY_MAX = 2**31 - 1
INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))


def _is_device(x) -> bool:
    c = getattr(_core, "cuda", None)
    return c is not None and isinstance(x, c.DeviceArray)


class _Kernels:
    """A kernel module (``_core.cpu`` or ``_core.cuda``); a missing kernel is a clear error."""

    def __init__(self, module, where: str):
        self._module, self.where = module, where

    def __getattr__(self, name):
        try:
            return getattr(self._module, name)
        except AttributeError:
            raise NotImplementedError(f"{name} has no {self.where} kernel in this build") from None


_CPU = _Kernels(_core.cpu, "CPU")
_CUDA = _Kernels(_core.cuda, "CUDA") if hasattr(_core, "cuda") else None


def backend(*arrays):
    """The kernels for these arrays: CPU for NumPy arrays, CUDA for DeviceArrays.

    Every array argument of an op goes through here, so this is where device dispatch lives.
    Host and device arrays, or arrays on different GPUs, cannot be mixed in one call.
    """
    host = device = None
    devices = set()
    for a in arrays:
        if a is None:
            continue
        if isinstance(a, np.ndarray):
            host = a
        elif _is_device(a):
            device = a
            devices.add(a.device)
        else:
            raise TypeError(f"expected numpy.ndarray or alexnet_ext.cuda.DeviceArray arguments, got "
                            f"{_type_name(a)} (use alexnet_ext.cuda.asarray() for other GPU arrays)")
    if device is None:
        return _CPU
    if host is not None:
        raise TypeError("arguments mix host (numpy) and device (DeviceArray) arrays: move them to one "
                        "side with alexnet_ext.cuda.to_device() or DeviceArray.get()")
    if len(devices) > 1:
        raise TypeError(f"arguments live on different GPUs {sorted(devices)}: copy them to one device")
    return _CUDA


def _type_name(x) -> str:
    t = type(x)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__name__}"


def _dense_array(x, name: str, ndim: int | None, layout: str):
    """The checks :func:`float_array` and :func:`index_array` share once the dtype is right:
    rank ``ndim``, C-contiguous, non-empty."""
    if ndim is not None and x.ndim != ndim:
        what = f" {layout}" if layout else ""
        raise ValueError(f"{name}: expected {ndim} dimensions{what}, got shape {x.shape}")
    if isinstance(x, np.ndarray) and not x.flags.c_contiguous:  # DeviceArrays are always dense
        raise ValueError(f"{name}: expected a C-contiguous array (use np.ascontiguousarray({name}))")
    if x.size == 0:
        raise ValueError(f"{name}: expected a non-empty array, got shape {x.shape}")
    return x


def float_array(x, name: str, ndim: int | None = None, layout: str = "") -> np.ndarray:
    """``x`` must be a non-empty, C-contiguous float32 ndarray of ``ndim`` dimensions.

    ``layout`` (e.g. ``"(N, C, H, W)"``) is quoted in the error for a wrong rank.
    """
    if not isinstance(x, np.ndarray) and not _is_device(x):
        raise TypeError(f"{name}: expected a numpy.ndarray of float32, got {_type_name(x)}")
    if x.dtype != FLOAT:
        how = f"ops.cast({name}, np.float32)" if x.dtype == BF16 else f"{name}.astype(np.float32)"
        raise TypeError(f"{name}: expected dtype float32, got {x.dtype} (convert with {how})")
    return _dense_array(x, name, ndim, layout)


def array_of(x, name: str, dtypes: tuple, ndim: int | None = None, layout: str = ""):
    """Like :func:`float_array` for any of ``dtypes`` (numpy dtypes)."""
    want = " or ".join(str(d) for d in dtypes)
    if not isinstance(x, np.ndarray) and not _is_device(x):
        raise TypeError(f"{name}: expected a numpy.ndarray or DeviceArray of {want}, got {_type_name(x)}")
    if x.dtype not in dtypes:
        raise TypeError(f"{name}: expected dtype {want}, got {x.dtype}")
    return _dense_array(x, name, ndim, layout)


def real_array(x, name: str, ndim: int | None = None, layout: str = "", like=None,
               like_name: str = ""):
    """Like :func:`float_array`, also accepting a bfloat16 DeviceArray (the activation ops that
    compute in float32 and round each result once to bfloat16 on the GPU). bfloat16 NumPy arrays
    are refused (those ops have no CPU kernel). With ``like`` (named ``like_name``), ``x`` must
    have its dtype: one dtype per call, nothing converted."""
    if not isinstance(x, np.ndarray) and not _is_device(x):
        raise TypeError(f"{name}: expected a numpy.ndarray of float32 or a DeviceArray of float32 "
                        f"or bfloat16, got {_type_name(x)}")
    if x.dtype not in (FLOAT, BF16):
        raise TypeError(f"{name}: expected dtype float32 (or bfloat16 on the GPU), got {x.dtype}")
    if x.dtype == BF16 and isinstance(x, np.ndarray):
        raise TypeError(f"{name}: bfloat16 runs on the GPU only (pass a DeviceArray, or convert "
                        f"with ops.cast({name}, np.float32))")
    if like is not None and x.dtype != like.dtype:
        raise TypeError(f"{name}: dtype {x.dtype} does not match {like_name}'s {like.dtype} (one "
                        f"dtype per call, no silent conversion: convert one with ops.cast)")
    return _dense_array(x, name, ndim, layout)


PRECISIONS = ("fp32", "tf32", "bf16")


def conv_precision(precision, **operands) -> str:
    """The precision a convolution pass runs in, checked against its two operands, given as
    ``name=(array, layout)``: "fp32" (float32, CPU or GPU), "tf32" (float32, GPU only) or "bf16"
    (bfloat16, GPU only); None picks "fp32" for float32 operands and "bf16" for bfloat16 ones.
    Nothing is converted: a float32/bfloat16 mix, or operands of the other precision, raise
    TypeError saying how to convert; tf32/bf16 on NumPy arrays raise ValueError."""
    if precision is not None and (not isinstance(precision, str) or precision not in PRECISIONS):
        raise ValueError(f"precision: expected None, 'fp32', 'tf32' or 'bf16', got {precision!r}")
    (an, (a, a_layout)), (bn, (b, b_layout)) = operands.items()
    array_of(a, an, (FLOAT, BF16), 4, a_layout)
    array_of(b, bn, (FLOAT, BF16), 4, b_layout)
    if a.dtype != b.dtype:
        low = an if a.dtype == BF16 else bn
        raise TypeError(f"{bn}: dtype {b.dtype} does not match {an}'s {a.dtype} (no silent "
                        f"conversion: ops.cast({low}, np.float32), or the other to bfloat16)")
    resolved = precision or ("bf16" if a.dtype == BF16 else "fp32")
    if resolved == "bf16" and a.dtype == FLOAT:
        raise TypeError(f"{an}: precision='bf16' takes bfloat16 operands, got float32 (convert with "
                        f"ops.cast({an}, alexnet_ext.cuda.bfloat16), or use precision='tf32' for "
                        "tensor cores on float32)")
    if resolved != "bf16" and a.dtype == BF16:
        raise TypeError(f"{an}: bfloat16 operands run with precision='bf16' (or None), got "
                        f"precision={precision!r} (convert with ops.cast({an}, np.float32))")
    if resolved != "fp32" and not (_is_device(a) or _is_device(b)):
        raise ValueError(f"precision: {resolved!r} runs on the GPU only (DeviceArray operands); "
                         "NumPy arrays compute in 'fp32' (bfloat16 ones: ops.cast to float32)")
    return resolved


def index_array(x, name: str, ndim: int | None = None, layout: str = "") -> np.ndarray:
    """Like :func:`float_array` for integer arrays (labels, switches): int32 or int64."""
    if not isinstance(x, np.ndarray) and not _is_device(x):
        raise TypeError(f"{name}: expected a numpy.ndarray of int32 or int64, got {_type_name(x)}")
    if x.dtype not in INDEX_DTYPES:
        raise TypeError(f"{name}: expected dtype int32 or int64, got {x.dtype}")
    return _dense_array(x, name, ndim, layout)


def expect_shape(x: np.ndarray, shape: tuple, name: str, why: str = "") -> None:
    if tuple(x.shape) != tuple(shape):
        extra = f" ({why})" if why else ""
        raise ValueError(f"{name}: expected shape {tuple(shape)}{extra}, got {tuple(x.shape)}")


def integer(v, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """A Python or NumPy integer (not bool, not float) in [``minimum``, ``maximum``]."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {_type_name(v)}")
    v = int(v)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name}: expected an int <= {maximum}, got {v}")
    return v


def int_pair(v, name: str, minimum: int, maximum: int = GEOMETRY_MAX) -> tuple[int, int]:
    """An int, or a (height, width) pair of ints, each in [``minimum``, ``maximum``] (by default
    at most :data:`GEOMETRY_MAX`: these are strides, paddings and sides)."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{name}: expected an int or a (height, width) pair, got {v!r}")
        return (integer(v[0], f"{name}[0]", minimum, maximum),
                integer(v[1], f"{name}[1]", minimum, maximum))
    v = integer(v, name, minimum, maximum)
    return v, v


def window_axis(size, window, stride, padding, window_name: str) -> tuple[int, int, int, int]:
    """Checked (size, window, stride, padding) of one axis of a convolution or pooling window:
    ints, each within [1 (0 for padding), GEOMETRY_MAX]."""
    return (integer(size, "size", 1, GEOMETRY_MAX), integer(window, window_name, 1, GEOMETRY_MAX),
            integer(stride, "stride", 1, GEOMETRY_MAX), integer(padding, "padding", 0, GEOMETRY_MAX))


def real(v, name: str, minimum: float | None = None, maximum: float | None = None,
         exclusive_min: bool = False) -> float:
    """A finite real number in range."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {_type_name(v)}")
    v = float(v)
    if not math.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {v}")
    if minimum is not None and (v <= minimum if exclusive_min else v < minimum):
        op = ">" if exclusive_min else ">="
        raise ValueError(f"{name}: expected a number {op} {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name}: expected a number <= {maximum}, got {v}")
    return v


def _overlap(a, b) -> bool:
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return np.may_share_memory(a, b)
    if _is_device(a) and _is_device(b):
        return a.device == b.device and a.ptr < b.ptr + b.nbytes and b.ptr < a.ptr + a.nbytes
    return False


def writable(x, name: str) -> None:
    """``x`` (an ndarray or a DeviceArray) must be writable."""
    if (x.readonly if _is_device(x) else not x.flags.writeable):
        raise ValueError(f"{name}: array is read-only")


def _extent(x):
    """(memory space, first byte, end byte) of a dense array: its whole footprint."""
    if _is_device(x):
        return ("cuda", x.device), x.ptr, x.ptr + x.nbytes
    start = x.__array_interface__["data"][0]
    return ("host",), start, start + x.nbytes


def disjoint(written, read=()) -> None:
    """No two arrays of ``written`` may overlap, nor may any of ``read`` overlap one of
    ``written`` (arrays of ``read`` may overlap each other: they are only read). Both are
    sequences of (name, dense array); O(m log m) over all of them. A clash is reported as
    "<later name>: must not share memory with <earlier name>" (order of ``written``, then
    ``read``)."""
    spans = sorted((*_extent(a), i) for i, (_, a) in enumerate(written) if a.nbytes)
    for (sa, a0, a1, i), (sb, b0, b1, j) in zip(spans, spans[1:]):
        if sa == sb and b0 < a1:  # sorted by start: overlapping spans are neighbours somewhere
            i, j = min(i, j), max(i, j)
            raise ValueError(f"{written[j][0]}: must not share memory with {written[i][0]}")
    starts = [(sp, a0) for sp, a0, _, _ in spans]
    for name, r in read:
        if not r.nbytes:
            continue
        sr, r0, r1 = _extent(r)
        # the spans are disjoint now, so only the last one starting before r1 can reach into r
        k = bisect.bisect_left(starts, (sr, r1)) - 1
        if k >= 0 and spans[k][0] == sr and spans[k][2] > r0:
            raise ValueError(f"{name}: must not share memory with {written[spans[k][3]][0]}")


def no_alias(out, out_name: str = "out", /, **inputs) -> None:
    """``out`` must not overlap any input: the kernels read inputs while writing ``out``."""
    for name, x in inputs.items():
        if x is not None and _overlap(out, x):
            raise ValueError(f"{out_name}: must not share memory with {name}")


def empty_like_inputs(shape: tuple, dtype, inputs) -> object:
    """A new array on the side (host or GPU) where the op's inputs live."""
    for x in inputs:
        if _is_device(x):
            return _core.cuda.empty(tuple(shape), np.dtype(dtype), x.device)
    return np.empty(shape, dtype=dtype)


def empty_like(x, shape: tuple | None = None, dtype=None) -> object:
    """A new array beside ``x`` (host or the same GPU), of x's shape and dtype unless given."""
    return empty_like_inputs(x.shape if shape is None else shape,
                             x.dtype if dtype is None else dtype, (x,))


def output(out, shape: tuple, name: str = "out", scale_targets: float = 0.0, dtype=None,
           **inputs) -> np.ndarray:
    """The target array of an op: a fresh one when ``out`` is None, else a checked ``out``.

    ``scale_targets`` other than 0 reads the target, so it needs an ``out`` to read. ``dtype``
    (None: float32; see :func:`out_dtype`) is the dtype of the fresh array, and the one ``out``
    must have.
    """
    dtype = FLOAT if dtype is None else np.dtype(dtype)
    if out is None:
        if scale_targets != 0.0:
            raise ValueError("scale_targets: a non-zero scale_targets accumulates into out=, "
                             "so out must be given")
        return empty_like_inputs(shape, dtype, inputs.values())
    if dtype == FLOAT:
        float_array(out, name, len(shape))
    else:
        array_of(out, name, (dtype,), len(shape))
    expect_shape(out, shape, name)
    writable(out, name)
    no_alias(out, name, **inputs)
    return out


def out_dtype(dtype, name: str, out=None, out_name: str = "out", bf16: bool = False,
              why: str = "") -> np.dtype:
    """The dtype of an op's float output, chosen by the argument ``dtype`` (named ``name``):
    float32 or bfloat16; None takes ``out``'s dtype when ``out`` is given (``out_name``), else
    float32. bfloat16 only where ``bf16`` is true (else TypeError saying ``why``). A given ``out``
    of another dtype is reported by :func:`output`."""
    if dtype is None:
        dt = out.dtype if out is not None and getattr(out, "dtype", None) in (FLOAT, BF16) else FLOAT
    else:
        try:
            dt = np.dtype(dtype)
        except TypeError:
            dt = None
        if dt not in (FLOAT, BF16):
            raise TypeError(f"{name}: expected None, numpy.float32 or bfloat16, got {dtype!r}")
    if dt == BF16 and not bf16:
        src = name if dtype is not None else f"{out_name} (bfloat16)"
        raise TypeError(f"{src}: a bfloat16 output {why}")
    return dt


MASK = np.dtype(np.uint8)


def mask_array(x, name: str, shape: tuple | None = None, why: str = "") -> np.ndarray:
    """A non-empty, C-contiguous uint8 array (a dropout mask: nonzero = kept) of ``shape``."""
    if not isinstance(x, np.ndarray) and not _is_device(x):
        raise TypeError(f"{name}: expected a numpy.ndarray of uint8, got {_type_name(x)}")
    if x.dtype != MASK:
        raise TypeError(f"{name}: expected dtype uint8, got {x.dtype}")
    if shape is not None:
        expect_shape(x, shape, name, why)
    if isinstance(x, np.ndarray) and not x.flags.c_contiguous:  # DeviceArrays are always dense
        raise ValueError(f"{name}: expected a C-contiguous array (use np.ascontiguousarray({name}))")
    if x.size == 0:
        raise ValueError(f"{name}: expected a non-empty array, got shape {x.shape}")
    return x


def uint64(v, name: str) -> int:
    """A Python or NumPy integer in [0, 2**64) (RNG seeds and counters)."""
    v = integer(v, name, 0)
    if v >= 2**64:
        raise ValueError(f"{name}: expected an int < 2**64, got {v}")
    return v


def same_view(a, b) -> bool:
    """True when ``a`` and ``b`` are exactly the same elements (same start, shape, strides, dtype)."""
    if _is_device(a) or _is_device(b):
        return (_is_device(a) and _is_device(b) and a.device == b.device and a.ptr == b.ptr
                and a.shape == b.shape and a.dtype == b.dtype)  # DeviceArrays are dense
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype)


def elementwise_output(out, shape: tuple, name: str = "out", may_be=(), like=None,
                       **inputs) -> np.ndarray:
    """The target of an elementwise op: fresh when ``out`` is None, else a checked ``out``; float32,
    or with ``like`` (the first input, float32 or bfloat16) of its dtype.

    An elementwise kernel reads element i of every input before writing element i of ``out``,
    so ``out`` may be one of the inputs named in ``may_be`` itself (in place). Any other overlap
    (a shifted or strided view of the same memory) is rejected.
    """
    if out is None:
        return empty_like_inputs(shape, np.float32 if like is None else like.dtype, inputs.values())
    if like is None:
        float_array(out, name)
    else:
        real_array(out, name, like=like, like_name=next(iter(inputs)))
    expect_shape(out, shape, name)
    writable(out, name)
    for in_name, x in inputs.items():
        if x is None or not _overlap(out, x):
            continue
        if in_name in may_be and same_view(out, x):
            continue
        allowed = f" (only {name}={in_name} itself is allowed)" if in_name in may_be else ""
        raise ValueError(f"{name}: must not share memory with {in_name}{allowed}")
    return out


def elementwise(out, **inputs):
    """The checks of an elementwise op (add, relu, relu_undo): inputs of the first one's shape
    (ndim >= 1) and dtype (float32, or bfloat16 on the GPU: :func:`real_array`), given by name in
    order, on one device. Returns ``(kernels, out)``; ``out`` (of that dtype) may be any input
    itself (:func:`elementwise_output`)."""
    (first, x), *rest = inputs.items()
    real_array(x, first)
    if x.ndim < 1:
        raise ValueError(f"{first}: expected at least 1 dimension, got shape {x.shape}")
    for name, y in rest:
        real_array(y, name, like=x, like_name=first)
        expect_shape(y, x.shape, name, f"the shape of {first}")
    k = backend(*inputs.values(), out)
    return k, elementwise_output(out, x.shape, may_be=tuple(inputs), like=x, **inputs)
