"""Where arrays live, and the one function that moves activations between columns.

Every buffer of a :class:`~alexnet_ext.nn.net.Net` is made by :func:`empty` or :func:`zeros` for
a device name, and every cross-column read goes through :func:`transfer`. Device names: ``"cpu"``
(NumPy arrays) and ``"cuda:N"`` (:class:`alexnet_ext.cuda.DeviceArray` on GPU N; ``"cuda"`` means
``"cuda:0"``). The layers call :mod:`alexnet_ext.ops`, which run wherever their arrays are.

Between GPUs, :func:`transfer` is a peer-to-peer copy (``cudaMemcpyPeerAsync`` on a copy stream,
peer access enabled once), or a copy staged through pinned host memory where the two GPUs cannot
reach each other; on one GPU it is a device-to-device copy. Events order it after the producer
and before the consumer on each device; the host never waits (see ``csrc/cuda/device_copy.h``).
"""
from __future__ import annotations

import numpy as np

from .. import cuda as C
from .. import ops

__all__ = ["check_device", "gpu_index", "is_cuda", "fuses", "empty", "zeros", "fill_zero",
           "add_into", "copy_into", "transfer", "to_host", "from_host", "set_copy_route"]

_route = "auto"


def set_copy_route(route: str) -> None:
    """How :func:`transfer` crosses between GPUs: "auto" (peer to peer where possible, else through
    pinned host memory), "peer" (peer to peer or an error) or "host" (always through the host;
    for tests and for measuring)."""
    global _route
    if route not in ("auto", "peer", "host"):
        raise ValueError(f"route: expected 'auto', 'peer' or 'host', got {route!r}")
    _route = route


def gpu_index(device: str) -> int | None:
    """None for "cpu", N for "cuda:N" (the name must be canonical: see :func:`check_device`)."""
    return None if device == "cpu" else int(device[5:])


def is_cuda(device: str) -> bool:
    return device != "cpu"


def fuses(device: str, fuse) -> bool:
    """Whether a net on ``device`` given :class:`~alexnet_ext.nn.net.Net`'s ``fuse`` argument
    ("auto", True or False) fuses layers: True always, "auto" on GPUs, False never."""
    if fuse not in ("auto", True, False):
        raise ValueError(f"fuse: expected 'auto', True or False, got {fuse!r}")
    return fuse is True or (fuse == "auto" and is_cuda(device))


def check_device(device: str) -> str:
    """The canonical name of ``device`` ("cpu" or "cuda:N") if layers can run there, else a
    ValueError saying what this build and machine support."""
    if device == "cpu":
        return device
    if not isinstance(device, str) or not (device == "cuda" or device.startswith("cuda:")):
        raise ValueError(f"device {device!r}: expected 'cpu', 'cuda' or 'cuda:N'")
    index = device[5:] if device.startswith("cuda:") else "0"
    if not index.isdigit():
        raise ValueError(f"device {device!r}: expected 'cuda:N' with N a GPU number")
    from .. import cuda_status
    status = cuda_status()
    if not status["available"]:
        raise ValueError(f"device {device!r}: no usable GPU ({status['reason']})")
    count = len(status["devices"])
    if int(index) >= count:
        raise ValueError(f"device {device!r}: this machine has {count} GPU"
                         f"{'s' if count != 1 else ''} (cuda:0 to cuda:{count - 1})")
    return f"cuda:{int(index)}"


def empty(shape, device: str, dtype=np.float32):
    d = gpu_index(device)
    return np.empty(shape, dtype=dtype) if d is None else C.empty(shape, dtype, device=d)


def zeros(shape, device: str, dtype=np.float32):
    d = gpu_index(device)
    return np.zeros(shape, dtype=dtype) if d is None else C.zeros(shape, dtype, device=d)


def fill_zero(a) -> None:
    if isinstance(a, np.ndarray):
        a.fill(0)
    else:
        C.fill_zero(a)


def add_into(dst, src) -> None:
    """``dst += src`` on the device holding both (gradients reaching a tensor from several layers)."""
    ops.add(dst, src, out=dst)


def copy_into(dst, src):
    """``dst[...] = src`` (same shape and dtype; ``src`` may be a NumPy array for a device
    ``dst``); returns ``dst``."""
    if isinstance(dst, np.ndarray):
        np.copyto(dst, src)
    else:
        C.copy(dst, src)
    return dst


def transfer(x, src_device: str, dst_device: str, *, out):
    """Copy ``x`` (on ``src_device``) into ``out`` (on ``dst_device``) and return ``out``.

    The only place where data crosses between columns: activations on the way forward, their
    gradients on the way back. Columns sharing a device still get a copy, so a net split into
    columns behaves the same whether or not the columns share a device.
    """
    if is_cuda(src_device) != is_cuda(dst_device):
        raise ValueError(f"transfer from {src_device} to {dst_device}: the columns of a net are "
                         "either all on the CPU or all on GPUs")
    if tuple(out.shape) != tuple(x.shape):
        raise ValueError(f"out: expected shape {tuple(x.shape)}, got {tuple(out.shape)}")
    if isinstance(out, np.ndarray):
        np.copyto(out, x)
    else:
        C.copy(out, x, route=_route)
    return out


def to_host(x) -> np.ndarray:
    """A NumPy array with the values of ``x`` (a copy only where the device is not the host)."""
    return x if isinstance(x, np.ndarray) else x.get()


def from_host(a: np.ndarray, device: str):
    """``a`` on ``device`` (``a`` itself for the CPU)."""
    d = gpu_index(device)
    return a if d is None else C.to_device(np.ascontiguousarray(a), device=d)
