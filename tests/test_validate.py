"""The shared argument helpers that route host and device arrays alike (alexnet_ext._validate)."""
import numpy as np
import pytest

from alexnet_ext import _validate as V


def test_disjoint_accepts_separate_arrays(rng):
    arrays = [rng.standard_normal(n).astype(np.float32) for n in (3, 1, 8, 5)]
    V.disjoint([(f"a{i}", a) for i, a in enumerate(arrays)])
    # read-only arrays may overlap each other, just not a written one
    g = np.zeros(10, np.float32)
    V.disjoint([("w", arrays[0])], [("g0", g[:6]), ("g1", g[4:])])


def test_disjoint_finds_every_kind_of_overlap():
    buf = np.zeros(100, np.float32)
    a, b, c = buf[:10], buf[10:20], buf[20:30]
    V.disjoint([("a", a), ("b", b), ("c", c)])  # touching but not overlapping
    with pytest.raises(ValueError, match="b: must not share memory with a"):
        V.disjoint([("a", a), ("b", buf[9:12])])
    # an overlap between non-neighbours in address order is still found
    with pytest.raises(ValueError, match="big: must not share memory with"):
        V.disjoint([("a", a), ("c", c), ("big", buf[5:25])])
    with pytest.raises(ValueError, match="g: must not share memory with c"):
        V.disjoint([("a", a), ("c", c)], [("g", buf[29:40])])
    with pytest.raises(ValueError, match="g: must not share memory with a"):
        V.disjoint([("a", a), ("c", c)], [("g", buf[0:1])])
    # a read array spanning a gap and a written array beyond it
    with pytest.raises(ValueError, match="g: must not share memory with c"):
        V.disjoint([("a", a), ("c", c)], [("g", buf[12:25])])
    V.disjoint([("a", a), ("c", c)], [("g", buf[10:20])])
    same = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="y: must not share memory with x"):
        V.disjoint([("x", same), ("y", same)])


def test_disjoint_random_layouts_match_pairwise_check(rng):
    """Against the O(m^2) definition on random windows of one buffer."""
    buf = np.zeros(200, np.float32)
    for _ in range(200):
        spans = [sorted(rng.integers(0, 200, 2)) for _ in range(rng.integers(1, 7))]
        arrs = [buf[s:e + 1] for s, e in spans]
        k = rng.integers(0, len(arrs) + 1)
        written, read = arrs[:k], arrs[k:]
        clash = any(np.may_share_memory(p, q) for i, p in enumerate(written) for q in written[i + 1:])
        clash |= any(np.may_share_memory(p, q) for p in written for q in read)
        names_w = [(f"w{i}", a) for i, a in enumerate(written)]
        names_r = [(f"r{i}", a) for i, a in enumerate(read)]
        if clash:
            with pytest.raises(ValueError, match="must not share memory"):
                V.disjoint(names_w, names_r)
        else:
            V.disjoint(names_w, names_r)


def test_writable_and_same_view():
    a = np.zeros((2, 3), np.float32)
    V.writable(a, "a")
    ro = a.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="ro: array is read-only"):
        V.writable(ro, "ro")
    assert V.same_view(a, a)
    assert not V.same_view(a, a.reshape(3, 2))
    assert not V.same_view(a, a.copy())


def test_empty_like_stays_on_the_host_for_numpy():
    a = np.zeros((2, 3), np.float32)
    e = V.empty_like(a)
    assert isinstance(e, np.ndarray) and e.shape == (2, 3) and e.dtype == np.float32
    e = V.empty_like(a, (4,), np.uint8)
    assert isinstance(e, np.ndarray) and e.shape == (4,) and e.dtype == np.uint8
