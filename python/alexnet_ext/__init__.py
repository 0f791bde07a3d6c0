"""alexnet_ext: AlexNet (Krizhevsky, Sutskever, Hinton 2012) with cuda-convnet style kernels.

The kernels are in :mod:`alexnet_ext.ops` (NumPy arrays on the CPU). The compiled core is
``alexnet_ext._core``; it links OpenBLAS from the ``scipy_openblas32`` wheel, which is imported
first so that the shared library is already loaded when ``_core`` needs it.
"""
from __future__ import annotations

import functools

import scipy_openblas32 as _openblas  # noqa: F401  (loads libscipy_openblas.so for _core)

from . import _core, cuda, ops

try:
    from importlib.metadata import version as _version

    __version__ = _version("alexnet_ext")
except Exception:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0+unknown"

__all__ = [
    "cuda",
    "ops",
    "cuda_available",
    "cuda_status",
    "get_num_threads",
    "set_num_threads",
    "__version__",
]


@functools.lru_cache(maxsize=1)
def cuda_status() -> dict:
    """What this build and the CUDA runtime say about GPUs.

    Keys: ``built_with_cuda``, ``available``, ``reason`` (why not, when unavailable),
    ``runtime_version``, ``driver_version``, ``devices`` (list of dicts).
    """
    return dict(_core.cuda_status())


def cuda_available() -> bool:
    """True when this build has CUDA kernels and a CUDA device is usable.

    When False, ``cuda_status()["reason"]`` says why (CPU-only build, no driver, no device).
    """
    return bool(cuda_status()["available"])


def set_num_threads(n: int) -> None:
    """Threads used by the CPU kernels (OpenMP). Default: all cores, or ``OMP_NUM_THREADS``."""
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """Threads the CPU kernels use."""
    return _core.get_num_threads()
