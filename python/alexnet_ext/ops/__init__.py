"""The functional API: every AlexNet layer as forward and backward ("undo") functions.

Arrays are float32, C-contiguous, NCHW (N images, C channels, H, W); filters are
(F, C/groups, kh, kw); the convolutions also take bfloat16 operands (``precision=``, :func:`cast`). Every function runs on the CPU for NumPy arrays and on the GPU for
:class:`alexnet_ext.cuda.DeviceArray` arguments (results on the same side). Names follow cuda-convnet where it has the word (filterActs, imgActs,
weightActs, "undo" for a backward pass). Every function checks its arguments and raises
``TypeError`` (wrong type or dtype) or ``ValueError`` (wrong shape, layout or value) naming the
argument; see :mod:`alexnet_ext._validate` for the rules shared by all ops.
"""
from ._pool import pool_output_size
from .add import add
from .avg_pool import avg_pool, avg_pool_undo
from .cast import cast
from .conv import conv_bias_grad, conv_output_size, filter_acts, img_acts, weight_acts
from .dropout import dropout, dropout_undo, philox4x32_10
from .fc import fc, fc_undo
from .max_pool import max_pool, max_pool_undo, switch_dtype
from .normalize_batch import normalize_batch
from .relu import relu, relu_undo
from .response_norm import response_norm, response_norm_undo
from .response_norm_max_pool import response_norm_max_pool, response_norm_max_pool_undo
from .sgd_update import sgd_update, sgd_update_many
from .softmax_log_loss import softmax_log_loss, softmax_log_loss_undo, top_k_errors

__all__ = [
    "add",
    "avg_pool",
    "avg_pool_undo",
    "cast",
    "conv_bias_grad",
    "conv_output_size",
    "dropout",
    "dropout_undo",
    "fc",
    "fc_undo",
    "filter_acts",
    "img_acts",
    "max_pool",
    "max_pool_undo",
    "normalize_batch",
    "philox4x32_10",
    "pool_output_size",
    "relu",
    "relu_undo",
    "response_norm",
    "response_norm_undo",
    "response_norm_max_pool",
    "response_norm_max_pool_undo",
    "sgd_update",
    "sgd_update_many",
    "softmax_log_loss",
    "softmax_log_loss_undo",
    "switch_dtype",
    "top_k_errors",
    "weight_acts",
]
