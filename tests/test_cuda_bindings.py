"""The CUDA bindings mirror the CPU ones: same names, same parameter lists (checked on the compiled
module, so this runs on any CUDA build, GPU or not)."""
import re

import numpy as np
import pytest

from alexnet_ext import _core

needs_cuda_build = pytest.mark.skipif(not hasattr(_core, "cuda"),
                                      reason="built without CUDA")

# Every CPU kernel of the ops this build ports to the GPU (conv has its own file).
PORTED = ["response_norm", "response_norm_undo", "max_pool", "max_pool_undo", "avg_pool",
          "avg_pool_undo", "relu", "relu_undo", "dropout", "dropout_undo", "softmax_log_loss",
          "softmax_log_loss_undo", "label_ranks", "sgd_update", "sgd_update_many"]
FC = ["fc_forward", "fc_grad_x", "fc_grad_w", "fc_grad_b"]
CUDA_ONLY = ["softmax_log_loss_nosync", "top_k_errors"]


def _params(fn):
    """Parameter names from pybind11's signature line, e.g. 'relu(x: ..., out: ...) -> None'."""
    first = fn.__doc__.splitlines()[0]
    inside = first[first.index("(") + 1:first.rindex(")")]
    # drop type annotations (which may hold commas inside brackets) and keep the names
    depth, cur, parts = 0, "", []
    for ch in inside:
        depth += ch in "[("
        depth -= ch in "])"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [re.match(r"\s*(\*?\w+)", p).group(1) for p in parts if p.strip()]


@needs_cuda_build
@pytest.mark.parametrize("name", PORTED)
def test_cuda_kernel_has_the_cpu_signature(name):
    cpu, gpu = getattr(_core.cpu, name), getattr(_core.cuda, name)
    assert _params(gpu) == _params(cpu)


@needs_cuda_build
def test_fc_kernels_present_exactly_when_cublas_was_found():
    have = [hasattr(_core.cuda, n) for n in FC]
    assert all(have) or not any(have)
    if all(have):
        for n in FC:
            assert _params(getattr(_core.cuda, n)) == _params(getattr(_core.cpu, n))


@needs_cuda_build
@pytest.mark.parametrize("name", CUDA_ONLY)
def test_cuda_extras_exist(name):
    assert callable(getattr(_core.cuda, name))


@needs_cuda_build
def test_missing_kernel_is_a_clear_error():
    """A kernel that a build lacks surfaces as NotImplementedError, not AttributeError."""
    from alexnet_ext import _validate as V
    with pytest.raises(NotImplementedError, match="no_such_kernel has no CUDA kernel"):
        V._CUDA.no_such_kernel


@pytest.mark.cuda  # device arrays: a usable GPU (or the emulator), not just a CUDA build
def test_cuda_bindings_reject_mixed_arrays():
    """One binding per op: _core.cuda's kernels are _core.cpu's, and the arrays say where they run.
    Host and device arrays in one call are a TypeError, never a crash."""
    from alexnet_ext import cuda
    assert _core.cuda.relu is _core.cpu.relu
    x = np.zeros((1, 2, 3, 3), np.float32)
    d = cuda.to_device(x)
    with pytest.raises(TypeError, match="mix host"):
        _core.cuda.relu(x, d)
    with pytest.raises(TypeError, match="mix host"):
        _core.cuda.response_norm(d, x, d, 5, 2.0, 1e-4, 0.75, False)
