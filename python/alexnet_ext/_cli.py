"""Shared pieces of the command-line tools (train, evaluate, features)."""
from __future__ import annotations

import argparse
import re

import sys
from pathlib import Path

import numpy as np

__all__ = ["UsageError", "open_data", "add_run_arguments", "open_run_data", "load_run",
           "checkpoint_mean", "fail", "run_cli", "gpu_unavailable_reason", "output_file"]


class UsageError(Exception):
    """Bad input found before any work: printed as one line, exit status 2."""


def fail(prog: str, err: Exception) -> int:
    print(f"{prog}: error: {err}", file=sys.stderr)
    return 2


def run_cli(prog: str, body, *, usage_errors: tuple = (UsageError,)) -> int:
    """``body()``'s exit status, with the exits every CLI shares.

    ``usage_errors``: one line on stderr and status 2. Ctrl-C that reaches here (before the work
    began, or a second one) gives status 130 without a traceback.
    """
    try:
        return body()
    except usage_errors as e:
        return fail(prog, e)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def gpu_unavailable_reason(status: dict) -> str:
    """Why no GPU is usable, from :func:`alexnet_ext.cuda_status`, in the user's terms.

    Without libcuda (no NVIDIA driver installed) the CUDA runtime reports "CUDA driver version
    is insufficient for CUDA runtime version", which sends people to upgrade a driver they do
    not have: a driver version of 0 means none was found."""
    reason = str(status.get("reason") or "unknown reason")
    if status.get("built_with_cuda") and not status.get("driver_version") and \
            "insufficient" in reason:
        return "no NVIDIA driver was found, so no GPU can be used on this machine"
    return reason


def output_file(path, option: str) -> Path:
    """``path`` checked as a file to be written: its directory exists and it is not a directory
    (checked before the work, so a typo does not cost a whole run)."""
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{option} {path}: is a directory")
    if not p.parent.is_dir():
        raise UsageError(f"{option} {path}: no such directory {p.parent}")
    return p


def open_data(path, spec, *, need_train: bool = True, workers: int | None = None):
    """Open the data set at ``path`` for model ``spec``; every mismatch is a UsageError.

    Returns the Dataset. Checks: the path exists and is a data set, it has a non-empty training
    split (when ``need_train``), its channels match the model's, its images hold the model's crop.
    """
    from .data import DatasetError, open_dataset

    p = Path(path)
    if not p.exists():
        raise UsageError(f"--data {path}: no such file or directory")
    try:
        ds = open_dataset(p, image_size=spec.data["image_size"],
                          workers=None if workers is None else max(1, workers))
    except (DatasetError, OSError) as e:
        raise UsageError(f"--data {path}: {e}") from None
    if need_train:
        train = ds.split("train")
        if train is None or len(train) == 0:
            raise UsageError(f"--data {path}: no training images")
    if ds.channels != spec.channels:
        raise UsageError(f"model '{spec.name}' takes {spec.channels}-channel images, but "
                         f"{path} has {ds.channels}-channel images ({ds.format})")
    h, w = ds.image_size
    crop = spec.data["crop"]
    if crop > min(h, w):
        raise UsageError(f"model '{spec.name}' crops {crop}x{crop} patches, but the images of "
                         f"{path} are {h}x{w}")
    if ds.num_classes < 2:
        raise UsageError(f"--data {path}: found {ds.num_classes} class; classification needs "
                         "at least 2")
    return ds


def load_run(path, *, device: str = "cpu"):
    """Rebuild the net of a checkpoint (file or run directory) with its trained weights.

    Returns ``(net, checkpoint)``.
    """
    from .nn import ModelError, Net, load_checkpoint, parse_model

    try:
        ckpt = load_checkpoint(path)
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from None
    info = ckpt.info
    try:
        spec = parse_model(ckpt.model_text, path=f"{ckpt.path} (model)",
                           classes=info.get("classes"))
    except ModelError as e:
        raise UsageError(str(e)) from None
    net = Net(spec, devices=[device], seed=0)
    load_params(net, ckpt)
    return net, ckpt


def load_params(net, ckpt) -> None:
    """The parameters of ``ckpt`` into ``net``; none or a mismatch is a UsageError naming the file."""
    if not ckpt.params:
        raise UsageError(f"{ckpt.path}: holds no parameters")
    try:
        net.load_state_dict(ckpt.params)
    except ValueError as e:
        raise UsageError(f"{ckpt.path}: {e}") from None


def run_parser(prog: str, description: str, *, data_help: str) -> argparse.ArgumentParser:
    """The parser of a tool that reads a finished run (evaluate, features): its description, the
    exit statuses they share, and the run's arguments (:func:`add_run_arguments`)."""
    p = argparse.ArgumentParser(
        prog=prog, description=description,
        epilog="Exit status: 0 done; 2 bad input (options, data, a missing, damaged or "
               "mismatched checkpoint, an output path that cannot be written), one line on "
               "stderr; 130 interrupted (Ctrl-C).")
    add_run_arguments(p, data_help=data_help)
    return p


def add_run_arguments(parser, *, data_help: str) -> None:
    """The arguments of the tools that read a trained run: RUN_DIR|CHECKPOINT, and --data, whose
    default (the data set the run trained on) :func:`open_run_data` fills in."""
    parser.add_argument("run", metavar="RUN_DIR|CHECKPOINT",
                        help="run directory or checkpoint file")
    parser.add_argument("--data", metavar="PATH", help=data_help)


def open_run_data(data, ckpt, spec, *, need_train: bool = True, workers: int | None = None):
    """Open ``data`` (the ``--data`` value), or, when it is not given, the data set the checkpoint
    ``ckpt`` was trained on, for the checkpoint's model ``spec`` (checks as :func:`open_data`).

    Returns ``(path, dataset)``.
    """
    data = data or ckpt.info.get("data")
    if not data:
        raise UsageError("--data is needed (the checkpoint does not say where its data is)")
    return data, open_data(data, spec, need_train=need_train, workers=workers)


def checkpoint_mean(ckpt, ds) -> np.ndarray:
    """The training set's mean image stored in the checkpoint when it fits ``ds``, else ``ds.mean``."""
    m = ckpt.extra.get("mean")
    if m is not None and m.shape == ds.mean.shape:
        return np.ascontiguousarray(m, dtype=np.float32)
    return ds.mean


_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}


def parse_every(text: str, option: str) -> tuple[int | None, float | None]:
    """``"N"`` -> (N steps, None); ``"30s"``/``"10m"``/``"1h"`` -> (None, seconds); ``"off"`` or
    ``"0"`` -> (None, None)."""
    t = str(text).strip().lower()
    if t in ("off", "0", "none", "never"):
        return None, None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|m|min|h)?", t)
    if m is None:
        raise UsageError(f"{option} {text}: expected a number of steps (500), a time (30s, 10m, "
                         "1h) or 'off'")
    value, unit = m.groups()
    if unit is None:
        if "." in value:
            raise UsageError(f"{option} {text}: a step count is a whole number")
        return int(value), None
    return None, float(value) * _UNITS[unit]
