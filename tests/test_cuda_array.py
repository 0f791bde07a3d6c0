"""alexnet_ext.cuda: device arrays, interop, streams, memory. GPU tests are marked `cuda`."""
import numpy as np
import pytest

import alexnet_ext
from alexnet_ext import cuda, ops
from cuda_helpers import torch_cuda


def test_cpu_only_machine_says_why():
    """Without a usable GPU every entry point raises one clear error (no crash)."""
    if alexnet_ext.cuda_available():
        pytest.skip("a GPU is available")
    reason = alexnet_ext.cuda_status()["reason"]
    assert reason
    with pytest.raises(RuntimeError, match="no usable GPU"):
        cuda.to_device(np.zeros(3, np.float32))
    with pytest.raises(RuntimeError, match="no usable GPU"):
        cuda.empty((2, 2))
    assert not cuda.is_device_array(np.zeros(3))


def test_ops_reject_foreign_arrays():
    class Fake:
        shape = (1, 1, 4, 4)
        dtype = np.dtype(np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    with pytest.raises(TypeError, match="images: expected a numpy.ndarray"):
        ops.filter_acts(Fake(), w)


@pytest.mark.cuda
def test_round_trip_and_views(rng):
    for dtype in (np.float32, np.int32, np.int64, np.uint8):
        x = (rng.standard_normal((3, 5, 7)) * 100).astype(dtype)
        d = cuda.to_device(x)
        assert d.shape == x.shape and d.dtype == x.dtype and d.nbytes == x.nbytes
        np.testing.assert_array_equal(d.get(), x)
        np.testing.assert_array_equal(d.reshape((15, -1)).get(), x.reshape(15, 7))
        np.testing.assert_array_equal(d.reshape(-1, 15).get(), x.reshape(-1, 15))
    assert cuda.zeros((4, 4)).get().sum() == 0


@pytest.mark.cuda
def test_caching_allocator_reuses_blocks():
    a = cuda.empty((1024, 1024))
    del a
    before = cuda.memory_stats()["cuda_mallocs"]
    for _ in range(10):
        b = cuda.empty((1024, 1024))
        del b
    assert cuda.memory_stats()["cuda_mallocs"] == before


@pytest.mark.cuda
def test_out_of_memory_is_memoryerror():
    with pytest.raises(MemoryError, match="could not allocate"):
        cuda.empty((1 << 40,), np.float32)


@pytest.mark.cuda
def test_mixing_host_and_device_is_typeerror(rng):
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    with pytest.raises(TypeError, match="mix host"):
        ops.filter_acts(cuda.to_device(x), w)


@pytest.mark.cuda
def test_torch_interop_zero_copy(rng):
    torch = torch_cuda()
    t = torch.randn(4, 5, device="cuda")
    d = cuda.asarray(t)
    assert d.ptr == t.data_ptr()
    np.testing.assert_array_equal(d.get(), t.cpu().numpy())
    back = torch.from_dlpack(d)
    assert back.data_ptr() == d.ptr
    back.mul_(2)  # same memory
    np.testing.assert_allclose(d.get(), t.cpu().numpy())
    cai = torch.as_tensor(d, device="cuda")  # through __cuda_array_interface__
    assert cai.data_ptr() == d.ptr
    with pytest.raises(ValueError, match="C-contiguous"):
        cuda.asarray(torch.randn(4, 6, device="cuda")[:, ::2])
    with pytest.raises(TypeError, match="host memory"):
        cuda.asarray(np.zeros(3, np.float32))


@pytest.mark.cuda
def test_cupy_interop(rng):
    cupy = pytest.importorskip("cupy")
    c = cupy.arange(12, dtype=cupy.float32).reshape(3, 4)
    d = cuda.asarray(c)
    assert d.ptr == c.data.ptr
    np.testing.assert_array_equal(d.get(), cupy.asnumpy(c))
    c2 = cupy.asarray(d)
    assert c2.data.ptr == d.ptr


@pytest.mark.cuda
def test_streams_order_work(rng):
    x = rng.standard_normal((64, 64)).astype(np.float32)
    s = cuda.Stream()
    with s:
        assert cuda.current_stream() == s.handle
        d = cuda.to_device(x)
        y = d.get()
    s.synchronize()
    assert cuda.current_stream() == 0
    np.testing.assert_array_equal(y, x)
    s.close()


@pytest.mark.cuda
def test_device_numbers_are_checked():
    n = cuda.device_count()
    for bad in (n, -1):
        with pytest.raises(ValueError, match="GPU number from 0"):
            cuda.Event(device=bad)
        with pytest.raises(ValueError, match="GPU number from 0"):
            cuda.zeros((2,), device=bad)
        with pytest.raises(ValueError, match="peer: expected a GPU number"):
            cuda.peer_access(0, bad)
        with pytest.raises(ValueError, match="GPU number from 0"):
            cuda.set_device(bad)
    with pytest.raises(TypeError, match="device: expected a GPU number"):
        cuda.to_device(np.zeros(3, np.float32), device="0")
    from alexnet_ext.data.device_feed import DeviceFeed
    with pytest.raises(ValueError, match="GPU number from 0"):
        DeviceFeed(n)
    assert cuda.get_device() == 0          # nothing above changed the current GPU


@pytest.mark.cuda
def test_pin_host_memory_and_fill_zero_check_their_argument():
    with pytest.raises(TypeError, match="C-contiguous numpy"):
        cuda.pin_host_memory(np.zeros((4, 4), np.float32)[:, ::2])
    with pytest.raises(TypeError, match="DeviceArray"):
        cuda.fill_zero(np.zeros(3, np.float32))
    d = cuda.to_device(np.ones((3, 5), np.float32))
    cuda.fill_zero(d)
    assert not d.get().any()
