"""An in-memory loader for tests of the training loop (not part of the package)."""
import numpy as np


class ArrayLoader:
    """Batches from in-memory arrays, with the interface of :class:`alexnet_ext.data.BatchLoader`.

    ``x`` float32 (N, C, H, W) already preprocessed, ``y`` int (N,). Training order is a
    permutation drawn from (seed, epoch); the last partial batch is dropped when ``train``.
    """

    def __init__(self, x, y, *, batch_size: int, train: bool = True, seed: int = 0):
        self.x = np.ascontiguousarray(x, dtype=np.float32)
        self.y = np.ascontiguousarray(y, dtype=np.int64)
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.wait_seconds = 0.0

    def __len__(self):
        n, b = len(self.y), self.batch_size
        return n // b if self.train else -(-n // b)

    def epoch(self, epoch: int, start_batch: int = 0):
        n = len(self.y)
        order = (np.random.default_rng([self.seed, epoch]).permutation(n) if self.train
                 else np.arange(n))
        for b in range(start_batch, len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield np.ascontiguousarray(self.x[idx]), self.y[idx]

    def close(self):
        pass
