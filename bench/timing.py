"""The one timing rule of the benchmarks (bench/run.py, bench/conv_cuda.py, bench/train_step.py)."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def median_time(fn, repeat: int, sync: Callable[[], None], inner: int = 1) -> float:
    """Median over `repeat` trials of the mean time of `inner` back-to-back calls. On the GPU the
    calls are queued asynchronously and the trial ends with a device sync, so launch overhead is
    hidden the way it is in a training step."""
    fn()
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times)
