"""ops.cast on DeviceArrays (csrc/cuda/cast.cu): the same bits as the CPU kernel, the independent
reference (tests/lowp_helpers.py) and ml_dtypes, on the cases of tests/test_cast.py, at unaligned
offsets and across grid-stride sizes. GPU tests (marker `cuda`)."""
import numpy as np
import pytest

from alexnet_ext import cuda, ops
from cuda_helpers import dev, window
from lowp_helpers import bf16_rne_reference
from test_cast import BF16, cases, ml_dtypes_bits

pytestmark = pytest.mark.cuda


def test_to_bf16_same_bits_as_cpu_reference_and_ml_dtypes(rng):
    x = cases(rng)
    y = ops.cast(dev(x), cuda.bfloat16)
    assert cuda.is_device_array(y) and y.dtype == BF16 and y.shape == x.shape
    got = y.get().view(np.uint16)
    np.testing.assert_array_equal(got, bf16_rne_reference(x))
    np.testing.assert_array_equal(got, ml_dtypes_bits(x))
    np.testing.assert_array_equal(got, ops.cast(x, BF16).view(np.uint16))


def test_to_float32_exact_on_every_pattern():
    bits = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    y = ops.cast(dev(bits.view(BF16)), np.float32).get()
    np.testing.assert_array_equal(y.view(np.uint32), bits.astype(np.uint32) << 16)


def test_out_offsets_and_odd_sizes(rng):
    """Sizes around the block and past one grid, float32 sides 4 bytes off 16-byte alignment (the
    kernels are scalar; bf16 windows cannot be made: the CUDA Array Interface has no bf16)."""
    for n in (1, 3, 257, 100003):
        x = rng.standard_normal(n).astype(np.float32)
        out = dev(np.zeros(n, BF16))
        assert ops.cast(window(dev(np.concatenate([[0], x]).astype(np.float32)), 1, (n,)), BF16,
                        out=out) is out
        np.testing.assert_array_equal(out.get().view(np.uint16), bf16_rne_reference(x))
        base = dev(np.full(n + 2, np.nan, np.float32))
        back = window(base, 1, (n,))
        assert ops.cast(out, np.float32, out=back) is back
        np.testing.assert_array_equal(back.get(), out.get().astype(np.float32))
        edges = base.get()[[0, -1]]
        assert np.isnan(edges).all()  # nothing written outside the window


def test_errors():
    """The checks are the CPU ones (tests/test_cast.py, overlap included); here the device ones."""
    x = dev(np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match="mix host"):
        ops.cast(x, BF16, out=np.empty((2, 3), BF16))
    with pytest.raises(TypeError, match="out: expected dtype bfloat16, got float32"):
        ops.cast(x, BF16, out=dev(np.empty((2, 3), np.float32)))
    with pytest.raises(ValueError, match="out: expected shape"):
        ops.cast(x, BF16, out=cuda.empty((3, 2), BF16))
