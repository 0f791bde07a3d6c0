"""The binding layer under alexnet_ext.ops (csrc/python/view.h): every op is one _core function
taking array views of NumPy arrays or DeviceArrays, and keeps a direct call in bounds by itself:
dtype (native byte order only), density and alignment, writability, one device; geometry as named
structs."""
import numpy as np
import pytest

from alexnet_ext import _core
from helpers import conv_geometry, pool_geometry


def test_views_reject_what_a_kernel_cannot_index_densely():
    x = np.zeros((4, 6), np.float32)
    out = np.empty((4, 6), np.float32)
    with pytest.raises(ValueError, match="x: expected a C-contiguous, aligned array"):
        _core.cpu.relu(np.zeros((4, 12), np.float32)[:, ::2], out)
    with pytest.raises(ValueError, match="out: expected a C-contiguous, aligned array"):
        _core.cpu.relu(x, np.empty((6, 4), np.float32).T)
    raw = np.zeros(4 * 24 + 1, np.uint8)
    misaligned = raw[1:].view(np.float32).reshape(4, 6)  # a float32 array at an odd address
    with pytest.raises(ValueError, match="x: expected a C-contiguous, aligned array"):
        _core.cpu.relu(misaligned, out)
    with pytest.raises(TypeError, match="x: expected dtype float32, got >f4"):
        _core.cpu.relu(x.astype(">f4"), out)
    ro = np.empty((4, 6), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out: array is read-only"):
        _core.cpu.relu(x, ro)
    with pytest.raises(TypeError):
        _core.cpu.relu([0.0] * 24, out)
    _core.cpu.relu(x, out)  # and the plain case runs


def test_geometry_structs_have_named_fields():
    g = pool_geometry((2, 3, 8, 8, 3, 3, 2, 2, 0, 0, 3, 3))
    assert (g.n, g.c, g.kh, g.ho, g.wo) == (2, 3, 3, 3, 3)
    assert "kh=3" in repr(g) and "wo=3" in repr(g)
    c = conv_geometry((2, 4, 8, 8, 6, 3, 3, 1, 1, 0, 0, 1, 6, 6))
    assert (c.f, c.groups, c.ho) == (6, 1, 6)
    with pytest.raises(ValueError, match="ConvGeometry: expected the 14 fields"):
        _core.ConvGeometry(n=1)
    fields = dict(n=2, c=3, h=8, w=8, kh=3, kw=3, sh=2, sw=2, ph=0, pw=0, ho=3, wo=3)
    with pytest.raises(ValueError, match=r"PoolGeometry.sh: out of int64 range"):
        _core.PoolGeometry(**dict(fields, sh=2**63))
    with pytest.raises(TypeError, match=r"PoolGeometry.sh: expected an int"):
        _core.PoolGeometry(**dict(fields, sh=2.0))
    with pytest.raises(ValueError, match="PoolGeometry: missing field wo"):
        _core.PoolGeometry(**{k: v for k, v in fields.items() if k != "wo"}, extra=1)


def test_core_geometry_check_refuses_overflowing_values():
    """The C++ check under the Python one: a direct call with a stride past 2^31 (what overflowed
    the kernels' index arithmetic) raises before any kernel runs."""
    x = np.ones((1, 1, 6, 4), np.float32)
    w = np.ones((1, 1, 3, 2), np.float32)
    out = np.empty((1, 1, 4, 1), np.float32)
    geo = conv_geometry((1, 1, 6, 4, 1, 3, 2, 1, 2**62, 0, 2, 1, 4, 1))
    with pytest.raises(ValueError, match="conv geometry: a filter side, stride or groups"):
        _core.cpu.filter_acts(x, w, None, out, geo, 0.0, 1.0)
    y = np.empty((1, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match="pool geometry: inconsistent sizes"):
        _core.cpu.avg_pool(np.ones((1, 1, 1, 3), np.float32), y,
                           pool_geometry((1, 1, 1, 3, 1, 3, 1, 2**62, 0, 1, 1, 1)))
