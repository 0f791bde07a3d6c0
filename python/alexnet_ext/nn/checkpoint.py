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

Atomic writes: the file is written under a fresh temporary name in the same directory (created
exclusively, so a planted file or symlink of that name is never followed), flushed to disk, then
renamed over the old one, so a crash, Ctrl-C or a full disk leaves either the old or the new file
and no temporary. The safetensors file is written here (8-byte header length, JSON header, the
tensors back to back), streaming each array to the file without a copy of the whole checkpoint.

Integrity: the metadata key ``crc32`` holds a JSON object {tensor name: CRC-32 of its bytes};
loading verifies every tensor against it and names the damaged one. Files without the key (written
before it existed, or by other tools) load unverified. A checkpoint is never written with a
non-finite parameter or velocity (:class:`NonFiniteError`): after divergence the last good one
stays.

Run-directory helpers: :func:`lock_run_dir` (one process per run directory, by ``fcntl.flock``)
and :func:`open_append` (appending to logs without following a symlink).
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import safe_open

__all__ = ["CHECKPOINT_NAME", "BEST_NAME", "Checkpoint", "NonFiniteError", "RunDirLocked",
           "save_checkpoint", "load_checkpoint", "resolve_checkpoint", "export_weights",
           "import_weights", "atomic_write", "atomic_write_text", "lock_run_dir", "open_append"]

CHECKPOINT_NAME = "checkpoint.safetensors"
BEST_NAME = "best.safetensors"
CHECKPOINT_FORMAT = "alexnet_ext-checkpoint-1"
WEIGHTS_FORMAT = "alexnet_ext-weights-1"
LOCK_NAME = ".lock"

_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.int64): "I64",
           np.dtype(np.int32): "I32", np.dtype(np.uint8): "U8"}


class NonFiniteError(ValueError):
    """A tensor to be saved holds NaN or infinity."""


class RunDirLocked(RuntimeError):
    """Another process holds the run directory."""


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path, write) -> None:
    """``write(f)`` into an exclusively created temporary beside ``path``, fsync, rename over
    ``path``. On any failure the temporary is removed and ``path`` is untouched."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), _file_mode())
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path, text: str) -> None:
    path = Path(path)
    data = text.encode("utf-8")
    atomic_write(path, lambda f: f.write(data))


def open_append(path):
    """``path`` opened for appending text (created if missing); a symlink there is refused
    (OSError ELOOP) rather than followed."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o666)
    return os.fdopen(fd, "a", encoding="utf-8")


def _write_safetensors(f, tensors: dict, metadata: dict) -> None:
    """The safetensors layout: u64 little-endian header size, JSON header padded with spaces to
    a multiple of 8, then each tensor's bytes in header order."""
    header, offset = {"__metadata__": metadata}, 0
    for k, v in tensors.items():
        header[k] = {"dtype": _DTYPES[v.dtype], "shape": list(v.shape),
                     "data_offsets": [offset, offset + v.nbytes]}
        offset += v.nbytes
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    f.write(len(h).to_bytes(8, "little"))
    f.write(h)
    for v in tensors.values():
        if v.nbytes:
            f.write(memoryview(v.reshape(-1)).cast("B"))


def _crc(a: np.ndarray) -> int:
    return zlib.crc32(memoryview(np.ascontiguousarray(a).reshape(-1)).cast("B")) if a.nbytes else 0


def _atomic_save(tensors: dict, path: Path, metadata: dict) -> None:
    arrays = {}
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k])
        if a.dtype not in _DTYPES:
            raise TypeError(f"{k}: cannot store dtype {a.dtype}")
        arrays[k] = a.astype(a.dtype.newbyteorder("<"), copy=False)
    meta = dict(metadata, crc32=json.dumps({k: _crc(a) for k, a in arrays.items()}))
    atomic_write(path, lambda f: _write_safetensors(f, arrays, meta))


def lock_run_dir(run_dir):
    """Hold an exclusive lock on ``run_dir`` (``fcntl.flock`` on ``run_dir/.lock``) for the life
    of the returned file object; close it to release. The lock dies with the process, so a killed
    trainer never leaves a stale lock. Raises :class:`RunDirLocked` naming the holder's pid when
    another process has it."""
    import fcntl

    path = Path(run_dir) / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    f = os.fdopen(fd, "r+", encoding="utf-8")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = f.read().strip()
        f.close()
        if e.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
            raise RunDirLocked(f"{run_dir}: in use by another trainer"
                               + (f" (pid {holder})" if holder else "")) from None
        raise
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


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
    for k, v in tensors.items():
        if not np.all(np.isfinite(v)):
            err = NonFiniteError(f"{path}: not written: {k} holds non-finite values")
            err.tensor = k
            raise err
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
    if "crc32" in meta:
        try:
            sums = json.loads(meta["crc32"])
        except ValueError:
            raise ValueError(f"{path}: damaged metadata (the tensor checksums are not JSON)") \
                from None
        for k, a in arrays.items():
            if k not in sums:
                raise ValueError(f"{path}: tensor {k} has no checksum (the file was altered)")
            if _crc(a) != sums[k]:
                raise ValueError(f"{path}: tensor {k} is damaged (its CRC-32 does not match the "
                                 "one stored when it was written)")
    return meta, arrays


def _meta_json(path: Path, meta: dict, key: str):
    if key not in meta:
        raise ValueError(f"{path}: incomplete checkpoint (no '{key}' metadata)")
    try:
        return json.loads(meta[key])
    except ValueError:
        raise ValueError(f"{path}: damaged checkpoint ('{key}' metadata is not JSON)") from None


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (file or run directory).

    Raises FileNotFoundError, or ValueError naming the file and what is wrong with it (not
    safetensors, a damaged tensor, missing metadata, no parameters)."""
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
    if "model" not in meta:
        raise ValueError(f"{path}: incomplete checkpoint (no 'model' metadata)")
    state, info = _meta_json(path, meta, "state"), json.loads(meta.get("info", "{}"))
    if not isinstance(state, dict) or not isinstance(info, dict):
        raise ValueError(f"{path}: damaged checkpoint (state or info is not a JSON object)")
    return Checkpoint(path=path, params=groups["param"], velocities=groups["velocity"],
                      extra=groups["extra"], state=state, model_text=meta["model"], info=info)


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
