"""ops.normalize_batch on the CPU: a float64 reference from the definition, the exact float32
steps, the loader's float path bit for bit, and the argument checks."""
import numpy as np
import pytest

from alexnet_ext import ops
from batch_helpers import float32_steps, loader, random_case, random_split, reference


@pytest.mark.parametrize("scale", [1.0, 1 / 255, 0.017, -3.0])
def test_matches_the_definition(rng, scale):
    x, mean, offsets, shift = random_case(rng)
    out = ops.normalize_batch(x, mean, offsets, shift, scale=scale)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out, reference(x, mean, offsets, shift, scale), rtol=1e-6,
                               atol=1e-6 * abs(scale))
    np.testing.assert_array_equal(out, float32_steps(x, mean, offsets, shift, scale))


def test_optional_parts_and_out(rng):
    x, mean, offsets, shift = random_case(rng, c=1, s=4, t=4, h=4, w=4)
    np.testing.assert_array_equal(ops.normalize_batch(x, mean),
                                  float32_steps(x, mean, None, None, 1.0))
    out = np.full(x.shape, np.nan, np.float32)
    got = ops.normalize_batch(x, mean, None, shift, scale=2.0, out=out)
    assert got is out
    np.testing.assert_array_equal(out, float32_steps(x, mean, None, shift, 2.0))
    # a flip of a full-size mean reads it mirrored
    flip = np.zeros((x.shape[0], 3), np.int32)
    flip[:, 2] = 1
    np.testing.assert_array_equal(ops.normalize_batch(x, mean, flip),
                                  x.astype(np.float32) - mean[None, :, :, ::-1])


@pytest.mark.parametrize("train,lighting,flip", [(True, 0.1, True), (True, 0.0, True),
                                                 (True, 0.1, False), (False, 0.0, False)])
@pytest.mark.parametrize("channels", [3, 1])
def test_the_loaders_float_path_bit_for_bit(rng, train, lighting, flip, channels):
    """uint8 batches + normalize_batch == the float32 batches of the same loader settings."""
    split, _, mean, pca = random_split(rng, c=channels)
    kw = dict(train=train, lighting=lighting, flip=flip)
    f = loader(split, mean, pca, **kw)
    u = loader(split, mean, pca, dtype="uint8", **kw)
    for e in (0, 3):
        for (x, y), raw in zip(f.epoch(e), u.epoch(e), strict=True):
            out = ops.normalize_batch(raw.x, mean, raw.offsets, raw.shift, scale=u.scale)
            np.testing.assert_array_equal(out, x)
            np.testing.assert_array_equal(raw.y, y)


def test_bad_arguments(rng):
    x, mean, offsets, shift = random_case(rng, b=3, s=4, t=5, h=6, w=8)
    with pytest.raises(TypeError, match="x: expected dtype uint8, got float32"):
        ops.normalize_batch(x.astype(np.float32), mean)
    with pytest.raises(TypeError, match="x: expected a numpy.ndarray of uint8"):
        ops.normalize_batch([1, 2], mean)
    with pytest.raises(ValueError, match=r"x: expected 4 dimensions \(B, C, S, T\)"):
        ops.normalize_batch(x[0], mean)
    with pytest.raises(TypeError, match="mean: expected dtype float32"):
        ops.normalize_batch(x, mean.astype(np.float64))
    with pytest.raises(ValueError, match="mean: expected 3 channels"):
        ops.normalize_batch(x, mean[:2])
    with pytest.raises(ValueError, match="mean: a 6x4 mean image is smaller than the 4x5 crops"):
        ops.normalize_batch(x, np.ascontiguousarray(mean[:, :, :4]))
    with pytest.raises(TypeError, match="offsets: expected dtype int32, got int64"):
        ops.normalize_batch(x, mean, offsets.astype(np.int64))
    with pytest.raises(ValueError, match=r"offsets: expected shape \(3, 3\)"):
        ops.normalize_batch(x, mean, offsets[:2])
    with pytest.raises(ValueError, match=r"shift: expected shape \(3, 3\)"):
        ops.normalize_batch(x, mean, offsets, shift[:, :2].copy())
    with pytest.raises(ValueError, match="scale: expected a finite number"):
        ops.normalize_batch(x, mean, scale=float("inf"))
    with pytest.raises(ValueError, match="out: expected shape"):
        ops.normalize_batch(x, mean, out=np.empty((3, 3, 4, 4), np.float32))
    buf = np.zeros(x.size + mean.size, np.float32)
    m2 = buf[:mean.size].reshape(mean.shape)
    m2[...] = mean
    with pytest.raises(ValueError, match="out: must not share memory with mean"):
        ops.normalize_batch(x, m2, out=buf[:x.size].reshape(x.shape))


@pytest.mark.parametrize("col,value,what", [(0, 3, r"crop top\) = 3 is outside \[0, 2\]"),
                                            (0, -1, r"crop top\) = -1 is outside \[0, 2\]"),
                                            (1, 4, r"crop left\) = 4 is outside \[0, 3\]"),
                                            (2, 2, r"flip flag\) = 2 is outside \{0, 1\}")])
def test_bad_offsets_raise_before_writing(rng, col, value, what):
    x, mean, offsets, shift = random_case(rng, b=3, s=4, t=5, h=6, w=8)
    offsets[1, col] = value
    out = np.full(x.shape, 7.0, np.float32)
    with pytest.raises(ValueError, match=rf"offsets: offsets\[1, {col}\] \({what}"):
        ops.normalize_batch(x, mean, offsets, shift, out=out)
    assert np.all(out == 7.0)  # nothing written
