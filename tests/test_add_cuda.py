"""add on the GPU: equal to the CPU bit for bit, aligned (float4) and unaligned paths, in place,
devices checked."""
import numpy as np
import pytest

from alexnet_ext import cuda as C
from alexnet_ext import ops
from cuda_helpers import dev, unaligned
from add_refs import SHAPES, make_pair

cuda = pytest.mark.cuda


@cuda
@pytest.mark.parametrize("name", SHAPES)
@pytest.mark.parametrize("to_gpu", [dev, unaligned])
def test_equals_cpu(rng, name, to_gpu):
    a, b = make_pair(rng, SHAPES[name])
    a.flat[::9] = np.nan
    np.testing.assert_array_equal(ops.add(to_gpu(a), to_gpu(b)).get(), ops.add(a, b))


@cuda
@pytest.mark.parametrize("n", [1, 3, 4, 5, 1027])
def test_tails(rng, n):
    a, b = make_pair(rng, (n,))
    np.testing.assert_array_equal(ops.add(unaligned(a), dev(b)).get(), a + b)


@cuda
def test_in_place(rng):
    a, b = make_pair(rng, (2, 33, 9))
    da, db = dev(a), dev(b)
    assert ops.add(da, db, out=da) is da
    np.testing.assert_array_equal(da.get(), a + b)


@cuda
def test_mixing_and_devices(rng):
    a, b = make_pair(rng, (4, 4))
    with pytest.raises(TypeError, match="mix host"):
        ops.add(dev(a), b)
    if C.device_count() > 1:
        with pytest.raises(TypeError, match="different GPUs"):
            ops.add(C.to_device(a, device=0), C.to_device(b, device=1))
