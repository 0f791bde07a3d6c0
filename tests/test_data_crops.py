"""center_crop and ten_view_crops against hand-written slices."""
import numpy as np
import pytest

from alexnet_ext.data import TEN_VIEW_ORDER, center_crop, ten_view_crops


@pytest.mark.parametrize("h,w,crop", [(8, 8, 5), (9, 7, 4), (6, 6, 6), (7, 10, 1)])
def test_center_crop(rng, h, w, crop):
    a = rng.integers(0, 256, (3, 2, h, w), dtype=np.uint8)
    y, x = (h - crop) // 2, (w - crop) // 2
    out = center_crop(a, crop)
    np.testing.assert_array_equal(out, a[:, :, y:y + crop, x:x + crop])
    assert out.dtype == np.uint8 and out.flags.c_contiguous


def test_ten_views_by_hand(rng):
    a = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    v = ten_view_crops(a, 6)
    assert v.shape == (10, 2, 3, 6, 6) and v.dtype == np.float32
    expect = [a[..., 0:6, 0:6], a[..., 0:6, 5:11], a[..., 3:9, 0:6], a[..., 3:9, 5:11], a[..., 1:7, 2:8]]
    expect += [e[..., ::-1] for e in expect]
    for k in range(10):
        np.testing.assert_array_equal(v[k], expect[k], err_msg=TEN_VIEW_ORDER[k])
    # Flipped views are mirror images column by column.
    np.testing.assert_array_equal(v[5][..., 0], a[..., 0:6, 5])
    np.testing.assert_array_equal(v[4], center_crop(a, 6))


def test_ten_views_single_image_and_full_crop(rng):
    img = rng.integers(0, 256, (3, 5, 5), dtype=np.uint8)
    v = ten_view_crops(img, 5)
    assert v.shape == (10, 3, 5, 5)
    for k in range(5):
        np.testing.assert_array_equal(v[k], img)
        np.testing.assert_array_equal(v[k + 5], img[..., ::-1])


def test_crop_arguments_rejected(rng):
    a = np.zeros((1, 3, 8, 8), np.uint8)
    with pytest.raises(ValueError, match="crop: 9 is larger than the images"):
        ten_view_crops(a, 9)
    with pytest.raises(ValueError, match="crop: expected an int >= 1"):
        center_crop(a, 0)
    with pytest.raises(TypeError, match="crop: expected an int"):
        center_crop(a, 4.0)
    with pytest.raises(TypeError, match="images: expected a numpy.ndarray"):
        center_crop([[1, 2], [3, 4]], 1)
    with pytest.raises(ValueError, match="images: expected at least 2 dimensions"):
        ten_view_crops(np.zeros(5), 1)
