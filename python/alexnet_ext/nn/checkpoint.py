"""Checkpoints and weight files (safetensors), written atomically.

Checkpoint (``checkpoint.safetensors`` in a run directory): arrays ``param/NAME`` and
``velocity/NAME`` for every canonical parameter (``conv1.weight``, ...), ``extra/NAME`` for other
arrays a run needs to continue or to evaluate (the training set's mean image), and string
metadata: ``format``, ``state`` (JSON: epoch, step, lr, schedule, seeds, ...), ``model`` (the
model file's text) and ``info`` (JSON: class names, data path, ...). A checkpoint is therefore
self-contained: the net can be rebuilt from it alone. ``checkpoint.json`` beside it repeats the
state for people and scripts; the .safetensors file is the authority.

Weight file (:func:`export_weights`): only the parameters, named ``LAYER.weight`` and
``LAYER.bias``: conv weights (out, in/groups, kh, kw) = OIHW, fc weights (out, in) with the input
flattened channel-major from NCHW -- the layouts of PyTorch's Conv2d and Linear (see
docs/MODELS.md for the mapping onto a torch module).

Atomic writes: the file is written under a temporary name in the same directory, flushed to disk,
then renamed over the old one, so a crash or Ctrl-C leaves either the old or the new file.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

__all__ = ["CHECKPOINT_NAME", "Checkpoint", "save_checkpoint", "load_checkpoint",
           "resolve_checkpoint", "export_weights", "import_weights", "atomic_write_text"]

CHECKPOINT_NAME = "checkpoint.safetensors"
CHECKPOINT_FORMAT = "alexnet_ext-checkpoint-1"
WEIGHTS_FORMAT = "alexnet_ext-weights-1"


def _fsync_replace(tmp: Path, path: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_text(path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    _fsync_replace(tmp, path)


def _atomic_save(tensors: dict, path: Path, metadata: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp),
                  metadata=metadata)
        _fsync_replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@dataclass
class Checkpoint:
    path: Path
    params: dict
    velocities: dict
    extra: dict
    state: dict
    model_text: str
    info: dict


def save_checkpoint(path, net, state: dict, *, extra: dict | None = None,
                    info: dict | None = None) -> Path:
    """Write ``net``'s parameters and velocities, ``extra`` arrays and the JSON ``state``."""
    path = Path(path)
    tensors = {f"param/{k}": v for k, v in net.state_dict("value").items()}
    tensors.update({f"velocity/{k}": v for k, v in net.state_dict("velocity").items()})
    for k, v in (extra or {}).items():
        tensors[f"extra/{k}"] = np.asarray(v, dtype=np.float32)
    meta = {"format": CHECKPOINT_FORMAT, "state": json.dumps(state), "model": net.spec.text,
            "info": json.dumps(info or {})}
    _atomic_save(tensors, path, meta)
    atomic_write_text(path.with_suffix(".json"), json.dumps(state, indent=2) + "\n")
    return path


def resolve_checkpoint(path) -> Path:
    """A checkpoint file, or a run directory holding ``checkpoint.safetensors``."""
    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT_NAME
        if not p.is_file():
            raise FileNotFoundError(f"{path}: no {CHECKPOINT_NAME} in this directory "
                                    "(is it a run directory of python -m alexnet_ext.train?)")
        return p
    if not p.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file or run directory")
    return p


def _read(path: Path):
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
    return meta, arrays


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (file or run directory)."""
    path = resolve_checkpoint(path)
    meta, arrays = _read(path)
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not an alexnet_ext checkpoint (format "
                         f"{meta.get('format')!r}; weight files load with import_weights)")
    groups = {"param": {}, "velocity": {}, "extra": {}}
    for k, v in arrays.items():
        kind, _, name = k.partition("/")
        if kind in groups:
            groups[kind][name] = v
    return Checkpoint(path=path, params=groups["param"], velocities=groups["velocity"],
                      extra=groups["extra"], state=json.loads(meta["state"]),
                      model_text=meta["model"], info=json.loads(meta.get("info", "{}")))


def export_weights(net, path) -> Path:
    """All parameters of ``net`` as one safetensors file of named OIHW / (out, in) arrays."""
    path = Path(path)
    meta = {"format": WEIGHTS_FORMAT, "model": net.spec.name,
            "layout": "conv: (out, in/groups, kh, kw); fc: (out, in), in = flattened NCHW"}
    _atomic_save(net.state_dict("value"), path, meta)
    return path


def import_weights(net, path, *, strict: bool = True) -> None:
    """Load parameters from a weight file (:func:`export_weights`, or one written from a PyTorch
    ``state_dict`` with the same names) or from a checkpoint's ``param/`` arrays.

    With ``strict`` every parameter of the net must be present and nothing else; shapes must match.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{path}: no such weight file")
    meta, arrays = _read(p)
    if meta.get("format") == CHECKPOINT_FORMAT:
        arrays = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    net.load_state_dict(arrays, strict=strict)
