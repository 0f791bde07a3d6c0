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


def _dlpack_dtype(capsule):
    """(code, bits, lanes) of the DLTensor in an unconsumed "dltensor" capsule, read from the ABI
    (data 8 bytes, device 8, ndim 4, then the dtype: uint8 code, uint8 bits, uint16 lanes)."""
    import ctypes
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    raw = ctypes.string_at(get(capsule, b"dltensor") + 20, 4)
    return raw[0], raw[1], int.from_bytes(raw[2:4], "little")


@pytest.mark.cuda
def test_bfloat16_arrays(rng):
    bf16 = np.dtype(cuda.bfloat16)
    x = rng.standard_normal((3, 5, 7)).astype(bf16)
    d = cuda.to_device(x)
    assert d.dtype == bf16 and d.nbytes == x.nbytes and "bfloat16" in repr(d)
    got = d.get()
    assert got.dtype == bf16
    np.testing.assert_array_equal(got.view(np.uint16), x.view(np.uint16))
    np.testing.assert_array_equal(d.reshape(-1, 7).get().view(np.uint16), x.reshape(-1, 7).view(np.uint16))
    assert not cuda.zeros((4, 4), cuda.bfloat16).get().view(np.uint16).any()
    e = cuda.empty((3, 5, 7), cuda.bfloat16)
    cuda.copy(e, d)
    np.testing.assert_array_equal(e.get().view(np.uint16), x.view(np.uint16))
    cuda.copy(e, x[::-1].copy())
    np.testing.assert_array_equal(e.get().view(np.uint16), x[::-1].view(np.uint16))
    with pytest.raises(TypeError, match="src: dtype float32 does not match dst's bfloat16"):
        cuda.copy(e, x.astype(np.float32))
    # DLPack: kDLBfloat (code 4), 16 bits, 1 lane, and our own import takes it back zero-copy
    assert _dlpack_dtype(d.__dlpack__()) == (4, 16, 1)
    assert _dlpack_dtype(cuda.zeros(3).__dlpack__()) == (2, 32, 1)
    back = alexnet_ext._core.cuda.from_dlpack(d)
    assert back.dtype == bf16 and back.ptr == d.ptr and back.shape == d.shape
    # The CUDA Array Interface has no bf16 typestr: refused both ways, pointing to DLPack.
    with pytest.raises(TypeError, match="DLPack"):
        d.__cuda_array_interface__
    from cuda_helpers import _Window
    for typestr in (bf16, "V2"):
        with pytest.raises(TypeError, match="asarray: bfloat16 has no __cuda_array_interface__.*DLPack"):
            cuda.asarray(_Window(d, 0, (3,), typestr))
    with pytest.raises(TypeError, match="float32, bfloat16, int32, int64 or uint8, got float16"):
        cuda.empty((2,), np.float16)


@pytest.mark.cuda
def test_torch_bfloat16_round_trip(rng):
    torch = torch_cuda()
    t = torch.randn(4, 6, device="cuda").to(torch.bfloat16)
    d = cuda.asarray(t)
    assert d.dtype == np.dtype(cuda.bfloat16) and d.ptr == t.data_ptr()
    np.testing.assert_array_equal(d.get().view(np.uint16), t.cpu().view(torch.int16).numpy().view(np.uint16))
    back = torch.from_dlpack(d)
    assert back.dtype == torch.bfloat16 and back.data_ptr() == d.ptr
    assert torch.equal(back, t)


@pytest.mark.cuda
def test_reshape_checks_its_shape():
    d = cuda.zeros((2, 6))
    assert d.reshape(3, 4).shape == (3, 4) and d.reshape((-1,)).shape == (12,)
    assert d.reshape([4, -1]).shape == (4, 3) and d.reshape(12).shape == (12,)
    with pytest.raises(ValueError, match="one may be -1"):
        d.reshape(-1, -1)
    with pytest.raises(ValueError, match="one may be -1"):
        d.reshape(-2, 6)
    for bad in ((5, -1), (0, -1), (5, 3), (2**62, 2**62, 12), (2**62, -1)):
        with pytest.raises(ValueError, match="cannot reshape 12 elements"):
            d.reshape(bad)  # the product of the first is 12 modulo 2^64
    assert cuda.zeros((0, 3)).reshape(2**40, 0, 2**40).shape == (2**40, 0, 2**40)
