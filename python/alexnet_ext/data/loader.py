"""BatchLoader: the paper's training augmentation, computed by worker processes.

What one batch is (paper, Data section)
---------------------------------------
``x = scale * flip(crop(image + lighting - mean))`` as float32 ``(B, C, crop, crop)`` and the
labels ``y`` int64 ``(B,)``, where, for training (``train=True``):

- the epoch's order is a permutation of the split drawn from ``(seed, epoch)``;
- each image gets a crop corner drawn uniformly from all ``(H - crop + 1) x (W - crop + 1)``
  positions, a horizontal flip with probability 1/2 (``flip=True``), and PCA lighting: an RGB
  shift ``P (a * l) / 255`` with ``a ~ N(0, lighting)`` (see :mod:`alexnet_ext.data.stats` for the
  units), added to every pixel; all drawn from ``(seed, epoch, batch index)``, so every use of an
  image draws anew;
- the last partial batch is dropped.

``dtype="uint8"`` hands out the same batches unfinished, as a :class:`RawBatch`
``(x, y, offsets, shift)``: ``x`` uint8 ``(B, C, crop, crop)`` is ``flip(crop(image))``,
``offsets`` int32 ``(B, 3)`` each crop's ``(top, left, flipped)`` and ``shift`` float32 ``(B, C)``
its lighting shift (zeros without lighting), the very values the float path draws for the same
seed. :func:`alexnet_ext.ops.normalize_batch` with the loader's ``mean`` and ``scale`` turns it
into the float32 batch bit for bit, on the GPU where the batch is used (the trainer does this:
a quarter of the bytes cross the bus and a worker's work per image is a copy).

For evaluation (``train=False``) the order is fixed, the crop is the centre crop
(:func:`~alexnet_ext.data.center_crop`), there is no flip and no lighting, and the last batch
may be smaller. Because every random number derives from ``(seed, epoch, batch index)``, the
batches are the same for any worker count, and ``epoch(e, start_batch=k)`` yields exactly the
batches ``k, k+1, ...`` that ``epoch(e)`` would have (resuming a run mid-epoch).

How
---
``workers=0`` computes each batch in the calling process when it is asked for. ``workers=n``
starts ``n`` processes (spawn start method: safe with OpenMP threads in the parent; scripts need
the usual ``if __name__ == "__main__":`` guard) on the first ``epoch()`` call; they stay up until
``close()``. Each computes whole batches directly into shared-memory slots
(``multiprocessing.shared_memory``) and answers with a few bytes over its own pipe; up to
``prefetch`` batches are computed ahead. Shard files are memory-mapped by each worker; in-memory
datasets are copied once into shared memory. The ``x`` handed out is a view of its slot, not a
copy: the slot is reused only after every array viewing it has been garbage-collected, so
keeping a batch is safe (it just holds its slot; more slots are made when needed).
A worker that dies or raises makes the consumer raise ``RuntimeError`` at once (the loader then
closes itself); it never hangs. Workers ignore SIGINT from birth (SIGINT is blocked while they
start, see :mod:`alexnet_ext.data.parallel`): a Ctrl-C, which a terminal sends to every process
of the group, reaches only the consumer, as a ``KeyboardInterrupt`` (or its own handler), never
as a dead worker; the workers are stopped by ``close()``.
"""
from __future__ import annotations

import collections
import multiprocessing as mp
import multiprocessing.connection
import signal
import time
import traceback
import weakref
from multiprocessing import shared_memory

import numpy as np

from .. import _validate as V
from .crops import center_offsets
from .dataset import Split
from .parallel import cpu_count, ignore_sigint, start_processes, stop_processes
from .stats import lighting_shift
from .stores import attach_shared_memory, open_store

# Tags keep the generator streams for the order and for per-batch draws apart.
_ORDER_TAG = 0x6F72646572
_BATCH_TAG = 0x6261746368


def default_workers() -> int:
    """Worker processes when ``workers=None``: half the cores (the other half runs the
    network), at least 1, at most 4."""
    return max(1, min(4, cpu_count() // 2))


class _Augmenter:
    """Everything needed to compute batch ``b`` of epoch ``e`` from image indices (picklable)."""

    def __init__(self, shape, mean, pca, crop, train, flip, lighting, scale, seed):
        self.shape, self.mean, self.pca, self.crop = tuple(shape), mean, pca, crop
        self.train, self.flip, self.lighting, self.scale, self.seed = train, flip, lighting, scale, seed
        self._mean_flipped = None  # mean[:, :, ::-1], made on first use (in each process)
        self.raw = False           # dtype="uint8": fill_raw instead of fill

    def params(self, epoch: int, b: int, n: int):
        """Per image of the batch: crop tops, lefts, flips, RGB shifts (or None)."""
        _, h, w = self.shape
        c = self.crop
        if not self.train:
            y, x = center_offsets(h, w, c)
            return np.full(n, y), np.full(n, x), np.zeros(n, bool), None
        rng = np.random.default_rng([self.seed, epoch, _BATCH_TAG, b])
        # Always draw every stream in the same order, so changing flip/lighting keeps the crops.
        tops = rng.integers(0, h - c + 1, n)
        lefts = rng.integers(0, w - c + 1, n)
        flips = rng.random(n) < 0.5
        alphas = rng.standard_normal((n, 3)) * self.lighting
        if not self.flip:
            flips[:] = False
        shifts = None if self.pca is None or self.lighting == 0 else lighting_shift(self.pca, alphas)
        return tops, lefts, flips, shifts

    def fill(self, store, indices, epoch: int, b: int, out: np.ndarray) -> None:
        """Write the batch of ``indices`` into ``out`` (n, C, crop, crop) float32."""
        tops, lefts, flips, shifts = self.params(epoch, b, len(indices))
        c, mean, w = self.crop, self.mean, self.shape[2]
        if self._mean_flipped is None and flips.any():
            self._mean_flipped = np.ascontiguousarray(mean[:, :, ::-1])
        for i, k in enumerate(indices):
            y, x = tops[i], lefts[i]
            o = out[i]
            # Convert, then subtract: faster than a mixed uint8 - float32 subtract, and the
            # flipped mean crop is read with forward strides from a pre-flipped copy.
            if flips[i]:
                o[...] = store.image(int(k))[:, y:y + c, x:x + c][:, :, ::-1]
                o -= self._mean_flipped[:, y:y + c, w - x - c:w - x]
            else:
                o[...] = store.image(int(k))[:, y:y + c, x:x + c]
                o -= mean[:, y:y + c, x:x + c]
            if shifts is not None:
                o += shifts[i][:, None, None]
            if self.scale != 1.0:
                o *= self.scale


    def fill_raw(self, store, indices, epoch: int, b: int, out) -> None:
        """Write the batch of ``indices`` into the :class:`RawBatch` parts ``out`` (x, offsets,
        shift): the crops flipped as drawn, as uint8, and what :meth:`fill` would do to them."""
        x, offsets, shift = out
        tops, lefts, flips, shifts = self.params(epoch, b, len(indices))
        c = self.crop
        for i, k in enumerate(indices):
            y, l = tops[i], lefts[i]
            img = store.image(int(k))[:, y:y + c, l:l + c]
            x[i] = img[:, :, ::-1] if flips[i] else img
        offsets[:, 0], offsets[:, 1], offsets[:, 2] = tops, lefts, flips
        shift[...] = 0.0 if shifts is None else shifts


class RawBatch(tuple):
    """A ``dtype="uint8"`` batch: ``(x, y, offsets, shift)`` (see the module docstring); finish it
    with ``ops.normalize_batch(x, mean, offsets, shift, scale=scale)``."""
    __slots__ = ()

    def __new__(cls, x, y, offsets, shift):
        return tuple.__new__(cls, (x, y, offsets, shift))

    x = property(lambda self: self[0])
    y = property(lambda self: self[1])
    offsets = property(lambda self: self[2])
    shift = property(lambda self: self[3])


def _raw_layout(n: int, c: int, crop: int):
    """Byte offsets of a raw batch's parts in one block: x (uint8) first, so that the big part
    starts on the block's page boundary (pinned as one range), then offsets (int32) and shift
    (float32), each 16-byte aligned. Returns (offsets start, shift start, end)."""
    o = -(-n * c * crop * crop // 16) * 16
    a = o + -(-n * 3 * 4 // 16) * 16
    return o, a, a + n * c * 4


def _raw_views(buf, n: int, c: int, crop: int):
    """(x, offsets, shift) on the buffer ``buf``, laid out by :func:`_raw_layout`."""
    o, a, end = _raw_layout(n, c, crop)
    raw = np.frombuffer(buf, np.uint8, count=end)
    return (raw[:n * c * crop * crop].reshape(n, c, crop, crop),
            raw[o:o + n * 12].view(np.int32).reshape(n, 3), raw[a:end].view(np.float32).reshape(n, c))


def _worker_main(wid, conn, spec, aug):
    """A worker process: reads tasks from ``conn``, fills shared-memory slots, answers."""
    ignore_sigint()  # Ctrl-C is the parent's business (see alexnet_ext.data.parallel)
    store, slots = None, {}
    try:
        while True:
            try:
                msg = conn.recv()
            except EOFError:  # the parent went away
                return
            if msg is None:
                return
            token, epoch, b, indices, slot, slot_name = msg
            if store is None:
                store = open_store(spec)
            shm = slots.get(slot_name)
            if shm is None:
                shm = slots[slot_name] = attach_shared_memory(slot_name)
            if aug.raw:
                out = _raw_views(shm.buf, len(indices), aug.shape[0], aug.crop)
                aug.fill_raw(store, indices, epoch, b, out)
            else:
                out = np.ndarray((len(indices),) + (aug.shape[0], aug.crop, aug.crop), np.float32,
                                 buffer=shm.buf)
                aug.fill(store, indices, epoch, b, out)
            del out
            conn.send(("done", token, b, slot))
    except Exception:  # noqa: BLE001 - reported to the consumer, which raises
        try:
            conn.send(("error", traceback.format_exc()))
        except OSError:
            pass


class _Slots:
    """Shared-memory blocks for batches; a block is free again when the arrays viewing it die."""

    def __init__(self, nbytes: int):
        self.nbytes = nbytes
        self.blocks: list[shared_memory.SharedMemory] = []
        self.free: collections.deque[int] = collections.deque()
        self.closed = False

    def take(self, grow: bool) -> int | None:
        """A free block; a new one if none is free and ``grow``; else None."""
        if self.free:
            return self.free.popleft()
        if not grow:
            return None
        self.blocks.append(shared_memory.SharedMemory(create=True, size=self.nbytes))
        return len(self.blocks) - 1

    def release(self, s: int) -> None:
        if not self.closed:
            self.free.append(s)

    def view(self, s: int, shape) -> np.ndarray:
        """A float32 array on block ``s``; the block is released when it (and every view of
        it) is gone."""
        flat = np.frombuffer(self.blocks[s].buf, np.float32, count=int(np.prod(shape)))
        # flat.base is the memoryview numpy made for this array: it lives exactly as long as
        # some array built on flat does.
        weakref.finalize(flat.base, self.release, s).atexit = False
        return flat.reshape(shape)

    def raw_views(self, s: int, n: int, c: int, crop: int):
        """(x, offsets, shift) of a raw batch on block ``s``; released like :meth:`view`."""
        parts = _raw_views(self.blocks[s].buf, n, c, crop)
        root = parts[0]
        while isinstance(root, np.ndarray):   # down to the memoryview all three parts share
            root = root.base
        weakref.finalize(root, self.release, s).atexit = False
        return parts

    def close(self) -> None:
        self.closed = True
        for shm in self.blocks:
            try:
                shm.unlink()
            except FileNotFoundError:
                pass
            _close_quietly(shm)


def _close_quietly(shm) -> None:
    try:
        shm.close()
    except BufferError:
        # Still viewed by a batch the consumer holds: drop our handle to the mapping (the
        # views keep it alive; it is unmapped with the last of them) and close the rest.
        shm._mmap = None
        shm.close()


def _exit_reason(proc) -> str:
    code = proc.exitcode
    if code is not None and code < 0:
        try:
            return f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class WorkerError(RuntimeError):
    """A loader worker process died, raised, or stopped answering."""


class _Workers:
    def __init__(self, n: int, spec, aug: _Augmenter, slot_bytes: int):
        ctx = mp.get_context("spawn")
        pipes = [ctx.Pipe(duplex=True) for _ in range(n)]
        try:
            # SIGINT blocked while they start: a Ctrl-C then reaches only this process, as a
            # KeyboardInterrupt once they are up (they are stopped again below).
            self.procs = start_processes([(_worker_main, (w, child, spec, aug),
                                           f"alexnet_ext-loader-{w}")
                                          for w, (_, child) in enumerate(pipes)])
        except BaseException:
            for a, b in pipes:
                a.close()
                b.close()
            raise
        self.conns = [parent for parent, _ in pipes]
        for _, child in pipes:
            child.close()
        self.slots = _Slots(slot_bytes)
        self.pending = [0] * n  # tasks sent and not answered, per worker
        self.token = 0

    @property
    def outstanding(self) -> int:
        return sum(self.pending)

    def submit(self, epoch: int, b: int, indices: np.ndarray, slot: int) -> None:
        w = min(range(len(self.procs)), key=self.pending.__getitem__)
        try:
            self.conns[w].send((self.token, epoch, b, indices, slot, self.slots.blocks[slot].name))
        except OSError:
            self._raise_dead(w)
        self.pending[w] += 1

    def receive(self, timeout: float) -> list[tuple[int, int]]:
        """Block until some worker answers; ``[(batch, slot)]`` for the current token (stale
        answers release their slots). Raises RuntimeError when a worker failed."""
        sentinels = [p.sentinel for p in self.procs]
        ready = set(mp.connection.wait(self.conns + sentinels, timeout))
        if not ready:
            raise WorkerError(f"data loader: no batch from {len(self.procs)} worker process(es) "
                               f"in {timeout:.0f} s (workers alive but stuck?)")
        got = []
        for w, conn in enumerate(self.conns):
            # A worker that failed sent its traceback before exiting: read messages first.
            while conn in ready or self.procs[w].sentinel in ready:
                try:
                    if not conn.poll():
                        break
                    msg = conn.recv()
                except (EOFError, OSError):
                    break
                if msg[0] == "error":
                    raise WorkerError(f"data loader worker {w} (pid {self.procs[w].pid}) raised "
                                       f"an exception:\n{msg[1]}")
                _, token, b, slot = msg
                self.pending[w] -= 1
                if token == self.token:
                    got.append((b, slot))
                else:
                    self.slots.release(slot)
        for w, p in enumerate(self.procs):
            if p.sentinel in ready or not p.is_alive():
                self._raise_dead(w)
        return got

    def _raise_dead(self, w: int):
        p = self.procs[w]
        p.join(1.0)
        raise WorkerError(f"data loader worker {w} (pid {p.pid}) {_exit_reason(p)}; "
                           "the loader is closed")

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(None)
            except OSError:
                pass
        for conn in self.conns:
            conn.close()  # a worker blocked sending an answer gets a broken pipe and exits
        stop_processes(self.procs)
        self.slots.close()


class BatchLoader:
    """Batches ``(x, y)`` of a :class:`~alexnet_ext.data.Split` with the paper's augmentation.

    Args:
        split: the images and labels.
        batch_size: images per batch (B).
        crop: side of the square patches (224 in the paper); at most the image size.
        mean: float32 ``(C, H, W)`` image subtracted from every image (``Dataset.mean``).
        pca: ``(eigvals (3,), eigvecs (3, 3))`` for PCA lighting (``Dataset.pca``), or None.
        train: random order / crops / flips / lighting, drop the last partial batch (True), or
            fixed order, centre crops, keep the last batch (False).
        flip: random horizontal reflections (train only).
        lighting: standard deviation of the lighting coefficients ``a_i`` (paper: 0.1); 0 or
            ``pca=None`` turns lighting off.
        scale: multiplies the result (e.g. 1/255 or 1/std); 1.0 keeps 0..255 units.
        seed: int >= 0; with the epoch and batch index it determines every random draw.
        workers: background processes; 0 computes batches in the calling process;
            None: :func:`default_workers`.
        pin_memory: accepted for the CUDA path; batches are already in shared memory and there
            is no device copy on the CPU, so it changes nothing here.
        prefetch: batches computed ahead (default ``max(4, 2 * workers)``).
        timeout: seconds without any answer from live workers before giving up.
        dtype: ``"float32"`` (finished batches) or ``"uint8"`` (:class:`RawBatch`; see the module
            docstring); :meth:`set_dtype` changes it later.

    ``len(loader)``: batches per epoch. ``loader.epoch(e, start_batch=0)``: iterator of
    ``(x float32 (B, C, crop, crop) C-contiguous, y int64 (B,))``. ``loader.wait_seconds``: total
    time the consumer spent waiting for batches. Use as a context manager or call ``close()``.
    See the module docstring for the exact semantics.
    """

    def __init__(self, split: Split, *, batch_size: int, crop: int, mean: np.ndarray, pca=None,
                 train: bool = True, flip: bool = True, lighting: float = 0.1, scale: float = 1.0,
                 seed: int = 0, workers: int | None = None, pin_memory: bool = False,
                 prefetch: int | None = None, timeout: float = 300.0, dtype: str = "float32"):
        if not isinstance(split, Split):
            raise TypeError(f"split: expected an alexnet_ext.data.Split, got {type(split).__name__}")
        c, h, w = split.image_shape
        self.batch_size = V.integer(batch_size, "batch_size", 1)
        self.crop = V.integer(crop, "crop", 1)
        if self.crop > min(h, w):
            raise ValueError(f"crop: {self.crop} is larger than the images ({h}x{w})")
        V.float_array(mean, "mean", 3, "(C, H, W)")
        V.expect_shape(mean, (c, h, w), "mean", "the split's image shape")
        for name, v in (("train", train), ("flip", flip), ("pin_memory", pin_memory)):
            if not isinstance(v, (bool, np.bool_)):
                raise TypeError(f"{name}: expected a bool, got {type(v).__name__}")
        self.lighting = V.real(lighting, "lighting", 0.0)
        self.scale = V.real(scale, "scale")
        self.seed = V.integer(seed, "seed", 0)
        self.workers = default_workers() if workers is None else V.integer(workers, "workers", 0)
        self.prefetch = (max(4, 2 * self.workers) if prefetch is None
                         else V.integer(prefetch, "prefetch", 1))
        self.timeout = V.real(timeout, "timeout", 0.0, exclusive_min=True)
        if pca is not None:
            pca = _check_pca(pca, c)
        self.train = bool(train)
        self.pin_memory = bool(pin_memory)
        self.split = split
        if self.train and len(split) < self.batch_size:
            raise ValueError(f"batch_size: {self.batch_size} is larger than the split "
                             f"({len(split)} images); training drops partial batches, so every "
                             "epoch would be empty")
        self._aug = _Augmenter((c, h, w), mean, pca, self.crop, self.train, bool(flip),
                               self.lighting, self.scale, self.seed)
        self.mean = mean
        self._workers: _Workers | None = None
        self._store_owner = None
        self.set_dtype(dtype)
        self._closed = False
        self._failed: str | None = None
        self.wait_seconds = 0.0

    @property
    def dtype(self) -> str:
        return "uint8" if self._aug.raw else "float32"

    def set_dtype(self, dtype: str) -> None:
        """Switch between finished float32 batches and :class:`RawBatch` uint8 ones (running
        workers are restarted with the new mode at the next ``epoch()``)."""
        if dtype not in ("float32", "uint8"):
            raise ValueError(f"dtype: expected 'float32' or 'uint8', got {dtype!r}")
        raw = dtype == "uint8"
        if raw != self._aug.raw and self._workers is not None:
            self._workers.close()
            self._workers = None
        self._aug.raw = raw

    def __len__(self) -> int:
        n, b = len(self.split), self.batch_size
        return n // b if self.train else -(-n // b)

    def order(self, epoch: int) -> np.ndarray:
        """Image indices of epoch ``epoch`` in the order they are used."""
        if not self.train:
            return np.arange(len(self.split))
        return np.random.default_rng([self.seed, epoch, _ORDER_TAG]).permutation(len(self.split))

    def epoch(self, epoch: int, start_batch: int = 0):
        """Iterator over the batches ``start_batch, ..., len(self) - 1`` of epoch ``epoch``."""
        epoch = V.integer(epoch, "epoch", 0)
        start_batch = V.integer(start_batch, "start_batch", 0)
        if start_batch > len(self):
            raise ValueError(f"start_batch: expected at most {len(self)} (batches per epoch), "
                             f"got {start_batch}")
        if self._closed:
            raise RuntimeError("BatchLoader is closed" + (f" ({self._failed})" if self._failed else ""))
        if self.workers == 0:
            return self._epoch_inline(epoch, start_batch)
        return self._epoch_workers(epoch, start_batch)

    def _batch(self, order, b):
        return order[b * self.batch_size:(b + 1) * self.batch_size]

    def _epoch_inline(self, epoch, start):
        order = self.order(epoch)
        c = self.split.image_shape[0]
        for b in range(start, len(self)):
            t0 = time.perf_counter()
            idx = self._batch(order, b)
            if self._aug.raw:
                n = len(idx)
                parts = (np.empty((n, c, self.crop, self.crop), np.uint8),
                         np.empty((n, 3), np.int32), np.empty((n, c), np.float32))
                self._aug.fill_raw(self.split.store, idx, epoch, b, parts)
                batch = RawBatch(parts[0], self.split.labels[idx], parts[1], parts[2])
            else:
                x = np.empty((len(idx), c, self.crop, self.crop), np.float32)
                self._aug.fill(self.split.store, idx, epoch, b, x)
                batch = (x, self.split.labels[idx])
            self.wait_seconds += time.perf_counter() - t0
            yield batch

    def _start_workers(self) -> _Workers:
        if self._workers is None:
            spec, owner = self.split.store.worker_spec()
            c = self.split.image_shape[0]
            nbytes = (_raw_layout(self.batch_size, c, self.crop)[2] if self._aug.raw
                      else self.batch_size * c * self.crop * self.crop * 4)
            try:
                self._workers = _Workers(self.workers, spec, self._aug, nbytes)
            except BaseException:  # e.g. Ctrl-C while they start: nothing is left behind
                if owner is not None:
                    owner.unlink()
                    _close_quietly(owner)
                raise
            self._store_owner = owner
        return self._workers

    def _epoch_workers(self, epoch, start):
        pool = self._start_workers()
        pool.token += 1
        token = pool.token
        order = self.order(epoch)
        c, n = self.split.image_shape[0], len(self)
        ready: dict[int, int] = {}
        issued = start
        try:
            for want in range(start, n):
                while want not in ready:
                    if self._closed:
                        raise RuntimeError("BatchLoader was closed during the epoch")
                    if pool.token != token:
                        raise RuntimeError("this epoch iterator was superseded by a later "
                                           "loader.epoch() call")
                    t0 = time.perf_counter()
                    try:
                        while issued < n and pool.outstanding + len(ready) < self.prefetch:
                            slot = pool.slots.take(grow=issued == want)
                            if slot is None:
                                break
                            pool.submit(epoch, issued, self._batch(order, issued), slot)
                            issued += 1
                        ready.update(pool.receive(self.timeout))
                    except WorkerError as e:
                        self._fail(str(e).splitlines()[0])
                        raise
                    finally:
                        self.wait_seconds += time.perf_counter() - t0
                idx = self._batch(order, want)
                if self._aug.raw:
                    x, offsets, shift = pool.slots.raw_views(ready.pop(want), len(idx), c, self.crop)
                    yield RawBatch(x, self.split.labels[idx], offsets, shift)
                else:
                    yield (pool.slots.view(ready.pop(want), (len(idx), c, self.crop, self.crop)),
                           self.split.labels[idx])
        finally:
            if not self._closed:
                for slot in ready.values():
                    pool.slots.release(slot)

    def _fail(self, why: str) -> None:
        self._failed = why
        self.close()

    def close(self) -> None:
        """Stop the workers and free the shared memory (batches still held stay readable)."""
        if self._closed:
            return
        self._closed = True
        if self._workers is not None:
            self._workers.close()
            self._workers = None
        if self._store_owner is not None:
            self._store_owner.unlink()
            _close_quietly(self._store_owner)
            self._store_owner = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def _check_pca(pca, channels):
    if channels != 3:
        raise ValueError(f"pca: PCA lighting needs 3-channel images, the split has {channels}")
    if not isinstance(pca, (tuple, list)) or len(pca) != 2:
        raise TypeError("pca: expected a pair (eigvals (3,), eigvecs (3, 3))")
    vals, vecs = pca
    for name, a, shape in (("pca[0]", vals, (3,)), ("pca[1]", vecs, (3, 3))):
        if not isinstance(a, np.ndarray) or a.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name}: expected a float32 or float64 ndarray")
        V.expect_shape(a, shape, name)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name}: expected finite values")
    return vals.astype(np.float64), vecs.astype(np.float64)
