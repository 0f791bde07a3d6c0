"""Shared by test_relu.py and test_relu_cuda.py: the ReLU references, cases and data makers."""
import numpy as np


SHAPES = {
    "vector": (7,),
    "fc_batch": (3, 4096),
    "nchw_odd": (2, 5, 7, 3),
    "conv1_like": (2, 96, 55, 55),  # large enough for the parallel path
    "five_dims": (2, 1, 3, 1, 5),
}


def make_x(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    x.flat[::7] = 0.0  # exact zeros: max(0, 0) = 0, and no gradient flows through them
    return x
