"""map_ordered: the decode/prepare pool (own pipes per worker, no shared locks)."""
import multiprocessing as mp

import pytest

from alexnet_ext.data.parallel import WorkerFailed, map_ordered
from proc_helpers import square_or_fail


def _children():
    return [p for p in mp.active_children() if p.name.startswith("alexnet_ext-")]


@pytest.mark.parametrize("workers", [1, 2])
def test_results_in_order_and_worker_exceptions_reraised(workers):
    jobs = list(range(50))
    assert list(map_ordered(square_or_fail, jobs, workers=workers, chunksize=3)) == [
        j * j for j in jobs]
    with pytest.raises(KeyError, match="minus one"):
        list(map_ordered(square_or_fail, jobs[:20] + [-1] + jobs[20:], workers=workers,
                         chunksize=4))
    assert not _children()


def test_dead_worker_is_an_error_not_a_hang():
    with pytest.raises(WorkerFailed, match="died"):
        list(map_ordered(square_or_fail, list(range(10)) + [-2] + list(range(10)), workers=2,
                         chunksize=2))
    assert not _children()


def test_leaving_early_stops_the_workers():
    it = map_ordered(square_or_fail, list(range(200)), workers=2, chunksize=2)
    assert [next(it) for _ in range(5)] == [0, 1, 4, 9, 16]
    it.close()
    assert not _children()
