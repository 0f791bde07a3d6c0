"""Shared by test_add.py and test_add_cuda.py: the elementwise add references, cases and data
makers."""
import numpy as np


SHAPES = {
    "vector": (7,),
    "fc_batch": (3, 4096),
    "nchw_odd": (2, 5, 7, 3),
    "conv2_like": (2, 128, 27, 27),  # large enough for the parallel path
    "batch1": (1, 3, 1, 5),
}


def make_pair(rng, shape):
    a = rng.standard_normal(shape).astype(np.float32)
    b = (rng.standard_normal(shape) * rng.choice([1e-6, 1.0, 1e6], size=shape)).astype(np.float32)
    return a, b
