"""Process pools for decoding (spawn start method: safe with OpenMP/BLAS threads in the parent)."""
from __future__ import annotations

import multiprocessing as mp
import os

from tqdm import tqdm


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def map_ordered(fn, jobs: list, *, workers: int | None = None, desc: str | None = None,
                min_parallel: int = 1, chunksize: int = 16):
    """``fn(job)`` for each job, results in job order; a spawn pool of ``workers`` processes
    (default: all cores) when there are at least ``min_parallel`` jobs, else in this process.
    A tqdm bar when ``desc`` is given."""
    workers = cpu_count() if workers is None else workers
    bar = tqdm(total=len(jobs), desc=desc, unit="img", leave=False,
               disable=True if desc is None else None)  # None: off when not a terminal
    try:
        if workers <= 1 or len(jobs) < max(2, min_parallel):
            for job in jobs:
                yield fn(job)
                bar.update()
            return
        with mp.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            for result in pool.imap(fn, jobs, chunksize=chunksize):
                yield result
                bar.update()
    finally:
        bar.close()
