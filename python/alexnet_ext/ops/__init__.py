"""The functional API: every AlexNet layer as forward and backward ("undo") functions.

Arrays are float32, C-contiguous, NCHW (N images, C channels, H, W); filters are
(F, C/groups, kh, kw). Names follow cuda-convnet where it has the word (filterActs, imgActs,
weightActs, "undo" for a backward pass). Every function checks its arguments and raises
``TypeError`` (wrong type or dtype) or ``ValueError`` (wrong shape, layout or value) naming the
argument; see :mod:`alexnet_ext._validate` for the rules shared by all ops.
"""
from ._pool import pool_output_size
from .avg_pool import avg_pool, avg_pool_undo
from .conv import conv_bias_grad, conv_output_size, filter_acts, img_acts, weight_acts
from .max_pool import max_pool, max_pool_undo, switch_dtype
from .response_norm import response_norm, response_norm_undo

__all__ = [
    "avg_pool",
    "avg_pool_undo",
    "conv_bias_grad",
    "conv_output_size",
    "filter_acts",
    "img_acts",
    "max_pool",
    "max_pool_undo",
    "pool_output_size",
    "response_norm",
    "response_norm_undo",
    "switch_dtype",
    "weight_acts",
]
