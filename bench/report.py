"""Where the benchmarks' results go, and the header every result file carries.

Results are written to ``--out`` when given, else into the current working directory (never into
the source tree): ``<kind>-<date>-<device>.json``.
"""
from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import platform
import sys
from pathlib import Path

import alexnet_ext

REPO = Path(__file__).resolve().parent.parent


def header(device: str, script: str, argv: list[str] | None) -> dict:
    """The run's machine and versions, with the command line that produced it (``argv``: the
    script's arguments, ``None`` for this process's own)."""
    try:  # without importing it (seconds)
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = None
    now = dt.datetime.now().astimezone()
    return {
        "date": now.isoformat(timespec="seconds"),
        "device": device,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": alexnet_ext.get_num_threads(),
        "alexnet_ext": alexnet_ext.__version__,
        "torch": torch_version,
        "command": " ".join(["python", script, *(sys.argv[1:] if argv is None else argv)]),
    }


def output_path(out: str | None, kind: str, device: str) -> Path:
    """--out if given, else ``./<kind>-<date>-<device>.json`` in the working directory."""
    if out:
        return Path(out)
    return Path.cwd() / f"{kind}-{dt.date.today():%Y-%m-%d}-{device}.json"


def write(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=str))
    print(f"# results written to {path}")
