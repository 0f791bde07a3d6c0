"""Between torch tensors and the :mod:`alexnet_ext.ops` kernels, for :mod:`._ops`: argument
checks (dtype, one device), zero-copy views of tensors as NumPy arrays or DeviceArrays and back,
running on torch's current CUDA stream, and output sizes that also take the ``torch.SymInt``
sizes a fake implementation sees under dynamic shapes."""
from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch

from .. import ops as _ops

_INDEX = (torch.int32, torch.int64)


# ---- argument handling ----------------------------------------------------------------------

def _check(t, name: str, dtypes=(torch.float32,)) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in dtypes:
        want = " or ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name}: expected dtype {want}, got {str(t.dtype).replace('torch.', '')}"
                        " (alexnet_ext.torch ops take float32, and bfloat16 on the GPU; cast "
                        "with .float())")
    return t


_FLOATS = (torch.float32, torch.bfloat16)


def _check_float(t, name: str) -> torch.Tensor:
    """A data operand: float32 (CPU or CUDA) or bfloat16 (CUDA; the kernels' bf16 paths)."""
    _check(t, name, _FLOATS)
    if t.dtype == torch.bfloat16 and t.device.type == "cpu":
        raise TypeError(f"{name}: bfloat16 runs on the GPU only (cuda tensors); on the CPU the "
                        "kernels are float32 (cast with .float())")
    return t


def _channels_last(t) -> bool:
    """Whether a 4-D tensor is laid out channels-last (NHWC in memory) and not also plain
    contiguous (C == 1 or H == W == 1 are both: those run as NCHW, the same bytes)."""
    return (t.dim() == 4 and not t.is_contiguous()
            and t.is_contiguous(memory_format=torch.channels_last))


def _layout_of(t) -> str:
    return "NHWC" if _channels_last(t) else "NCHW"


def _in_layout(t, layout: str):
    """``t`` (logical NCHW shape) as the op sees it in ``layout``: NHWC is the channels-last
    tensor permuted to (N, H, W, C), a contiguous view (a copy only if ``t`` is not channels-last
    already)."""
    if t is None or layout == "NCHW":
        return t
    return t.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)


def _from_layout(t: torch.Tensor, layout: str) -> torch.Tensor:
    """An op's (N, H, W, C) result as the logical (N, C, H, W) channels-last tensor (a view)."""
    return t.permute(0, 3, 1, 2) if layout == "NHWC" else t


def _empty_in(shape, like: torch.Tensor, layout: str, dtype=None) -> torch.Tensor:
    """A fresh tensor of logical shape ``shape`` in ``layout``'s memory format."""
    fmt = torch.channels_last if layout == "NHWC" else torch.contiguous_format
    return torch.empty(tuple(shape), dtype=dtype or like.dtype, device=like.device,
                       memory_format=fmt)


def _same_device(**tensors) -> torch.device:
    dev = None
    first = None
    for name, t in tensors.items():
        if t is None:
            continue
        if dev is None:
            dev, first = t.device, name
        elif t.device != dev:
            raise ValueError(f"{name}: expected a tensor on {dev} like {first}, got {t.device}")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{first}: alexnet_ext has kernels for cpu and cuda tensors, got {dev}")
    return dev


def _pair(v, name: str) -> tuple:
    if isinstance(v, Sequence) and not isinstance(v, str):
        if len(v) != 2:
            raise ValueError(f"{name}: expected an int or an (h, w) pair, got {list(v)}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


@contextlib.contextmanager
def _on(dev: torch.device):
    """Run alexnet_ext kernels on torch's current stream of ``dev`` (nothing to do on the CPU)."""
    if dev.type != "cuda":
        yield
        return
    from .. import cuda
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    saved = cuda.get_device()
    if saved != index:                     # the stream below belongs to the tensors' GPU
        cuda.set_device(index)
    try:
        with torch.cuda.device(index), cuda.stream(torch.cuda.current_stream(index).cuda_stream):
            yield
    finally:
        if saved != index:
            cuda.set_device(saved)


def _arr(t):
    """A zero-copy alexnet_ext view of a (made contiguous) tensor: NumPy or DeviceArray."""
    if t is None:
        return None
    t = t.detach()
    if not t.is_contiguous():
        t = t.contiguous()
    if t.device.type == "cpu":
        return t.numpy()
    from .. import cuda
    return cuda.asarray(t)


def _tensor(a, dev: torch.device) -> torch.Tensor:
    """The op's result as a tensor, without a copy."""
    if isinstance(a, np.ndarray):
        return torch.from_numpy(a)
    return torch.from_dlpack(a)


def _empty(shape, like: torch.Tensor, dtype=torch.float32):
    return torch.empty(tuple(shape), dtype=dtype, device=like.device)


def _out_len(size, window, stride, padding, ceil_mode, pool: bool):
    """One axis's output length. A concrete size goes through the ops' checked helpers; a
    symbolic one (dynamic shapes) through the same formula, which torch can trace."""
    if all(isinstance(v, int) for v in (size, window, stride, padding)):
        fn = _ops.pool_output_size if pool else _ops.conv_output_size
        return fn(size, window, stride, padding, ceil_mode)
    span = size + 2 * padding - window
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if pool and ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1                           # no window may start in the padding (ops' rule)
    return out


def _conv_out(h, w, kh, kw, stride, padding, ceil_mode):
    return (_out_len(h, kh, stride[0], padding[0], ceil_mode, False),
            _out_len(w, kw, stride[1], padding[1], ceil_mode, False))


def _pool_out(h, w, size, stride, padding, ceil_mode):
    return (_out_len(h, size[0], stride[0], padding[0], ceil_mode, True),
            _out_len(w, size[1], stride[1], padding[1], ceil_mode, True))


def _switch_dtype(h, w):
    if isinstance(h, int) and isinstance(w, int):
        return torch.int32 if _ops.switch_dtype(h, w) == np.int32 else torch.int64
    return torch.int32 if h * w <= 2**31 - 1 else torch.int64   # symbolic: the same rule


def _run_into(op, shape, tensors: dict, dtype=torch.float32, **kwargs) -> torch.Tensor:
    """``op(*arrays, out=..., **kwargs)`` into a fresh tensor of ``shape`` and ``dtype`` on the
    device of ``tensors`` (checked to be one), the arrays zero-copy views of ``tensors`` in order."""
    dev = _same_device(**tensors)
    out = _empty(shape, next(iter(tensors.values())), dtype)
    with _on(dev):
        op(*(_arr(t) for t in tensors.values()), out=_arr(out), **kwargs)
    return out
