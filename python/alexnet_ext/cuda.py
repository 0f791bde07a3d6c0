"""GPU arrays, streams and memory for alexnet_ext's CUDA kernels.

``DeviceArray`` is a dense C-contiguous array in GPU memory (float32, int32, int64 or uint8).
The ops in :mod:`alexnet_ext.ops` run on the GPU when their arrays are DeviceArrays, and on the
CPU when they are NumPy arrays; mixing the two raises ``TypeError``.

Interop is zero-copy both ways: a DeviceArray exposes ``__cuda_array_interface__`` (v3) and
``__dlpack__``/``__dlpack_device__``, so ``torch.from_dlpack(arr)`` or ``cupy.asarray(arr)`` see the
same memory; :func:`asarray` accepts any producer of either protocol (PyTorch, CuPy, JAX, Numba).
Stream semantics follow both specs: the producer's pending work is ordered before the consumer's
stream. Memory comes from a caching allocator (:func:`memory_stats`, :func:`empty_cache`), so a
training step allocates nothing once warm; host copies stage through pinned memory.

Every op runs on the *current stream* of the calling thread: the legacy default stream unless a
``with alexnet_ext.cuda.stream(s):`` block selects another.
"""
from __future__ import annotations

import contextlib

import numpy as np

from . import _core

_c = getattr(_core, "cuda", None)

__all__ = [
    "CudaError", "DeviceArray", "Stream", "asarray", "current_stream", "device_count", "empty",
    "empty_cache", "get_conv_kernel", "get_device", "is_device_array", "memory_stats",
    "set_conv_kernel", "set_device", "stream", "synchronize", "to_device", "zeros",
]

if _c is not None:
    DeviceArray = _c.DeviceArray
    CudaError = _c.CudaError
else:
    class DeviceArray:  # noqa: D101 - placeholder so isinstance checks work in CPU-only builds
        def __init__(self, *a, **k):
            _require()

    class CudaError(RuntimeError):
        """A CUDA runtime error (never raised by a CPU-only build)."""


def _require():
    from . import cuda_status
    s = cuda_status()
    if not s["available"]:
        raise RuntimeError(f"alexnet_ext.cuda: no usable GPU: {s['reason']}")


def is_device_array(x) -> bool:
    return _c is not None and isinstance(x, _c.DeviceArray)


def _device(device):
    return -1 if device is None else int(device)


def to_device(array, device=None) -> DeviceArray:
    """Copy a NumPy array to the GPU (through pinned memory, on the current stream)."""
    _require()
    if not isinstance(array, np.ndarray):
        raise TypeError(f"to_device: expected a numpy.ndarray, got {type(array).__name__}")
    return _c.to_device(array, _device(device))


def empty(shape, dtype=np.float32, device=None) -> DeviceArray:
    """An uninitialised DeviceArray (from the caching allocator)."""
    _require()
    return _c.empty(shape, np.dtype(dtype), _device(device))


def zeros(shape, dtype=np.float32, device=None) -> DeviceArray:
    _require()
    return _c.zeros(shape, np.dtype(dtype), _device(device))


def asarray(obj) -> DeviceArray:
    """Share another library's GPU array without a copy (DLPack first, then the CUDA Array
    Interface). The result keeps ``obj``'s memory alive. Host arrays are rejected: use
    :func:`to_device` for an explicit copy."""
    if is_device_array(obj):
        return obj
    if isinstance(obj, np.ndarray):
        raise TypeError("asarray: a numpy array lives in host memory; copy it with to_device()")
    _require()
    if hasattr(obj, "__dlpack__") and hasattr(obj, "__dlpack_device__"):
        dev_type, _ = obj.__dlpack_device__()
        if int(dev_type) in (2, 13):  # kDLCUDA, kDLCUDAManaged
            return _c.from_dlpack(obj)
        if not hasattr(obj, "__cuda_array_interface__"):
            raise TypeError(f"asarray: {type(obj).__name__} is not in GPU memory (DLPack device type "
                            f"{int(dev_type)}); copy host data with to_device()")
    if hasattr(obj, "__cuda_array_interface__"):
        return _c.from_cuda_array_interface(obj)
    raise TypeError(f"asarray: {type(obj).__name__} implements neither __dlpack__ nor "
                    "__cuda_array_interface__")


class Stream:
    """A CUDA stream (non-blocking). Use as a context manager to make it current:

        s = alexnet_ext.cuda.Stream()
        with s:
            y = ops.filter_acts(x, w)   # queued on s
        s.synchronize()

    ``Stream(handle=int)`` wraps a stream created elsewhere (e.g.
    ``torch.cuda.current_stream().cuda_stream``) without taking ownership.
    """

    def __init__(self, handle: int | None = None):
        _require()
        self._owned = handle is None
        self.handle = _c.stream_create() if handle is None else int(handle)
        self._saved: list[int] = []

    def synchronize(self) -> None:
        _c.stream_synchronize(self.handle)

    def __enter__(self):
        self._saved.append(_c.get_stream())
        _c.set_stream(self.handle)
        return self

    def __exit__(self, *exc):
        _c.set_stream(self._saved.pop())

    def close(self) -> None:
        if self._owned and self.handle:
            _c.stream_destroy(self.handle)
            self.handle = 0

    def __repr__(self) -> str:
        return f"Stream(handle=0x{self.handle:x})"


@contextlib.contextmanager
def stream(s):
    """Make ``s`` (a :class:`Stream` or a raw cudaStream_t handle) current in this block."""
    st = s if isinstance(s, Stream) else Stream(handle=s)
    with st:
        yield st


def current_stream() -> int:
    """The calling thread's current stream handle (0: the legacy default stream)."""
    _require()
    return _c.get_stream()


def synchronize() -> None:
    """Wait for all work on the current device."""
    _require()
    _c.synchronize()


def device_count() -> int:
    from . import cuda_status
    return len(cuda_status()["devices"])


def get_device() -> int:
    _require()
    return _c.get_device()


def set_device(device: int) -> None:
    _require()
    _c.set_device(int(device))


def memory_stats(device=None) -> dict:
    """Caching-allocator counters: allocated, cached and peak bytes, cudaMalloc calls."""
    _require()
    return _c.memory_stats(_device(device))


def empty_cache() -> None:
    """Return every cached block to the driver."""
    _require()
    _c.empty_cache()


def set_conv_kernel(version: int) -> None:
    """Select the GPU convolution kernels, process-wide: 1 = reference (direct loops, for
    validation), 2 = tiled implicit GEMM (the default). Both compute the same function."""
    _require()
    _c.set_conv_kernel(version)


def get_conv_kernel() -> int:
    """The GPU convolution kernel version in use (see :func:`set_conv_kernel`)."""
    _require()
    return _c.get_conv_kernel()
