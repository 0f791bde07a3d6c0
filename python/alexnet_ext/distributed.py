"""Data-parallel training over ``torch.distributed``: one rank per process, launched by torchrun.

``torchrun --nproc_per_node=N -m alexnet_ext.train ...`` starts N copies of the trainer; each
finds ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``/``MASTER_ADDR``/``MASTER_PORT`` in its environment
(:func:`launched`) and joins a process group (:func:`run_rank`): gloo between CPU processes, NCCL
between GPUs (plus a gloo group for the few host numbers a step exchanges). torch is imported
only here, only on that path: the single-process trainer never imports it.

Semantics (what makes N ranks train the same model as one process)
------------------------------------------------------------------
* ``--batch-size B`` is the *global* batch: rank r of W reads samples ``[r*B/W, (r+1)*B/W)`` of
  every global batch (:class:`ShardedBatchLoader`); B must be a multiple of W. The crops, flips
  and lighting of those samples are the rows of the global batch's draws (the loader draws them
  from (seed, epoch, batch index) for the whole batch and keeps the rank's slice), and dropout
  draws the global batch's masks at the rank's rows (``Net.sample_offset``, a ``block`` start of
  ``ops.dropout``). So a rank computes exactly what one process computes for its samples.
* The cost's gradient is the mean over the local B/W samples; the all-reduced SUM divided by W
  is the mean over the global batch, the gradient of one process with batch B. Weight decay and
  momentum then run in ``Net.update`` on identical weights on every rank (broadcast from rank 0
  at the start), so the parameters stay identical, up to the order of fp32 sums.
* Gradients are reduced in buckets of about 25 MB (:class:`GradReducer`), each launched
  asynchronously as soon as the backward pass has finished its layers (``Net.backward(on_grads)``
  reports each layer's parameter blocks, written exactly once per step, so they are final), so
  the communication of the last layers overlaps the backward of the first ones; all buckets are
  waited for before ``Net.update``. On the CPU each bucket is one contiguous float32 buffer and
  the parameters' ``grad`` arrays are views into it: the all-reduce runs on
  ``torch.from_numpy`` of our own memory (zero-copy). On a GPU each gradient DeviceArray goes to
  torch through DLPack (zero-copy); its ``__dlpack__`` orders our stream before torch's, NCCL's
  stream waits for torch's, and after the wait our stream waits on an event recorded on torch's.
* Step totals (loss, error count, images) and the stop flag go in one all-reduce of four
  numbers at the end of every step, so metrics are global, every rank sees the same non-finite
  loss, and a Ctrl-C (torchrun forwards SIGINT to every rank) or a stop requested on any rank
  stops all ranks after the same step: rank 0 saves the one checkpoint, every rank exits 130.
* Validation: every rank evaluates its share of each validation batch; the sums (loss, top-1
  and top-5 error counts, images) are all-reduced, so the schedule sees the same error on every
  rank (error counts are exact integers; the loss sum differs from one process only by rounding).
* Rank 0 alone writes the run directory (config, metrics, pictures, atomic checkpoints, log);
  the checkpoint holds global state only (parameters, velocities, global epoch/batch/step), so
  ``--resume`` works at any world size. Every rank reads the data and, on resume, the checkpoint:
  on several nodes both must be on a shared file system.
* A rank that dies or stops answering makes the others fail their next collective: gloo reports
  a closed connection at once, and every collective has the ``--dist-timeout`` limit (default
  300 s); the rank prints one line naming itself and the cause and exits with status 3. torchrun
  also stops the remaining ranks when one exits with an error.
* ``--gpus 2`` combines with this: each rank runs the paper's two-column split on its own two GPUs
  (``cuda:2*LOCAL_RANK`` and ``cuda:2*LOCAL_RANK+1``), gradients are reduced per GPU.

Environment: ``ALEXNET_EXT_DIST_BUCKET_MB`` sets the bucket size (default 25). Test hooks (used by
tests/test_distributed.py): ``ALEXNET_EXT_TEST_DIST_EXIT=R:K``
makes rank R exit abruptly (``os._exit(17)``) before the backward pass of step K (0-based, counted
over the run); ``ALEXNET_EXT_TEST_DIST_SIGINT=R:K`` sends rank R a SIGINT there (as a Ctrl-C).
"""
from __future__ import annotations

import os
import signal
import sys

import numpy as np

from .data.loader import BatchLoader, _Augmenter
from .trainer import Trainer, on_device
from .nn import device as D
from . import ops

__all__ = ["launched", "current", "World", "RankLost", "run_rank", "ShardedBatchLoader",
           "GradReducer", "DistributedTrainer", "EXIT_RANK_LOST", "BUCKET_BYTES"]

ENV_VARS = ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT")
EXIT_RANK_LOST = 3
BUCKET_BYTES = 25 << 20       # gradient bucket size, as DDP's default
_ALIGN = 64                   # elements: gradient views start 256 bytes apart from the buffer's
                              # start, keeping the alignment of the buffer for vector loads

_current = None


def launched() -> bool:
    """True when this process is one rank of a torchrun (or SLURM+torchrun) job."""
    return all(os.environ.get(k) for k in ENV_VARS)


def current():
    """The :class:`World` of this process while :func:`run_rank` runs, else None."""
    return _current


class RankLost(RuntimeError):
    """A collective failed: another rank died, stopped answering, or the group broke."""


def _env_int(name: str, default=None) -> int:
    v = os.environ.get(name)
    if v is None:
        if default is None:
            raise ValueError(f"{name}: not set (this process is not a torchrun rank)")
        return default
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"{name}: expected an integer, got {v!r}") from None


class World:
    """This rank's place in the job and the collectives the trainer needs.

    ``rank``, ``size`` (world size), ``local_rank``; ``backend`` "gloo" or "nccl";
    ``host_group``: a gloo group for host numbers (None: the default group is gloo). ``gpus``:
    this rank's GPU indices (one per column with ``--gpus 2``; empty on the CPU); the arrays on
    ``gpus[c]`` are reduced in a group of its own (every rank's column c), so each NCCL
    communicator serves one GPU per process.
    """

    def __init__(self, *, backend: str, timeout: float, gpus=()):
        import datetime

        import torch
        import torch.distributed as dist

        self.torch, self.dist = torch, dist
        self.rank = _env_int("RANK")
        self.size = _env_int("WORLD_SIZE")
        self.local_rank = _env_int("LOCAL_RANK", 0)
        self.backend, self.timeout, self.gpus = backend, float(timeout), list(gpus)
        td = datetime.timedelta(seconds=self.timeout)
        if self.gpus:
            torch.cuda.set_device(self.gpus[0])
        try:
            dist.init_process_group(backend=backend, timeout=td)
            self.host_group = dist.new_group(backend="gloo", timeout=td) if backend != "gloo" else None
            # GPU of column 0: the default group; column c > 0: a group of its own
            self.groups = {g: None if c == 0 else dist.new_group(backend=backend, timeout=td)
                           for c, g in enumerate(self.gpus)}
        except Exception as e:  # noqa: BLE001 - rendezvous failures come in many types
            raise RankLost(f"could not join the process group ({backend}): {_one_line(e)}") from None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _call(self, what: str, fn, *a, **k):
        try:
            return fn(*a, **k)
        except Exception as e:  # noqa: BLE001 - DistBackendError, RuntimeError, ...
            raise RankLost(f"{what} failed ({_one_line(e)}); another rank probably died or "
                           f"stopped answering (limit --dist-timeout {self.timeout:g} s)") from None

    def sum(self, values) -> np.ndarray:
        """Element-wise sum over ranks of a few float64 host numbers."""
        a = np.ascontiguousarray(values, dtype=np.float64)
        t = self.torch.from_numpy(a)
        self._call("all_reduce", self.dist.all_reduce, t, group=self.host_group)
        return a

    def broadcast_object(self, obj):
        """Rank 0's ``obj`` (picklable) on every rank."""
        box = [obj]
        self._call("broadcast", self.dist.broadcast_object_list, box, src=0, group=self.host_group)
        return box[0]

    def barrier(self) -> None:
        self._call("barrier", self.dist.barrier, group=self.host_group)

    def tensor(self, a):
        """A zero-copy torch view of a NumPy array or DeviceArray."""
        if isinstance(a, np.ndarray):
            t = self.torch.from_numpy(a)
            if t.data_ptr() != a.ctypes.data:   # never reduce into a copy
                raise RuntimeError("torch.from_numpy made a copy of a gradient buffer")
            return t
        return self.torch.from_dlpack(a)   # DLPack orders our stream before torch's

    def group_of(self, a):
        """The process group that reduces array ``a`` (by its GPU; the default one on the CPU)."""
        return None if isinstance(a, np.ndarray) else self.groups[a.device]

    def all_reduce_async(self, a):
        return self._call("all_reduce", self.dist.all_reduce, self.tensor(a),
                          group=self.group_of(a), async_op=True)

    def broadcast_arrays(self, arrays) -> None:
        """Overwrite ``arrays`` (our parameter buffers) with rank 0's, in place."""
        for a in arrays:
            self._call("broadcast", self.dist.broadcast, self.tensor(a), src=0,
                       group=self.group_of(a))
        self.after_collectives()

    def after_collectives(self) -> None:
        """On GPUs: our stream on each GPU waits for what torch queued there (the collectives'
        results land on torch's current stream once their handles were waited for)."""
        if not self.gpus:
            return
        from . import cuda

        tc = self.torch.cuda
        for g in self.gpus:
            with tc.device(g):
                ev = tc.Event()
                ev.record()
                tc.ExternalStream(cuda.current_stream(), device=g).wait_event(ev)

    def close(self) -> None:
        try:
            self.dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def _one_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"[:200]


def _real_gpu() -> bool:
    from . import cuda_status

    s = cuda_status()
    return bool(s["available"] and not s.get("emulated"))


def run_rank(args, body, *, prog: str) -> int:
    """Join the process group, run ``body()`` (the trainer's command) as this rank, leave.

    ``args``: the parsed command line (``device``, ``gpus``, ``dist_timeout``); sets
    ``args.device`` (the same default as one process: the GPU when one is usable) and
    ``args.dist`` (the :class:`World`). A lost rank: one line on stderr, exit status 3.
    """
    global _current
    try:
        import torch  # noqa: F401
    except ImportError:
        print(f"{prog}: error: running under torchrun needs PyTorch (pip install "
              "'alexnet_ext[dist]')", file=sys.stderr)
        return 2
    if args.device is None:
        args.device = "cuda" if _real_gpu() else "cpu"
    try:
        local_rank, rank = _env_int("LOCAL_RANK", 0), _env_int("RANK")
        _env_int("WORLD_SIZE")
    except ValueError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    n = args.gpus or 1
    gpus = range(local_rank * n, (local_rank + 1) * n) if args.device == "cuda" else ()
    try:
        world = World(backend="nccl" if gpus else "gloo", timeout=args.dist_timeout, gpus=gpus)
    except RankLost as e:
        print(f"{prog}: error: rank {rank}: {e}", file=sys.stderr)
        return EXIT_RANK_LOST
    args.dist = _current = world
    failed = False
    try:
        return body()
    except RankLost as e:
        failed = True
        print(f"{prog}: error: rank {world.rank} of {world.size}: {e}", file=sys.stderr)
        sys.stderr.flush()
        sys.stdout.flush()
        # The group is broken: tearing it down could block on the dead peer.
        os._exit(EXIT_RANK_LOST)
    finally:
        _current = None
        if not failed:
            world.close()


# ---------------------------------------------------------------------------------------------
# Data: every rank its slice of each global batch, with the global batch's random draws


class _ShardAugmenter(_Augmenter):
    """The loader's augmenter for rank ``rank`` of ``world``: the draws of the global batch
    (``world`` times the local size, from the same (seed, epoch, batch) stream), sliced."""

    def __init__(self, base: _Augmenter, rank: int, world: int):
        self.__dict__.update(base.__dict__)
        self.rank, self.world = rank, world

    def params(self, epoch: int, b: int, n: int):
        if not self.train:            # centre crops: nothing random
            return super().params(epoch, b, n)
        tops, lefts, flips, shifts = super().params(epoch, b, n * self.world)
        s = slice(self.rank * n, (self.rank + 1) * n)
        return tops[s], lefts[s], flips[s], None if shifts is None else shifts[s]


class ShardedBatchLoader(BatchLoader):
    """A :class:`~alexnet_ext.data.BatchLoader` of rank ``rank`` of ``world_size``.

    ``batch_size`` is the global batch B; each global batch ``b`` (the same images, order and
    draws as one process's batch ``b``) is cut into ``world_size`` consecutive slices and this
    rank yields its own: ``[m*r//W, m*(r+1)//W)`` of the batch's m images (m = B in training,
    where B must be a multiple of W; a last validation batch may leave a rank an empty slice).
    ``len()`` is the number of global batches, so step and batch counters are global.
    """

    def __init__(self, split, *, rank: int, world_size: int, **kwargs):
        super().__init__(split, **kwargs)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank: expected 0 <= rank < world_size ({world_size}), got {rank}")
        if self.train and self.batch_size % world_size:
            raise ValueError(f"--batch-size: the global batch of {self.batch_size} images does "
                             f"not split evenly over {world_size} ranks; use a multiple of "
                             f"{world_size}")
        self.rank, self.world_size = rank, world_size
        self._aug = _ShardAugmenter(self._aug, rank, world_size)

    def _batch(self, order, b):
        whole = super()._batch(order, b)
        m, r, w = len(whole), self.rank, self.world_size
        return whole[m * r // w:m * (r + 1) // w]

    def sample_offset(self) -> int:
        """First sample of this rank within a (full) training batch."""
        return self.batch_size * self.rank // self.world_size


# ---------------------------------------------------------------------------------------------
# Gradients: bucketed asynchronous all-reduce over views of our own buffers


class _Bucket:
    def __init__(self, params, device):
        self.params = list(params)
        self.device = device
        self.ids = {id(p) for p in self.params}
        self.nbytes = sum(int(np.prod(p.shape)) * 4 for p in self.params)
        self.flat = None            # CPU: the contiguous buffer the grads are views of
        self.pending = set()
        self.handles = []
        self.launched = False


class GradReducer:
    """All-reduces every parameter gradient of ``net`` over ``world`` (mean over ranks).

    Buckets follow the backward order (last layer first) and hold about ``bucket_bytes`` each,
    per device. Call :meth:`ready` with the parameters whose gradients are final (the
    ``on_grads`` callback of ``Net.backward``) and :meth:`finish` before the update.
    """

    def __init__(self, net, world: World, bucket_bytes: int | None = None):
        if bucket_bytes is None:  # ALEXNET_EXT_DIST_BUCKET_MB: tests use tiny buckets
            mb = os.environ.get("ALEXNET_EXT_DIST_BUCKET_MB")
            bucket_bytes = BUCKET_BYTES if not mb else max(1, int(float(mb) * 2**20))
        self.world, self.net = world, net
        order = [p for layer in reversed(net.layers) for p in layer.params]
        self.buckets: list[_Bucket] = []
        for device in dict.fromkeys(p.device for p in order):
            cur, size = [], 0
            for p in (q for q in order if q.device == device):
                cur.append(p)
                size += int(np.prod(p.shape)) * 4
                if size >= bucket_bytes:
                    self.buckets.append(_Bucket(cur, device))
                    cur, size = [], 0
            if cur:
                self.buckets.append(_Bucket(cur, device))
        self._of = {id(p): b for b in self.buckets for p in b.params}
        for b in self.buckets:
            if not D.is_cuda(b.device):
                self._flatten(b)
        self._reset()

    @staticmethod
    def _flatten(b: _Bucket) -> None:
        """One float32 buffer for the bucket; each Param's ``grad`` becomes a view into it."""
        sizes = [int(np.prod(p.shape)) for p in b.params]
        offsets, n = [], 0
        for s in sizes:
            offsets.append(n)
            n += -(-s // _ALIGN) * _ALIGN
        b.flat = np.zeros(n, np.float32)
        for p, off, s in zip(b.params, offsets, sizes):
            p.grad = b.flat[off:off + s].reshape(p.shape)

    def _reset(self) -> None:
        for b in self.buckets:
            b.pending = set(b.ids)
            b.handles = []
            b.launched = False

    def ready(self, params) -> None:
        """``params``' gradients are final: launch their bucket when it is complete."""
        for p in params:
            b = self._of[id(p)]
            b.pending.discard(id(p))
            if not b.pending and not b.launched:
                self._launch(b)

    def _launch(self, b: _Bucket) -> None:
        w = self.world
        b.launched = True
        arrays = [b.flat] if b.flat is not None else [p.grad for p in b.params]
        for a in arrays:
            b.handles.append(w.all_reduce_async(a))

    def finish(self) -> None:
        """Wait for every bucket; the gradients then hold the mean over ranks."""
        w = self.world
        for b in self.buckets:          # a parameter never reported still gets reduced
            if not b.launched:
                self._launch(b)
        inv = 1.0 / w.size
        for b in self.buckets:
            for h in b.handles:
                w._call("all_reduce", h.wait)
            if b.flat is not None:
                b.flat *= np.float32(inv)
            else:
                for p in b.params:
                    w.tensor(p.grad).mul_(inv)
        w.after_collectives()
        self._reset()


# ---------------------------------------------------------------------------------------------
# The loop


def _test_hook(name: str, rank: int):
    v = os.environ.get(name)
    if not v:
        return None
    r, k = (int(s) for s in v.split(":"))
    return k if r == rank else None


class DistributedTrainer(Trainer):
    """:class:`~alexnet_ext.trainer.Trainer` as one rank of a data-parallel job (see the module
    docstring). ``world``: the :class:`World`; the loaders are :class:`ShardedBatchLoader`;
    ``run_dir`` is given on rank 0 only (the others write nothing)."""

    def __init__(self, net, learning, train_loader, val_loader=None, *, world: World, **kwargs):
        super().__init__(net, learning, train_loader, val_loader, **kwargs)
        self.world = world
        net.sample_offset = train_loader.sample_offset()
        # Identical weights and velocities on every rank, whatever each one loaded.
        world.broadcast_arrays([a for p in net.params for a in (p.value, p.velocity)])
        self.reducer = GradReducer(net, world)
        self.log(f"data parallel: {world.size} ranks ({world.backend}), "
                 f"{len(self.reducer.buckets)} gradient bucket(s) of up to "
                 f"{max(b.nbytes for b in self.reducer.buckets) / 2**20:.3g} MB")
        self._agreed_stop = False
        self._exit_at = _test_hook("ALEXNET_EXT_TEST_DIST_EXIT", world.rank)
        self._sigint_at = _test_hook("ALEXNET_EXT_TEST_DIST_SIGINT", world.rank)

    def _backward(self) -> None:
        step = self.state["step"]
        if step == self._exit_at:
            os._exit(17)
        if step == self._sigint_at:
            os.kill(os.getpid(), signal.SIGINT)
        self.net.backward(on_grads=self.reducer.ready)
        self.reducer.finish()

    def _step_totals(self, loss, errors, images):
        tot = self.world.sum([loss * images, errors, images, 1.0 if self._stop else 0.0])
        self._agreed_stop = tot[3] > 0
        n = int(round(tot[2]))
        return tot[0] / n, int(round(tot[1])), n

    def _should_stop(self) -> bool:
        return self._agreed_stop

    def _interrupted(self) -> str:
        result = super()._interrupted()
        # Nobody exits before rank 0 has saved: torchrun stops the others when one exits with
        # a non-zero status, which must not cut the checkpoint short.
        self.world.barrier()
        return result

    def _evaluate(self) -> dict:
        net, loader = self.net, self.val_loader
        k5 = min(5, net.spec.classes)
        sums = np.zeros(4)
        offset, net.sample_offset = net.sample_offset, 0
        feed = on_device(net, loader)
        batches = (b for b in loader.epoch(0) if len(b[1]))
        try:
            for x, y in batches if feed is None else feed(batches):
                loss = net.forward(x, y, train=False)
                e1, e5 = ops.top_k_errors(net.probs, net.labels, ks=(1, k5))
                sums += (loss * len(y), e1, e5, len(y))
        finally:
            net.sample_offset = offset
            if feed is not None:
                feed.close()
        tot = self.world.sum(sums)
        n = max(tot[3], 1.0)
        return {"loss": tot[0] / n, "top1": tot[1] / n, "top5": tot[2] / n, "images": int(tot[3])}


def describe_batch(batch: int, world: World | None) -> str:
    """The batch semantics as printed at the start of a run."""
    if world is None or world.size == 1:
        return f"batch {batch}" + (" (global, 1 rank)" if world is not None else "")
    return f"batch {batch} (global: {batch // world.size} per rank x {world.size} ranks)"
