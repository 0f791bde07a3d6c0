"""bfloat16 NumPy arrays through the activation ops that take bfloat16 only on the GPU (relu, add,
the pooling ops, response norm and the fused response norm + max pool): a TypeError naming the
argument and saying so, from Python and from a direct _core call (CPU tests; the GPU side is
tests/test_bf16_ops_cuda.py)."""
import ml_dtypes
import numpy as np
import pytest

from alexnet_ext import _core, ops

BF16 = np.dtype(ml_dtypes.bfloat16)
GPU_ONLY = r"bfloat16 runs on the GPU only \(pass a DeviceArray, or convert with ops.cast"


def test_python_refusals():
    x = np.ones((1, 3, 6, 6), BF16)
    f = np.ones((1, 3, 6, 6), np.float32)
    cases = [
        ("x", lambda: ops.relu(x)),
        ("grad_y", lambda: ops.relu_undo(x, x)),
        ("a", lambda: ops.add(x, x)),
        ("x", lambda: ops.max_pool(x)),
        ("grad_y", lambda: ops.max_pool_undo(x[:, :, :2, :2].copy(), np.zeros((1, 3, 2, 2), np.int32),
                                             image_size=6)),
        ("x", lambda: ops.avg_pool(x, size=2, stride=2)),
        ("grad_y", lambda: ops.avg_pool_undo(x[:, :, :3, :3].copy(), image_size=6, size=2, stride=2)),
        ("x", lambda: ops.response_norm(x)),
        ("grad_y", lambda: ops.response_norm_undo(x, x, x, f)),
        ("x", lambda: ops.response_norm_max_pool(x)),
    ]
    for name, call in cases:
        with pytest.raises(TypeError, match=f"{name}: {GPU_ONLY}"):
            call()


def test_float32_mixed_with_bfloat16_on_the_host():
    """A float32 first argument makes the bfloat16 one the mismatch (host arrays, same rule)."""
    f, x = np.ones(4, np.float32), np.ones(4, BF16)
    with pytest.raises(TypeError, match=f"b: {GPU_ONLY}"):
        ops.add(f, x)
    with pytest.raises(TypeError, match=f"out: {GPU_ONLY}"):
        ops.relu(f, out=x)


def test_binding_refuses_host_bfloat16():
    """The binding's one dtype dispatch (csrc/python/view.h with_real) keeps a direct call safe."""
    x = np.ones((1, 3, 6, 6), BF16)
    with pytest.raises(TypeError, match="x: bfloat16 arrays run on the GPU only"):
        _core.cpu.relu(x, x.copy())
    with pytest.raises(TypeError, match="a: bfloat16 arrays run on the GPU only"):
        _core.cpu.add(x, x, x.copy())
    with pytest.raises(TypeError, match="x: bfloat16 arrays run on the GPU only"):
        _core.cpu.response_norm(x, x.copy(), np.ones(x.shape, np.float32), 5, 2.0, 1e-4, 0.75, False)
    with pytest.raises(TypeError, match="out: expected dtype float32, got bfloat16"):
        _core.cpu.relu(np.ones(3, np.float32), np.ones(3, BF16))
