"""Image stores: where a split's uint8 images live, and how a worker process reopens them.

A store has ``len()``, ``shape`` (C, H, W), ``image(i)`` (a read-only view ``(C, H, W)``, no copy)
and ``images(indices)``. ``worker_spec()`` returns a small picklable description from which
:func:`open_store` rebuilds an equivalent store in another process (spawn-safe): shard files
are reopened by path (memory-mapped), in-memory arrays are copied once into shared memory,
image files (:class:`FileStore`) are passed as their paths and decoded where they are read.
"""
from __future__ import annotations

import bisect
import sys
from multiprocessing import shared_memory

import numpy as np


def attach_shared_memory(name: str) -> shared_memory.SharedMemory:
    """Attach to an existing block without registering it with this process's resource tracker
    (the creating process owns and unlinks it; a second registration makes the tracker warn
    about, or unlink, a block it does not own)."""
    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name, track=False)
    from multiprocessing import resource_tracker
    register = resource_tracker.register
    resource_tracker.register = lambda *args, **kwargs: None
    try:
        return shared_memory.SharedMemory(name)
    finally:
        resource_tracker.register = register


class ArrayStore:
    """Images held in one uint8 array ``(n, C, H, W)``."""

    def __init__(self, array: np.ndarray, keepalive=None):
        self.array = array
        self._keepalive = keepalive  # e.g. the SharedMemory the array lives in
        self.shape = tuple(array.shape[1:])

    def __len__(self):
        return self.array.shape[0]

    def image(self, i: int) -> np.ndarray:
        return self.array[i]

    def images(self, indices: np.ndarray) -> np.ndarray:
        return self.array[indices]

    def worker_spec(self):
        """Copy the array into a new shared-memory block. Returns ``(spec, owner)``; the caller
        keeps ``owner`` (a SharedMemory) and closes + unlinks it when the workers are done."""
        shm = shared_memory.SharedMemory(create=True, size=max(1, self.array.nbytes))
        view = np.ndarray(self.array.shape, np.uint8, buffer=shm.buf)
        view[...] = self.array
        del view
        return ("shm", shm.name, tuple(self.array.shape)), shm


class _OneByOne:
    """``images()`` as ``image()`` per index, for the stores without a faster batch read."""

    def images(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices),) + self.shape, np.uint8)
        for j, i in enumerate(indices):
            out[j] = self.image(int(i))
        return out


class ShardStore(_OneByOne):
    """Images in shard files ``(n_k, C, H, W)`` uint8 ``.npy``, memory-mapped read-only."""

    def __init__(self, paths: list[str], counts: list[int], shape: tuple[int, int, int]):
        self.paths = [str(p) for p in paths]
        self.counts = [int(c) for c in counts]
        self.shape = tuple(shape)
        self._starts = [0]
        for c in self.counts:
            self._starts.append(self._starts[-1] + c)
        self._maps: list[np.ndarray | None] = [None] * len(self.paths)

    def __len__(self):
        return self._starts[-1]

    def _shard(self, k: int) -> np.ndarray:
        m = self._maps[k]
        if m is None:
            try:
                m = np.load(self.paths[k], mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as e:
                raise OSError(f"{self.paths[k]}: cannot read the shard: {e}") from e
            want = (self.counts[k],) + self.shape
            if m.dtype != np.uint8 or m.shape != want:
                raise ValueError(f"{self.paths[k]}: expected uint8 {want}, found {m.dtype} {m.shape} "
                                 "(the shard does not match index.json)")
            m = m.view(np.ndarray)  # plain ndarray views: indexing a memmap subclass is slower
            self._maps[k] = m
        return m

    def image(self, i: int) -> np.ndarray:
        k = bisect.bisect_right(self._starts, i) - 1
        return self._shard(k)[i - self._starts[k]]

    def worker_spec(self):
        return ("shards", self.paths, self.counts, self.shape), None


class FileStore(_OneByOne):
    """Images decoded from their files when read (image folders; see
    :mod:`alexnet_ext.data.folder`): ``load_image(path, size, draft=draft)`` per image, nothing
    kept. A file that stopped being decodable since it was checked raises DatasetError naming it.
    """

    def __init__(self, paths: list[str], size: int, draft: bool = True):
        self.paths = list(paths)
        self.size = int(size)
        self.draft = bool(draft)
        self.shape = (3, self.size, self.size)

    def __len__(self):
        return len(self.paths)

    def image(self, i: int) -> np.ndarray:
        from .errors import DatasetError
        from .folder import show_path
        from .imageio import load_image

        path = self.paths[i]
        try:
            img = load_image(path, self.size, draft=self.draft)
        except Exception as e:  # noqa: BLE001 - any failure names the file
            raise DatasetError(f"{show_path(path)}: could not be decoded any more (it was when "
                               f"the data set was opened): {type(e).__name__}: {e}") from None
        img.setflags(write=False)
        return img

    def worker_spec(self):
        return ("files", self.paths, self.size, self.draft), None


def open_store(spec):
    """The store described by ``spec`` (from ``worker_spec()``), in this process."""
    kind = spec[0]
    if kind == "shards":
        return ShardStore(*spec[1:])
    if kind == "files":
        return FileStore(*spec[1:])
    if kind == "shm":
        _, name, shape = spec
        shm = attach_shared_memory(name)
        return ArrayStore(np.ndarray(shape, np.uint8, buffer=shm.buf), keepalive=shm)
    raise ValueError(f"unknown store kind {kind!r}")
