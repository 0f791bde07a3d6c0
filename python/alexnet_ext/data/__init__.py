"""Data for AlexNet: datasets, the paper's preprocessing, and its augmentation.

- :func:`open_dataset` recognises a prepared shard directory, an image tree, MNIST-style IDX
  files or CIFAR-10/100 python batches, and returns a :class:`Dataset` (``class_names``,
  ``mean`` image, RGB ``pca``, ``split("train" | "val")`` -> :class:`Split`).
- :class:`BatchLoader` yields ``(x, y)`` batches with random crops, flips and PCA lighting,
  computed by worker processes into shared memory.
- :func:`ten_view_crops` / :func:`center_crop`: the test-time views.
- ``python -m alexnet_ext.prepare SRC OUT`` (:func:`prepare`) turns an image tree into shards.
- :mod:`alexnet_ext.data.synthetic`: a small generated dataset for quick runs.
"""
from .crops import TEN_VIEW_ORDER, center_crop, ten_view_crops
from .dataset import Dataset, Split, open_dataset
from .errors import DatasetError
from .loader import BatchLoader, RawBatch, WorkerError, default_workers
from .prepare import prepare
from .shards import write_shards

__all__ = [
    "BatchLoader",
    "RawBatch",
    "Dataset",
    "DatasetError",
    "Split",
    "TEN_VIEW_ORDER",
    "WorkerError",
    "center_crop",
    "default_workers",
    "open_dataset",
    "prepare",
    "ten_view_crops",
    "write_shards",
]
