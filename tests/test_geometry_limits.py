"""Extreme geometry (issue 10, memory safety): strides, paddings and sizes near or past 2^63 are
rejected with a ValueError naming the argument before any kernel runs; values up to the limit
(_validate.GEOMETRY_MAX) compute what a small equivalent geometry computes; the C++ check under the
Python one (direct _core calls) refuses what the kernels cannot index safely.

The overflow cases run in a child process: on a build without the bounds they corrupted the heap,
which must fail this test, not kill the test run.
"""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from alexnet_ext import _validate as V
from alexnet_ext import ops

HUGE = (2**31, 2**62, 2**63 - 1, 2**63, 2**64, 10**30)

# The reproductions and their neighbours: every one wrote or read out of bounds before.
_OVERFLOW_CASES = textwrap.dedent("""
    import numpy as np
    from alexnet_ext import ops
    f32 = lambda *s: np.ones(s, np.float32)
    cases = {
        "img_acts": lambda: ops.img_acts(f32(1, 1, 4, 1), f32(1, 1, 3, 2), image_size=(6, 4),
                                         stride=(1, 2**63 - 1), padding=(0, 2)),
        "filter_acts": lambda: ops.filter_acts(f32(1, 1, 6, 4), f32(1, 1, 3, 2),
                                               stride=(1, 2**63 - 1), padding=(0, 2)),
        "weight_acts": lambda: ops.weight_acts(f32(1, 1, 6, 4), f32(1, 1, 4, 1), filter_size=(3, 2),
                                               stride=(1, 2**63 - 1), padding=(0, 2)),
        "avg_pool_undo": lambda: ops.avg_pool_undo(f32(1, 1, 1, 1), image_size=(1, 3), size=(1, 3),
                                                   stride=(1, 2**63 - 1), padding=(0, 1)),
        "avg_pool": lambda: ops.avg_pool(f32(1, 1, 1, 3), size=(1, 3), stride=(1, 2**63 - 1),
                                         padding=(0, 1)),
    }
    for name, call in cases.items():
        try:
            call()
            print(name, "returned")
        except ValueError as e:
            print(name, "ValueError", str(e).split(":")[0])
""")


def test_overflowing_strides_are_rejected_in_a_child():
    r = subprocess.run([sys.executable, "-c", _OVERFLOW_CASES], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, f"child died (rc {r.returncode}): {r.stderr[-2000:]}"
    lines = r.stdout.split("\n")
    for name in ("img_acts", "filter_acts", "weight_acts", "avg_pool_undo", "avg_pool"):
        assert f"{name} ValueError stride[1]" in lines, r.stdout


def _conv_calls(**kw):
    x = np.ones((1, 2, 5, 5), np.float32)
    wt = np.ones((2, 2, 3, 3), np.float32)
    hid = np.ones((1, 2, 3, 3), np.float32)
    return {
        "filter_acts": lambda: ops.filter_acts(x, wt, **kw),
        "img_acts": lambda: ops.img_acts(hid, wt, image_size=kw.pop("image_size", 5), **kw),
        "weight_acts": lambda: ops.weight_acts(x, hid, filter_size=kw.pop("filter_size", 3), **kw),
    }


@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize("arg", ["stride", "padding", "groups", "image_size", "filter_size"])
def test_conv_huge_integers_name_the_argument(value, arg):
    for name, call in _conv_calls(**{arg: value}).items():
        if arg == "image_size" and name != "img_acts" or arg == "filter_size" and name != "weight_acts":
            continue
        with pytest.raises(ValueError, match=rf"^{arg}(\[0\])?: expected an int <= {V.GEOMETRY_MAX}"):
            call()


@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize("arg", ["size", "stride", "padding"])
def test_pool_huge_integers_name_the_argument(value, arg):
    x = np.ones((1, 1, 4, 4), np.float32)
    kw = dict(size=3, stride=2)
    kw[arg] = (1, value)
    gy = np.ones((1, 1, 1, 1), np.float32)
    for call in (lambda: ops.max_pool(x, **kw), lambda: ops.avg_pool(x, **kw),
                 lambda: ops.avg_pool_undo(gy, image_size=4, **kw)):
        with pytest.raises(ValueError, match=rf"^{arg}\[1\]: expected an int <= "):
            call()
    with pytest.raises(ValueError, match=r"^image_size\[0\]: expected an int <= "):
        ops.avg_pool_undo(gy, image_size=(value, 4), size=3, stride=2)
    with pytest.raises(ValueError, match=r"^image_size\[0\]: expected an int <= "):
        ops.max_pool_undo(gy, np.zeros((1, 1, 1, 1), np.int32), image_size=(value, 4))


@pytest.mark.parametrize("value", HUGE)
def test_response_norm_huge_size(value):
    x = np.ones((1, 3, 2, 2), np.float32)
    with pytest.raises(ValueError, match=r"^size: expected an int <= "):
        ops.response_norm(x, size=value)
    y, d = ops.response_norm(x)
    with pytest.raises(ValueError, match=r"^size: expected an int <= "):
        ops.response_norm_undo(x, x, y, d, size=value)


@pytest.mark.parametrize("value", (2**62 + 1, 2**63 - 1, 2**63, 2**64))
@pytest.mark.parametrize("i", range(3))
def test_dropout_huge_block(value, i):
    x = np.ones(8, np.float32)
    block = [4, 8, 0]
    block[i] = value
    with pytest.raises(ValueError, match=rf"^block(\[{i}\])?: "):
        ops.dropout(x, p=0.5, seed=1, block=tuple(block))


def test_dropout_block_whose_last_index_passes_2_62():
    x = np.ones(8, np.float32)
    with pytest.raises(ValueError, match=r"^block: .*2\*\*62"):
        ops.dropout(x, p=0.5, seed=1, block=(1, 2**60, 0))
    ops.dropout(x, p=0.5, seed=1, block=(1, 2**58, 0))  # last index 7 * 2**58 < 2**62: fine


@pytest.mark.parametrize("bad", [dict(lr=float("nan")), dict(lr=0.0), dict(lr=1.0, momentum=2.0),
                                 dict(lr=1.0, weight_decay=-1.0), dict(lr=float("inf"))])
def test_sgd_update_many_checks_hyperparameters_of_an_empty_list(bad):
    name = [k for k, v in bad.items() if not (k == "lr" and v == 1.0)][0]
    with pytest.raises(ValueError, match=rf"^{name}: "):
        ops.sgd_update_many([], [], [], **bad)
    ops.sgd_update_many([], [], [], lr=0.01)  # nothing to do: fine


def test_max_pool_undo_rejects_an_image_smaller_than_grad_y():
    """Pooling output is at most H + 1 per axis ((Ho-1)*s <= H + 2p - k <= H, as p <= k/2; the +1
    is a 2-window with padding 1 and stride 1)."""
    gy = np.ones((1, 1, 4, 4), np.float32)
    sw = np.zeros((1, 1, 4, 4), np.int32)
    for size in ((2, 2), (2, 3), (3, 2), 1):
        with pytest.raises(ValueError, match=r"^image_size: a \d+x\d+ image cannot pool to"):
            ops.max_pool_undo(gy, sw, image_size=size)
    assert ops.max_pool_undo(gy, sw, image_size=(3, 3)).shape == (1, 1, 3, 3)
    x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    y, s = ops.max_pool(x, size=2, stride=1, padding=1)
    assert y.shape == (1, 1, 4, 4)
    assert ops.max_pool_undo(y, s, image_size=3).sum() == y.sum()


def test_strides_at_the_limit_compute_like_small_ones(rng):
    """A stride of GEOMETRY_MAX with padding (the old overflow's neighbourhood) gives what any stride
    past the padded image gives: one output column."""
    big, small = V.GEOMETRY_MAX, 9
    x = rng.standard_normal((2, 2, 6, 4)).astype(np.float32)
    wt = rng.standard_normal((3, 2, 3, 2)).astype(np.float32)
    kw_big = dict(stride=(1, big), padding=(1, 2))
    kw_small = dict(stride=(1, small), padding=(1, 2))
    y = ops.filter_acts(x, wt, **kw_big)
    np.testing.assert_array_equal(y, ops.filter_acts(x, wt, **kw_small))
    assert y.shape == (2, 3, 6, 1)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(ops.img_acts(gy, wt, image_size=(6, 4), **kw_big),
                                  ops.img_acts(gy, wt, image_size=(6, 4), **kw_small))
    np.testing.assert_array_equal(ops.weight_acts(x, gy, filter_size=(3, 2), **kw_big),
                                  ops.weight_acts(x, gy, filter_size=(3, 2), **kw_small))
    xp = rng.standard_normal((1, 2, 3, 5)).astype(np.float32)
    pk_big = dict(size=(3, 3), stride=(1, big), padding=(1, 1))
    pk_small = dict(size=(3, 3), stride=(1, 7), padding=(1, 1))
    yp = ops.avg_pool(xp, **pk_big)
    np.testing.assert_array_equal(yp, ops.avg_pool(xp, **pk_small))
    gp = rng.standard_normal(yp.shape).astype(np.float32)
    gx = ops.avg_pool_undo(gp, image_size=(3, 5), **pk_big)
    np.testing.assert_array_equal(gx, ops.avg_pool_undo(gp, image_size=(3, 5), **pk_small))
    assert np.all(np.isfinite(gx)) and np.all(gx[:, :, :, 2:] == 0)  # only columns 0, 1 pooled
    ym, sm = ops.max_pool(xp, **pk_big)
    np.testing.assert_array_equal(ym, ops.max_pool(xp, **pk_small)[0])


def test_conv_padding_past_image_plus_filter_is_rejected():
    """Padding beyond image side + filter side only adds outputs that read nothing but zeros; at
    2^31 it asked for a 64 GiB output (found by tests/test_fuzz_ops.py)."""
    x = np.ones((1, 1, 4, 4), np.float32)
    w = np.ones((1, 1, 3, 3), np.float32)
    assert ops.filter_acts(x, w, padding=7).shape == (1, 1, 16, 16)  # 7 = 4 + 3: the bound
    for p in (8, (0, 8), 2**31 - 1):
        with pytest.raises(ValueError, match=r"^padding: expected at most image side \+ filter side"):
            ops.filter_acts(x, w, padding=p)
    with pytest.raises(ValueError, match=r"^padding: expected at most"):
        ops.img_acts(np.ones((1, 1, 1, 1), np.float32), w, image_size=4, stride=2**31 - 1,
                     padding=(0, 2**31 - 1))


@pytest.mark.parametrize("fn", [ops.conv_output_size, ops.pool_output_size])
def test_output_size_helpers_check_their_arguments(fn):
    assert fn(7, 3, 2) == 3
    for args, err in [((4, 1, 0), ValueError), ((0, 1, 1), ValueError), ((4, 1, 1, -1), ValueError),
                      ((4, 1, 2**63), ValueError), ((4.0, 1, 1), TypeError), ((4, "1", 1), TypeError)]:
        with pytest.raises(err):
            fn(*args)


def test_switch_dtype_checks_its_arguments():
    with pytest.raises(TypeError, match="^height: expected an int"):
        ops.switch_dtype("1", 2**64)
    with pytest.raises(ValueError, match="^width: expected an int >= 1"):
        ops.switch_dtype(3, 0)
