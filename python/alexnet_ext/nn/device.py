"""Where arrays live, and the one function that moves activations between columns.

Every buffer of a :class:`~alexnet_ext.nn.net.Net` is made by :func:`empty` or :func:`zeros` for
a device name, and every cross-column read goes through :func:`transfer`. This build runs layers
on the CPU only (``"cpu"``); a GPU build adds ``"cuda:N"`` here: allocation on the device,
peer-to-peer copies in :func:`transfer` and a device add in :func:`add_into`.
"""
from __future__ import annotations

import numpy as np

__all__ = ["check_device", "empty", "zeros", "add_into", "copy_into", "transfer", "to_host"]

SUPPORTED = ("cpu",)


def check_device(device: str) -> str:
    """``device`` if layers can run there, else a ValueError saying what this build supports."""
    if device not in SUPPORTED:
        raise ValueError(f"device {device!r}: the layers of this build run on the CPU only "
                         f"(supported: {', '.join(SUPPORTED)})")
    return device


def empty(shape, device: str, dtype=np.float32) -> np.ndarray:
    check_device(device)
    return np.empty(shape, dtype=dtype)


def zeros(shape, device: str) -> np.ndarray:
    check_device(device)
    return np.zeros(shape, dtype=np.float32)


def add_into(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst += src`` on the device holding both (gradients reaching a tensor from several layers)."""
    np.add(dst, src, out=dst)


def copy_into(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """``dst[...] = src`` on the device holding both; returns ``dst``."""
    np.copyto(dst, src)
    return dst


def transfer(x: np.ndarray, src_device: str, dst_device: str, *, out: np.ndarray) -> np.ndarray:
    """Copy ``x`` (on ``src_device``) into ``out`` (on ``dst_device``) and return ``out``.

    The only place where data crosses between columns: activations on the way forward, their
    gradients on the way back. Columns sharing a device still get a copy, so a net split into
    columns behaves the same whether or not the columns share a device.
    """
    check_device(src_device)
    check_device(dst_device)
    if out.shape != x.shape:
        raise ValueError(f"out: expected shape {x.shape}, got {out.shape}")
    np.copyto(out, x)
    return out


def to_host(x) -> np.ndarray:
    """A NumPy array with the values of ``x`` (a copy only where the device is not the host)."""
    return x
