"""Worker processes for decoding, and how every data worker is started.

Starting (:func:`start_processes`): spawn start method (safe with OpenMP/BLAS threads in the
parent), with SIGINT blocked in the parent while the children are created. A child inherits the
blocked mask through fork and exec, so a Ctrl-C, which a terminal sends to the whole process
group, cannot kill it while it is still importing; the child's first act (:func:`ignore_sigint`)
is to ignore SIGINT and unblock it, which discards one that is pending. Ctrl-C is therefore only
ever the parent's business: the parent gets it (when the block is lifted, if it came during the
start) and tears the workers down.

Mapping (:func:`map_ordered`): no ``multiprocessing.Pool``. A pool shares one task queue and one
result queue, guarded by locks between processes; a worker interrupted while holding one leaves
the pool's teardown waiting on it forever (Ctrl-C during a decode hung ``train``). Here each
worker has its own pipe: the parent sends it chunks of jobs (at most two outstanding), it sends
back the chunk's results, and progress reports (:func:`report_progress`). Teardown asks each
worker to stop, closes the pipes (a worker still sending gets a broken pipe and exits), waits
two seconds, then terminates and finally kills what is left. Nothing in it can block on a
worker.
"""
from __future__ import annotations

import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import threading
import time
from contextlib import contextmanager

from tqdm import tqdm


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def ignore_sigint() -> None:
    """In a worker: ignore SIGINT and lift the block inherited from :func:`start_processes`
    (a SIGINT pending since then is discarded)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@contextmanager
def _sigint_held():
    """SIGINT blocked in this thread (children started meanwhile inherit the mask) and, in the
    main thread, held back from Python: other threads (OpenBLAS's) may still take the signal,
    and a KeyboardInterrupt in the middle of a start would leave a half-started child. A SIGINT
    that arrives meanwhile goes to the previous handler when the start is done."""
    main = threading.current_thread() is threading.main_thread()
    got = []
    previous = None
    if main:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: got.append(frame))
    old_mask = None
    if hasattr(signal, "pthread_sigmask"):
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        if old_mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        if main:
            signal.signal(signal.SIGINT, previous)
            if got:
                if callable(previous):
                    previous(signal.SIGINT, got[0])  # default_int_handler raises KeyboardInterrupt
                elif previous == signal.SIG_DFL:
                    signal.raise_signal(signal.SIGINT)


def start_processes(targets) -> list:
    """Start one spawn-method process per ``(target, args, name)`` with SIGINT blocked (see the
    module docstring; ``target`` must call :func:`ignore_sigint` first). Returns the processes
    (daemons). If starting fails or is interrupted, the ones already started are stopped."""
    ctx = mp.get_context("spawn")
    procs = []
    try:
        # Starting the resource tracker (on the first spawn) unblocks SIGINT when it is done:
        # start it first, and block again before each child to be sure.
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
        with _sigint_held():
            for target, args, name in targets:
                p = ctx.Process(target=target, args=args, daemon=True, name=name)
                if hasattr(signal, "pthread_sigmask"):
                    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
                p.start()
                procs.append(p)
    except BaseException:
        stop_processes(procs, grace=0.0)
        raise
    return procs


def stop_processes(procs, grace: float = 2.0) -> None:
    """Wait up to ``grace`` seconds for ``procs`` to exit, then SIGTERM, then SIGKILL."""
    deadline = time.monotonic() + grace
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(1.0)
        if p.is_alive():
            p.kill()
            p.join(1.0)


# --- map_ordered ---------------------------------------------------------------------------

_conn = None  # in a map worker: its pipe to the parent
_local_progress = threading.local()  # in the parent, mapping in-process: the progress callback


def report_progress(n: int = 1) -> None:
    """Called by a mapped function: ``n`` more units done (shown by the caller's progress)."""
    if _conn is not None:
        _conn.send(("progress", n))
    else:
        cb = getattr(_local_progress, "callback", None)
        if cb is not None:
            cb(n)


def _map_worker(conn, fn) -> None:
    global _conn
    ignore_sigint()
    _conn = conn
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return
            if msg is None:
                return
            chunk_id, jobs = msg
            try:
                results = [fn(job) for job in jobs]
            except Exception as e:  # noqa: BLE001 - re-raised by the parent
                import pickle
                import traceback

                text = traceback.format_exc()
                try:
                    pickle.loads(pickle.dumps(e))
                except Exception:  # noqa: BLE001 - not picklable: send the text only
                    e = None
                conn.send(("error", e, text))
                return
            conn.send(("done", chunk_id, results))
    except (BrokenPipeError, ConnectionResetError, EOFError):
        return  # the parent went away or tore the pool down


class WorkerFailed(RuntimeError):
    """A map worker raised or died."""


def map_ordered(fn, jobs: list, *, workers: int | None = None, desc: str | None = None,
                min_parallel: int = 1, chunksize: int = 16, unit: str = "img",
                progress_total: int | None = None):
    """``fn(job)`` for each job, results in job order (a generator); ``workers`` processes
    (default: all cores) when there are at least ``min_parallel`` jobs, else in this process.
    A tqdm bar when ``desc`` is given: one unit per job, or per :func:`report_progress` unit
    when ``progress_total`` is given. ``fn`` must be a module-level function."""
    workers = cpu_count() if workers is None else workers
    bar = tqdm(total=len(jobs) if progress_total is None else progress_total, desc=desc,
               unit=unit, leave=False,
               disable=True if desc is None else None)  # None: off when not a terminal
    per_job = progress_total is None
    try:
        if workers <= 1 or len(jobs) < max(2, min_parallel):
            _local_progress.callback = None if per_job else bar.update
            try:
                for job in jobs:
                    yield fn(job)
                    if per_job:
                        bar.update()
            finally:
                _local_progress.callback = None
            return
        yield from _map_parallel(fn, jobs, min(workers, len(jobs)), chunksize, bar, per_job)
    finally:
        bar.close()


def _map_parallel(fn, jobs, n, chunksize, bar, per_job):
    chunks = [jobs[i:i + chunksize] for i in range(0, len(jobs), chunksize)]
    pipes = [mp.get_context("spawn").Pipe(duplex=True) for _ in range(n)]
    conns = [parent for parent, _ in pipes]
    procs = []
    try:
        procs = start_processes([(_map_worker, (child, fn), f"alexnet_ext-data-{w}")
                                 for w, (_, child) in enumerate(pipes)])
        for _, child in pipes:
            child.close()
        pending = [None] * n  # the chunk id each worker is working on
        done: dict[int, list] = {}
        sent = 0

        def dead(w):
            procs[w].join(1.0)
            return WorkerFailed(f"data worker {w} (pid {procs[w].pid}) died (exit code "
                                f"{procs[w].exitcode})")

        for want in range(len(chunks)):
            while want not in done:
                # One chunk per worker at a time: a worker is always reading when it is sent
                # one, so neither side can block on a full pipe.
                for w in range(n):
                    if sent < len(chunks) and pending[w] is None:
                        try:
                            conns[w].send((sent, chunks[sent]))
                        except OSError:
                            raise dead(w) from None
                        pending[w] = sent
                        sent += 1
                ready = mp.connection.wait(conns + [p.sentinel for p in procs])
                for w in range(n):
                    if conns[w] not in ready and procs[w].sentinel not in ready:
                        continue
                    while conns[w].poll():
                        try:
                            msg = conns[w].recv()
                        except (EOFError, OSError):
                            raise dead(w) from None
                        if msg[0] == "progress":
                            bar.update(msg[1])
                        elif msg[0] == "error":
                            _, exc, text = msg
                            if exc is None:
                                raise WorkerFailed(f"data worker {w} raised:\n{text}")
                            if hasattr(exc, "add_note"):
                                exc.add_note(f"(raised in data worker {w}; its traceback:\n"
                                             f"{text.rstrip()})")
                            raise exc
                        else:
                            _, cid, results = msg
                            pending[w] = None
                            done[cid] = results
                            if per_job:
                                bar.update(len(results))
                    if procs[w].sentinel in ready:  # exited unasked (its messages are read)
                        raise dead(w)
            yield from done.pop(want)
    finally:
        for conn in conns:
            try:
                conn.send(None)
            except OSError:
                pass
            conn.close()
        for _, child in pipes:
            child.close()
        stop_processes(procs)
