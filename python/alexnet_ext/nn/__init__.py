"""Layers, graphs and model files: everything between the ops and a training loop.

* :func:`load_model` / :class:`ModelSpec` / :class:`ModelError` -- model files (TOML), validated
  and shape-inferred before anything runs (:mod:`.spec`).
* :class:`Net` -- a model built as a graph of layers, merged on one device or split into
  per-column subgraphs; forward, backward, the paper's SGD update (:mod:`.net`).
* :mod:`.layers` -- the registry of layer types: one class per type (keys, shapes, columns,
  construction, forward and backward); :mod:`.schema` -- the checks of model-file keys.
* checkpoints and weight files (:mod:`.checkpoint`), the layer table (:mod:`.summary`).
"""
from .checkpoint import (Checkpoint, export_weights, import_weights, load_checkpoint,
                         resolve_checkpoint, save_checkpoint)
from .net import Net, derive_seed
from .spec import LayerSpec, ModelError, ModelSpec, available_models, load_model, parse_model
from .summary import format_summary, summary_rows

__all__ = [
    "Checkpoint", "LayerSpec", "ModelError", "ModelSpec", "Net", "available_models",
    "derive_seed", "export_weights", "format_summary", "import_weights", "load_checkpoint",
    "load_model", "parse_model", "resolve_checkpoint", "save_checkpoint", "summary_rows",
]
