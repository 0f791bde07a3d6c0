"""GPU arrays, streams and memory for alexnet_ext's CUDA kernels.

``DeviceArray`` is a dense C-contiguous array in GPU memory (float32, bfloat16, int32, int64 or
uint8). :data:`bfloat16` is ``ml_dtypes.bfloat16``, a NumPy dtype: ``get()`` of a bfloat16 array
is a NumPy bfloat16 array; bfloat16 arrays are shared through DLPack only (the CUDA Array
Interface has no bfloat16 typestr, so ``__cuda_array_interface__`` raises ``TypeError``).
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
import functools

import ml_dtypes
import numpy as np

from . import _core

bfloat16 = ml_dtypes.bfloat16

_c = getattr(_core, "cuda", None)

__all__ = [
    "CudaError", "DeviceArray", "Event", "Stream", "asarray", "bfloat16", "copy", "current_stream", "device_count",
    "empty", "empty_cache", "fill_zero", "get_conv_kernel", "get_device", "is_device_array",
    "memory_stats", "peer_access", "pin_host_memory", "set_conv_kernel", "set_device", "stream", "synchronize",
    "to_device", "zeros",
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


@functools.cache
def _count() -> int:
    """GPUs this process sees (fixed for its lifetime; asked once: _device runs on hot paths)."""
    return _c.device_count() if _c is not None else 0


def _device(device, name: str = "device") -> int:
    """-1 (the current GPU) for None, else a checked GPU number."""
    if device is None:
        return -1
    if isinstance(device, bool) or not isinstance(device, (int, np.integer)):
        raise TypeError(f"{name}: expected a GPU number (int), got {type(device).__name__}")
    count = _count()
    if not 0 <= int(device) < count:
        raise ValueError(f"{name}: expected a GPU number from 0 to {count - 1}, got {int(device)}")
    return int(device)


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


def copy(dst, src, *, route: str = "auto") -> None:
    """``dst[...] = src``, queued on the current stream; the host does not wait.

    ``src``: a NumPy array or a DeviceArray on any GPU, of dst's shape and dtype. A NumPy array is
    staged through pinned memory, so it may change once this returns; one inside a
    :class:`pin_host_memory` block is read directly by the GPU later, so keep it unchanged until
    the copy is done (an :class:`Event` recorded after it says when). Between GPUs the copy is peer to peer where the two can reach each other,
    else staged through pinned host memory (``route``: "auto", "peer" or "host" to force one).
    Work queued later on either GPU's current stream is ordered after it.
    """
    _require()
    if not is_device_array(dst):
        raise TypeError(f"copy: dst must be a DeviceArray, got {type(dst).__name__}")
    _c.copy(dst, src, route)


def fill_zero(a) -> None:
    """Set every element of DeviceArray ``a`` to zero (queued on the current stream)."""
    _require()
    if not is_device_array(a):
        raise TypeError(f"fill_zero: expected a DeviceArray, got {type(a).__name__}")
    _c.zero(a)


def peer_access(device: int, peer: int) -> bool:
    """Whether GPU ``device`` can read ``peer``'s memory directly (enables the access once)."""
    _require()
    return _c.peer_access(_device(device), _device(peer, "peer"))


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
        ready = alexnet_ext.cuda.Event().record()   # x, w were made on the default stream
        with s:
            ready.wait()                # s is not ordered with the default stream by itself
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


class Event:
    """A CUDA event on GPU ``device`` (default: the current one): ``record()`` marks the point
    reached by the current stream, ``wait()`` makes the current stream wait for that point (the
    host does not), ``synchronize()`` makes the host wait for it."""

    def __init__(self, device: int | None = None):
        _require()
        self.device = _c.get_device() if device is None else _device(device)
        self.handle = _c.event_create(self.device)

    def record(self) -> "Event":
        _c.event_record(self.handle, self.device)
        return self

    def wait(self, device: int | None = None) -> None:
        """The current stream of ``device`` (default: the event's) waits for the event."""
        _c.event_wait(self.handle, self.device if device is None else _device(device))

    def synchronize(self) -> None:
        _c.event_synchronize(self.handle)

    def __del__(self):
        if getattr(self, "handle", 0) and _c is not None:
            _c.event_destroy(self.handle)
            self.handle = 0


class pin_host_memory:
    """Page-lock a NumPy array's memory (``cudaHostRegister``) while the block runs, so that
    :func:`copy` from it is one asynchronous DMA with no staging copy:

        with cuda.pin_host_memory(batch):
            cuda.copy(dev_batch, batch)     # returns at once; keep `batch` unchanged until done

    Meant for long-lived buffers (the data loader's batch slots): registering costs far more than
    one copy.
    """

    def __init__(self, array: np.ndarray):
        _require()
        if not isinstance(array, np.ndarray) or not array.flags.c_contiguous:
            raise TypeError("pin_host_memory: expected a C-contiguous numpy array")
        self.array = array
        self.ptr = array.__array_interface__["data"][0]
        self.pinned = False

    def __enter__(self):
        if self.array.nbytes:
            _c.host_register(self.ptr, self.array.nbytes)
            self.pinned = True
        return self.array

    def __exit__(self, *exc):
        if self.pinned:
            _c.host_unregister(self.ptr)
            self.pinned = False


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
    _c.set_device(_device(device))


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
    validation), 2 = tiled implicit GEMM (the default), 3 = tensor-core implicit GEMM in tf32
    (operands rounded to tf32, fp32 accumulate: an explicit opt-in to tf32 precision; sm_80+,
    elsewhere version 2 runs). All compute the same function, version 3 with tf32 rounding.
    This is what ``precision="fp32"`` (the default for float32) runs; ``precision="tf32"`` and
    ``"bf16"`` of the ops choose the tensor-core kernels per call, whatever is set here."""
    _require()
    _c.set_conv_kernel(version)


def get_conv_kernel() -> int:
    """The GPU convolution kernel version in use (see :func:`set_conv_kernel`)."""
    _require()
    return _c.get_conv_kernel()


from .cuda_graph import Graph, GraphCaptureError  # noqa: E402 - CUDA graphs (cuda_graph.py)
__all__ += ["Graph", "GraphCaptureError"]
