"""The layers of a :class:`~alexnet_ext.nn.net.Net` and the registry of layer types.

One module per model-file layer type, each one :class:`~.base.Layer` subclass registered in
:data:`LAYER_TYPES` (schema, shape inference, net construction, forward and backward: see
:mod:`.base`). A new type: its ops, plus one such class in a module imported below.
"""
from .base import LAYER_TYPES, Layer, Param, Tensor, Transfer, emit_grad, register
from .weighted import Weighted
from .conv import Conv
from .fc import FC
from .relu import ReLU
from .lrn import LRN, LRNMaxPool
from .pool import Pool
from .dropout import Dropout
from .softmax import Softmax

__all__ = ["LAYER_TYPES", "register", "emit_grad", "Tensor", "Param", "Layer", "Weighted",
           "Conv", "FC", "ReLU", "LRN", "LRNMaxPool", "Pool", "Dropout", "Softmax", "Transfer"]
