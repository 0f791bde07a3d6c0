"""Batches onto a GPU one step ahead: the copy of batch k+1 overlaps the compute on batch k.

    feed = DeviceFeed(device=0, pin=True)
    for x, y in feed(loader.epoch(e)):       # DeviceArrays on GPU 0
        net.forward(x, y, train=True); ...
    feed.close()                              # before the loader frees its shared memory

How: a ring of ``depth`` device buffers per batch shape, filled on a dedicated copy stream. Before
batch k is handed out, the compute stream (the device's current stream) waits for its copy's
event, so the host never waits for a copy it could overlap. A buffer is refilled only after the
compute stream has passed the point where its last batch was consumed (an event recorded when the
consumer asks for the next batch, i.e. after it queued a whole step on the batch). The host
array of batch k is kept alive until its copy is done, so a loader slot is not reused early.

uint8 batches (a loader with ``dtype="uint8"`` yields :class:`~alexnet_ext.data.RawBatch`
``(x, y, offsets, shift)``): the feed copies the uint8 crops and their offsets and shifts (a
quarter of the float32 batch's bytes) and finishes them on the copy stream with
:func:`alexnet_ext.ops.normalize_batch` (``mean`` and ``scale`` given to the feed, the loader's),
so what it hands out is the float32 batch the loader's float path would have made, bit for bit.
With ``dtype=bfloat16`` (a bf16 net's input) the same kernel rounds it to bfloat16 once, as it
stores it; float32 batches from the host stay float32 (the net rounds them).

``pin=True`` page-locks each distinct host buffer once (``cudaHostRegister``), so the copy is one
asynchronous DMA; use it for loaders that reuse a fixed set of shared-memory slots (workers > 0),
and call :meth:`close` before those slots are freed. Without pinning, each copy is staged through
the package's pinned buffers (one host memcpy, still asynchronous to the GPU).
"""
from __future__ import annotations

import numpy as np

from .. import cuda as C

__all__ = ["DeviceFeed"]


class _Buffer:
    def __init__(self, x_shape, y_shape, device, raw: bool, dtype=np.float32):
        self.x = C.empty(x_shape, dtype if raw else np.float32, device=device)
        self.y = C.empty(y_shape, np.int64, device=device)
        if raw:  # the uint8 crops, their (top, left, flipped) rows and lighting shifts
            self.crops = C.empty(x_shape, np.uint8, device=device)
            self.offsets = C.empty((x_shape[0], 3), np.int32, device=device)
            self.shift = C.empty((x_shape[0], x_shape[1]), np.float32, device=device)
        self.consumed = None        # Event recorded on the compute stream after its last use


class DeviceFeed:
    def __init__(self, device: int = 0, *, depth: int = 2, pin: bool = False, mean=None,
                 scale: float = 1.0, dtype=np.float32):
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(C.bfloat16)):
            raise TypeError(f"dtype: expected float32 or bfloat16, got {self.dtype}")
        if depth < 2:
            raise ValueError(f"depth: expected at least 2 (one batch in use, one being copied), got {depth}")
        self.device = C._device(device)
        self.depth = depth
        self.pin = bool(pin)
        previous = C.get_device()
        C.set_device(self.device)
        try:
            self.stream = C.Stream()           # the copy stream, on `device`
        finally:
            C.set_device(previous)
        self._rings: dict[tuple, list[_Buffer]] = {}
        self._next: dict[tuple, int] = {}
        self._pinned: dict[int, C.pin_host_memory] = {}   # host address -> its registration
        # For uint8 batches: the loader's mean image (once on the device) and scale.
        self._mean_host = mean
        self._mean = None
        self.scale = float(scale)

    def _pin(self, a: np.ndarray) -> None:
        if not self.pin or not a.flags.c_contiguous or a.nbytes == 0:
            return
        addr = a.__array_interface__["data"][0]
        if addr not in self._pinned:      # a loader slot seen before keeps its registration
            p = C.pin_host_memory(a)
            p.__enter__()
            self._pinned[addr] = p

    def _device_mean(self):
        if self._mean is None:
            if self._mean_host is None:
                raise ValueError("mean: a DeviceFeed given uint8 batches (RawBatch) needs the "
                                 "loader's mean image: DeviceFeed(..., mean=loader.mean, "
                                 "scale=loader.scale)")
            self._mean = C.to_device(np.ascontiguousarray(self._mean_host, np.float32), self.device)
        return self._mean

    def _issue(self, x: np.ndarray, y: np.ndarray, *raw):
        """Queue the copy of (x, y) (and, for a RawBatch, its offsets and shifts plus the kernel
        finishing it) on the copy stream; returns what _deliver needs."""
        from .. import ops
        if raw:
            offsets, shift = raw
            x = np.ascontiguousarray(x, dtype=np.uint8)
            raw = (np.ascontiguousarray(offsets, dtype=np.int32),
                   np.ascontiguousarray(shift, dtype=np.float32))
        else:
            x = np.ascontiguousarray(x, dtype=np.float32)
        y = np.ascontiguousarray(y, dtype=np.int64)
        key = (x.shape, y.shape, bool(raw))
        ring = self._rings.setdefault(key, [])
        i = self._next.get(key, 0)
        self._next[key] = (i + 1) % self.depth
        if len(ring) <= i:
            ring.append(_Buffer(x.shape, y.shape, self.device, bool(raw), self.dtype))
        buf = ring[i]
        self._pin(x)   # (offsets and shifts are a few bytes: staged)
        with self.stream:
            if buf.consumed is not None:
                buf.consumed.wait()            # the compute stream is done with this buffer
            C.copy(buf.y, y)
            if raw:
                mean = self._device_mean()     # uploaded on this stream, before its first use
                C.copy(buf.crops, x)
                C.copy(buf.offsets, raw[0])
                C.copy(buf.shift, raw[1])
                # Finished here, on the copy stream: never waits (a bad offset is reported at
                # the next synchronisation, see ops.normalize_batch).
                ops.normalize_batch(buf.crops, mean, buf.offsets, buf.shift, scale=self.scale,
                                    out=buf.x)
            else:
                C.copy(buf.x, x)
            ready = C.Event(self.device).record()
        return buf, ready, (x, y, raw)

    def __call__(self, batches):
        """Iterator of (x float32, y int64) DeviceArrays for an iterator of host batches: (x
        float32, y int64) pairs or RawBatches (finished on the GPU)."""
        it = iter(batches)
        try:
            pending = self._issue(*next(it))
        except StopIteration:
            return
        while pending is not None:
            buf, ready, host = pending
            try:
                pending = self._issue(*next(it))   # the next copy runs while this batch computes
            except StopIteration:
                pending = None
            ready.wait()                           # the compute stream waits for this copy
            yield buf.x, buf.y
            # The consumer asked for the next batch: it has queued all its work on this one.
            buf.consumed = C.Event(self.device).record()
            ready.synchronize()                    # the copy has read `host`: let the slot go
            del host

    def close(self) -> None:
        """Wait for the copies in flight and unpin the host buffers."""
        if getattr(self, "stream", None) is not None:
            self.stream.synchronize()
        for p in self._pinned.values():
            p.__exit__(None, None, None)
        self._pinned.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
