"""The generated dataset: real image files, cached, atomic, deterministic."""
import numpy as np
import pytest
from PIL import Image

from alexnet_ext.data import DatasetError, open_dataset
from alexnet_ext.data import synthetic

SMALL = dict(classes=3, train_per_class=4, val_per_class=2, size=32, workers=1)


def test_generates_real_images_once(tmp_path):
    root = synthetic.default_dataset(tmp_path / "syn", **SMALL)
    files = sorted((root / "train").rglob("*.jpg"))
    assert len(files) == 12 and len(list((root / "val").rglob("*.jpg"))) == 6
    with Image.open(files[0]) as im:
        assert im.format == "JPEG" and im.size == (32, 32)
    ds = open_dataset(root)
    assert ds.format == "image-folder" and ds.image_size == (32, 32)
    assert ds.class_names == ["00-disc", "01-ring", "02-square"]
    assert len(ds.split("train")) == 12 and len(ds.split("val")) == 6
    stamp = (root / "dataset.json").stat().st_mtime_ns
    assert synthetic.default_dataset(tmp_path / "syn", **SMALL) == root
    assert (root / "dataset.json").stat().st_mtime_ns == stamp  # not generated again
    assert [p.name for p in tmp_path.iterdir()] == ["syn"]  # no temporary folder left
    with pytest.raises(DatasetError, match="other parameters.*size 32 != 40"):
        synthetic.default_dataset(tmp_path / "syn", **{**SMALL, "size": 40})


def test_deterministic_and_varied(tmp_path):
    a = open_dataset(synthetic.default_dataset(tmp_path / "a", **SMALL))
    b = open_dataset(synthetic.default_dataset(tmp_path / "b", **SMALL))
    xa = a.split("train").images(np.arange(12))
    np.testing.assert_array_equal(xa, b.split("train").images(np.arange(12)))
    # Images differ within a class (random colours, positions, backgrounds).
    assert not np.array_equal(xa[0], xa[1])
    assert np.abs(xa[0].astype(int) - xa[1].astype(int)).mean() > 10


def test_cache_location_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ALEXNET_EXT_CACHE", str(tmp_path / "cache"))
    root = synthetic.default_dataset(**SMALL)
    assert root.parent == tmp_path / "cache"
    assert root.name == "synthetic-v1-classes3-train_per_class4-val_per_class2-size32"
    with pytest.raises(ValueError, match="classes: at most 10"):
        synthetic.default_dataset(tmp_path / "x", classes=11)
    (tmp_path / "other").mkdir()
    with pytest.raises(DatasetError, match="holds no synthetic dataset"):
        synthetic.default_dataset(tmp_path / "other", **SMALL)


def test_render_is_deterministic_per_seed():
    imgs = {}
    for c, name in enumerate(synthetic.CLASS_NAMES):
        one = synthetic.render(name, 32, np.random.default_rng([0, c]))
        two = synthetic.render(name, 32, np.random.default_rng([0, c]))
        np.testing.assert_array_equal(one, two)
        assert one.shape == (32, 32, 3) and one.dtype == np.uint8
        imgs[name] = one
    assert len({v.tobytes() for v in imgs.values()}) == len(synthetic.CLASS_NAMES)
