"""Helpers for the GPU tests (tests/test_*_cuda.py): moving arrays to and from the device, and
device views at an offset (to reach the unaligned code paths and to build overlapping arrays)."""
import numpy as np
import pytest

from alexnet_ext import cuda


def torch_cuda():
    """PyTorch with a usable GPU, else skip (a CPU-only torch, or the GPU is the CPU emulator)."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch cannot use a GPU here (CPU-only torch, or no GPU beside the emulator)")
    return torch


def dev(a):
    """A DeviceArray copy of a NumPy array."""
    return cuda.to_device(np.ascontiguousarray(a))


class _Window:
    """A CUDA Array Interface producer: `shape` elements of `dtype` at byte `offset` of `base`."""

    def __init__(self, base, offset, shape, dtype):
        self.base = base  # keeps the memory alive as long as the view
        dtype = np.dtype(dtype)
        assert offset + int(np.prod(shape)) * dtype.itemsize <= base.nbytes
        self.__cuda_array_interface__ = {
            "shape": tuple(shape), "typestr": dtype.str, "strides": None, "version": 3,
            "data": (base.ptr + offset, False), "stream": None,
        }


def window(base, offset, shape):
    """A DeviceArray sharing `base`'s memory: `shape` elements starting at flat element `offset`."""
    return cuda.asarray(_Window(base, offset * base.dtype.itemsize, shape, base.dtype))


def reinterpret(base, shape, dtype):
    """`base`'s memory seen as `shape` elements of another dtype (for overlap tests)."""
    return cuda.asarray(_Window(base, 0, shape, dtype))


def unaligned(a):
    """A DeviceArray copy of `a` whose data starts 4 bytes past a 16-byte boundary."""
    a = np.ascontiguousarray(a)
    flat = np.zeros(a.size + 1, a.dtype)
    flat[1:] = a.ravel()
    d = window(dev(flat), 1, a.shape)
    assert d.ptr % 16 != 0
    return d


class kernel_version:
    """Context manager: run the block with conv kernel version ``v`` (cuda.set_conv_kernel)."""

    def __init__(self, v):
        self.v = v

    def __enter__(self):
        self.prev = cuda.get_conv_kernel()
        cuda.set_conv_kernel(self.v)

    def __exit__(self, *exc):
        cuda.set_conv_kernel(self.prev)
