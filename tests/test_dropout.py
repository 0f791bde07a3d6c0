"""dropout / dropout_undo and the Philox-4x32-10 generator behind them."""
import math

import numpy as np
import pytest

from alexnet_ext import ops
from helpers import results_per_thread_count
from dropout_refs import BLOCKS, MASK32, mask_ref, philox_ref, random_seed, tail_mask, undo_case


# Random123's published known-answer vectors for philox4x32-10 (kat_vectors):
# counter words, key words -> output words.
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((MASK32,) * 4, (MASK32,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_reference_philox_reproduces_published_vectors(counter, key, expected):
    assert philox_ref(counter, key) == expected


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_kernel_philox_known_answers(counter, key, expected):
    assert ops.philox4x32_10(counter, key) == expected


def test_kernel_philox_matches_reference_on_random_inputs(rng):
    for _ in range(200):
        counter = tuple(int(v) for v in rng.integers(0, 2**32, 4, dtype=np.uint64))
        key = tuple(int(v) for v in rng.integers(0, 2**32, 2, dtype=np.uint64))
        assert ops.philox4x32_10(counter, key) == philox_ref(counter, key)


@pytest.mark.parametrize("shape", [(1,), (5,), (4, 7), (3, 2, 5, 3)])
@pytest.mark.parametrize("p", [0.5, 0.1, 0.9, 1 / 3])
def test_mask_matches_documented_stream(rng, shape, p):
    x = rng.standard_normal(shape).astype(np.float32)
    seed, offset = random_seed(rng), random_seed(rng)
    y, mask = ops.dropout(x, p=p, seed=seed, offset=offset)
    assert mask.dtype == np.uint8 and mask.shape == x.shape and y.shape == x.shape
    np.testing.assert_array_equal(mask.ravel(), mask_ref(x.size, p, seed, offset))
    scale = np.float32(1.0 / (1.0 - p))
    np.testing.assert_array_equal(y, np.where(mask == 1, x * scale, np.float32(0)))


def test_large_seed_and_offset_words_matter(rng):
    x = rng.standard_normal(4000).astype(np.float32)
    seed = int(rng.integers(0, 2**32))
    _, base = ops.dropout(x, p=0.5, seed=seed, offset=7)
    for kw in (dict(seed=seed + 2**32, offset=7), dict(seed=seed, offset=7 + 2**32),
               dict(seed=seed ^ (1 << 63), offset=7), dict(seed=seed, offset=8)):
        _, other = ops.dropout(x, p=0.5, **kw)
        assert np.mean(other != base) > 0.4, kw  # independent streams differ in ~half the places
    _, top = ops.dropout(x[:64].copy(), p=0.5, seed=2**64 - 1, offset=2**64 - 1)
    np.testing.assert_array_equal(top, mask_ref(64, 0.5, 2**64 - 1, 2**64 - 1))


@pytest.mark.parametrize("p", [0.5, 0.2, 0.75, 1e-3])
def test_keep_fraction_within_binomial_bound(rng, p):
    n = 300_000
    x = rng.standard_normal(n).astype(np.float32)
    _, mask = ops.dropout(x, p=p, seed=random_seed(rng), offset=random_seed(rng))
    kept = int(mask.sum())
    mean, sd = n * (1 - p), math.sqrt(n * p * (1 - p))
    assert abs(kept - mean) <= 6 * sd, (kept, mean, sd)
    # and the kept positions are not clumped: each half of the array keeps its share
    half = int(mask[: n // 2].sum())
    assert abs(half - mean / 2) <= 6 * sd / math.sqrt(2), (half, mean / 2)


def test_expectation_is_preserved(rng):
    """Inverted dropout: E[y] = x. Average many independent masks of a fixed x."""
    x = rng.uniform(0.5, 1.5, 2000).astype(np.float32)
    seed = random_seed(rng)
    acc = np.zeros(x.shape)
    trials = 400
    for t in range(trials):
        acc += ops.dropout(x, p=0.5, seed=seed, offset=t)[0]
    # per element: sd of one sample is x (y is 0 or 2x), so the mean of 400 has sd x / 20
    assert np.all(np.abs(acc / trials - x) <= 6 * x / math.sqrt(trials))


def test_p_zero_keeps_everything(rng):
    x = rng.standard_normal((3, 17)).astype(np.float32)
    y, mask = ops.dropout(x, p=0.0, seed=random_seed(rng))
    np.testing.assert_array_equal(y, x)
    assert np.all(mask == 1)


def test_deterministic_by_seed_and_offset(rng):
    x = rng.standard_normal((8, 4096)).astype(np.float32)
    seed, offset = random_seed(rng), random_seed(rng) % 1000
    y1, m1 = ops.dropout(x, p=0.5, seed=seed, offset=offset)
    y2, m2 = ops.dropout(x, p=0.5, seed=seed, offset=offset)
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(y1, y2)
    _, m3 = ops.dropout(x, p=0.5, seed=seed + 1, offset=offset)
    _, m4 = ops.dropout(x, p=0.5, seed=seed, offset=offset + 1)
    assert 0.4 < np.mean(m1 != m3) < 0.6
    assert 0.4 < np.mean(m1 != m4) < 0.6
    assert 0.4 < np.mean(m3 != m4) < 0.6


def test_element_depends_only_on_its_index(rng):
    """A prefix of the array gets the prefix of the mask, whatever the array's size or shape."""
    x = rng.standard_normal((6, 1001)).astype(np.float32)
    seed = random_seed(rng)
    _, full = ops.dropout(x, p=0.3, seed=seed, offset=5)
    _, part = ops.dropout(x.reshape(-1)[:2999].copy(), p=0.3, seed=seed, offset=5)
    np.testing.assert_array_equal(part, full.reshape(-1)[:2999])


@pytest.mark.parametrize("n,k,b", BLOCKS)
def test_block_of_a_larger_array_draws_its_mask(rng, n, k, b):
    """A column's block of every image, dropped with block=(b, k*b, c*b), gets exactly the mask
    the whole (n, k*b) array gets there: split columns drop what the merged net drops."""
    whole = rng.standard_normal((n, k * b)).astype(np.float32)
    y, mask = ops.dropout(whole, p=0.4, seed=11, offset=5)
    for c in range(k):
        part = np.ascontiguousarray(whole[:, c * b:(c + 1) * b])
        yp, mp = ops.dropout(part, p=0.4, seed=11, offset=5, block=(b, k * b, c * b))
        np.testing.assert_array_equal(mp, mask[:, c * b:(c + 1) * b])
        np.testing.assert_array_equal(yp, y[:, c * b:(c + 1) * b])


@pytest.mark.parametrize("n,k,b", BLOCKS)
def test_a_ranks_samples_of_a_column_block_draw_their_mask(rng, n, k, b):
    """Data parallel: rank r holds samples [s0, s0 + m) of the global (n, k*b) array, column c:
    block=(b, k*b, s0*k*b + c*b) (start past stride - row) draws the global mask there."""
    whole = rng.standard_normal((n + 3, k * b)).astype(np.float32)
    y, mask = ops.dropout(whole, p=0.4, seed=11, offset=5)
    s0, m = 3, n
    for c in range(k):
        part = np.ascontiguousarray(whole[s0:s0 + m, c * b:(c + 1) * b])
        yp, mp = ops.dropout(part, p=0.4, seed=11, offset=5, block=(b, k * b, s0 * k * b + c * b))
        np.testing.assert_array_equal(mp, mask[s0:s0 + m, c * b:(c + 1) * b])
        np.testing.assert_array_equal(yp, y[s0:s0 + m, c * b:(c + 1) * b])
    # the merged layout: the rank's samples are one row at s0 * k * b
    part = np.ascontiguousarray(whole[s0:s0 + m])
    _, mp = ops.dropout(part, p=0.4, seed=11, offset=5, block=(m * k * b, m * k * b, s0 * k * b))
    np.testing.assert_array_equal(mp, mask[s0:s0 + m])


def test_block_is_checked(rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    # (6, 12, 2**63 - 8): the last index would pass 2**63 - 1
    for bad in [(5, 10, 0), (6, 5, 0), (6, 12, 2**63 - 8), (0, 12, 0), (6, 2**62, 2**62)]:
        with pytest.raises(ValueError, match="block"):
            ops.dropout(x, p=0.5, seed=1, block=bad)
    with pytest.raises(TypeError, match="block"):
        ops.dropout(x, p=0.5, seed=1, block=(6, 12))
    with pytest.raises(ValueError, match="block"):
        ops.dropout(x, p=0.5, seed=1, block=(6, 12, -1))


def test_independent_of_thread_count(rng):
    x = rng.standard_normal((64, 9216)).astype(np.float32)  # big enough for the parallel path
    seed = random_seed(rng)

    def dropout_and_undo():
        y, m = ops.dropout(x, p=0.5, seed=seed, offset=11)
        return y, m, ops.dropout_undo(x, m, p=0.5)

    results = results_per_thread_count(dropout_and_undo, (1, 2, 3))
    for y, m, g in results[1:]:
        np.testing.assert_array_equal(m, results[0][1])
        np.testing.assert_array_equal(y, results[0][0])
        np.testing.assert_array_equal(g, results[0][2])
    # spot-check the parallel result against the reference stream
    np.testing.assert_array_equal(results[0][1].reshape(-1)[-37:],
                                  tail_mask(x.size, 37, 0.5, seed, 11))


# ---------------------------------------------------------------- undo
@pytest.mark.parametrize("p", [0.5, 0.3, 0.0])
def test_undo_is_exact(rng, p):
    x, y, mask, gy, gx = undo_case(rng, (5, 300), p)
    scale = np.float32(1.0 / (1.0 - p))
    np.testing.assert_array_equal(gx, np.where(mask == 1, gy * scale, np.float32(0)))
    # the same arithmetic as the forward: undo applied to x reproduces y bit for bit
    np.testing.assert_array_equal(ops.dropout_undo(x, mask, p=p), y)
    # adjoint: <y, gy> == <x, gx> (a diagonal linear map)
    bound = 1e-6 * float(scale) * np.linalg.norm(np.float64(x)) * np.linalg.norm(np.float64(gy))
    assert abs(np.vdot(np.float64(y), np.float64(gy)) - np.vdot(np.float64(x), np.float64(gx))) <= bound


def test_in_place_and_out_buffers(rng):
    x = rng.standard_normal((4, 4096)).astype(np.float32)
    seed = random_seed(rng)
    ref_y, ref_m = ops.dropout(x, p=0.5, seed=seed, offset=3)
    xc = x.copy()
    mask_buf = np.full(x.shape, 7, np.uint8)
    y, m = ops.dropout(xc, p=0.5, seed=seed, offset=3, out=xc, mask_out=mask_buf)
    assert y is xc and m is mask_buf
    np.testing.assert_array_equal(xc, ref_y)
    np.testing.assert_array_equal(mask_buf, ref_m)
    gy = rng.standard_normal(x.shape).astype(np.float32)
    ref_g = ops.dropout_undo(gy, ref_m, p=0.5)
    assert ops.dropout_undo(gy, ref_m, p=0.5, out=gy) is gy
    np.testing.assert_array_equal(gy, ref_g)
    out = np.full(x.shape, np.nan, np.float32)
    assert ops.dropout_undo(x, ref_m, p=0.5, out=out) is out
    np.testing.assert_array_equal(out, ref_y)


def test_nonfinite_inputs_dropped_to_zero(rng):
    x = np.full(400, np.nan, np.float32)
    y, mask = ops.dropout(x, p=0.5, seed=random_seed(rng))
    assert np.all(y[mask == 0] == 0) and np.all(np.isnan(y[mask == 1]))


# ---------------------------------------------------------------- bad input
def test_bad_input(rng):
    x = rng.standard_normal((4, 6)).astype(np.float32)
    with pytest.raises(ValueError, match=r"p: expected a drop probability 0 <= p < 1, got 1.0"):
        ops.dropout(x, p=1.0, seed=0)
    with pytest.raises(ValueError, match="p: expected a number >= 0.0"):
        ops.dropout(x, p=-0.1, seed=0)
    with pytest.raises(ValueError, match="p: expected a finite number"):
        ops.dropout(x, p=float("nan"), seed=0)
    with pytest.raises(TypeError, match="p: expected a number"):
        ops.dropout(x, p="0.5", seed=0)
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'seed'"):
        ops.dropout(x, p=0.5)
    with pytest.raises(ValueError, match="seed: expected an int >= 0, got -1"):
        ops.dropout(x, p=0.5, seed=-1)
    with pytest.raises(ValueError, match=r"seed: expected an int < 2\*\*64"):
        ops.dropout(x, p=0.5, seed=2**64)
    with pytest.raises(TypeError, match="seed: expected an int"):
        ops.dropout(x, p=0.5, seed=1.0)
    with pytest.raises(ValueError, match="offset: expected an int >= 0"):
        ops.dropout(x, p=0.5, seed=1, offset=-3)
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        ops.dropout(x.astype(np.float64), p=0.5, seed=1)
    with pytest.raises(ValueError, match="x: expected a C-contiguous"):
        ops.dropout(x.T, p=0.5, seed=1)
    with pytest.raises(ValueError, match=r"out: expected shape \(4, 6\)"):
        ops.dropout(x, p=0.5, seed=1, out=np.empty((4, 5), np.float32))
    with pytest.raises(TypeError, match="mask_out: expected dtype uint8"):
        ops.dropout(x, p=0.5, seed=1, mask_out=np.empty((4, 6), np.bool_))
    with pytest.raises(ValueError, match="mask_out: must not share memory with x"):
        ops.dropout(x, p=0.5, seed=1, mask_out=x.reshape(-1).view(np.uint8)[:24].reshape(4, 6))
    _, mask = ops.dropout(x, p=0.5, seed=1)
    with pytest.raises(TypeError, match="mask: expected dtype uint8, got bool"):
        ops.dropout_undo(x, mask.astype(bool), p=0.5)
    with pytest.raises(TypeError, match="mask: expected dtype uint8, got float32"):
        ops.dropout_undo(x, mask.astype(np.float32), p=0.5)
    with pytest.raises(TypeError, match="mask: expected a numpy.ndarray of uint8"):
        ops.dropout_undo(x, mask.tolist(), p=0.5)
    with pytest.raises(ValueError, match=r"mask: expected shape \(4, 6\) \(the shape of grad_y\)"):
        ops.dropout_undo(x, mask.reshape(6, 4), p=0.5)
    with pytest.raises(ValueError, match="mask: expected a C-contiguous"):
        ops.dropout_undo(x, np.asfortranarray(mask), p=0.5)
    with pytest.raises(ValueError, match="p: expected a drop probability"):
        ops.dropout_undo(x, mask, p=1.5)
    with pytest.raises(ValueError, match="out: must not share memory with grad_y"):
        big = rng.standard_normal((5, 6)).astype(np.float32)
        ops.dropout_undo(big[:4], mask, p=0.5, out=big[1:])
    with pytest.raises(ValueError, match=r"counter: expected a tuple of 4 ints"):
        ops.philox4x32_10((0, 0, 0), (0, 0))
    with pytest.raises(ValueError, match=r"key\[1\]: expected an int < 2\*\*32"):
        ops.philox4x32_10((0, 0, 0, 0), (0, 2**32))


def test_core_backstop(rng):
    from alexnet_ext import _core
    x = rng.standard_normal((4, 6)).astype(np.float32)
    out = np.empty((4, 6), np.float32)
    with pytest.raises(ValueError, match="mask: expected the shape of x"):
        _core.cpu.dropout(x, out, np.empty(23, np.uint8), 0.5, 1, 0)
    with pytest.raises(ValueError, match="p: expected 0 <= p < 1"):
        _core.cpu.dropout(x, out, np.empty((4, 6), np.uint8), 1.0, 1, 0)
    with pytest.raises(TypeError):
        _core.cpu.dropout(x, out, np.empty((4, 6), np.int8), 0.5, 1, 0)
    with pytest.raises(TypeError):
        _core.cpu.dropout(x, out, np.empty((4, 6), np.uint8), 0.5, -1, 0)
