"""alexnet_ext inside PyTorch: the kernels as ``torch.library`` custom ops, modules, and whole
models built from a model file or a trained run.

Importing this subpackage imports torch (``pip install "alexnet_ext[torch]"``); importing
``alexnet_ext`` itself never does.

* :mod:`alexnet_ext.torch.ops` -- ``torch.ops.alexnet_ext.*`` custom ops with fake (meta)
  implementations and autograd: filter_acts / img_acts / weight_acts / conv_bias_grad,
  response_norm(_undo), max_pool(_undo), avg_pool(_undo), dropout(_undo),
  softmax_log_loss(_undo). They work under torch.compile(fullgraph=True) and torch.export.
* :mod:`alexnet_ext.torch.functional` -- the same with keyword arguments and the module
  conventions, plus pure-torch equivalents (``pure=True``) for ONNX and machines without our
  kernels.
* :mod:`alexnet_ext.torch.modules` -- Conv2d, CrossMapLRN, MaxPool2d, AvgPool2d, Dropout,
  SoftmaxLogLoss.
* :func:`from_model` / :func:`load_exported` -- a whole model as a ``torch.nn.Module``
  (:mod:`alexnet_ext.torch.model`).
"""
from __future__ import annotations

try:
    import torch as _torch  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("alexnet_ext.torch needs PyTorch: pip install 'alexnet_ext[torch]' "
                      "(or pip install torch)") from e

from . import _ops as ops
from . import functional
from .model import AlexNetModule, from_model, load_exported
from .modules import AvgPool2d, Conv2d, CrossMapLRN, Dropout, MaxPool2d, SoftmaxLogLoss

__all__ = ["AlexNetModule", "AvgPool2d", "Conv2d", "CrossMapLRN", "Dropout", "MaxPool2d",
           "SoftmaxLogLoss", "from_model", "functional", "load_exported", "ops"]
