"""open_dataset: IDX, CIFAR-10/100, image trees, shards; and its errors."""
import pickle

import numpy as np
import pytest
from PIL import Image

from alexnet_ext.data import DatasetError, open_dataset, write_shards
from alexnet_ext.data.imageio import load_image
from alexnet_ext.data.folder import list_images
from datagen import cifar10_dir, cifar100_dir, image_tree, mnist_dir, random_rgb, write_idx


@pytest.mark.parametrize("gz", [False, True])
def test_idx_directory(tmp_path, rng, gz):
    tri, trl, tei, tel = mnist_dir(tmp_path, rng, gz=gz)
    ds = open_dataset(tmp_path)
    assert ds.format == "idx" and ds.channels == 1 and ds.image_size == (28, 28)
    assert ds.num_classes == max(trl.max(), tel.max()) + 1 and ds.pca is None
    tr, va = ds.split("train"), ds.split("val")
    np.testing.assert_array_equal(tr.images(np.arange(len(tr)))[:, 0], tri)
    np.testing.assert_array_equal(va.images([3, 1])[:, 0], tei[[3, 1]])
    np.testing.assert_array_equal(tr.labels, trl)
    np.testing.assert_array_equal(va.labels, tel)
    np.testing.assert_allclose(ds.mean[0], tri.mean(0), rtol=1e-6)


def test_idx_file_list_resize_and_errors(tmp_path, rng):
    tri, trl, _, _ = mnist_dir(tmp_path, rng)
    pair = [tmp_path / "train-labels-idx1-ubyte", tmp_path / "train-images-idx3-ubyte"]
    ds = open_dataset(pair)
    assert ds.split("val") is None and len(ds.split("train")) == len(tri)
    big = open_dataset(tmp_path, image_size=32)
    assert big.image_size == (32, 32) and big.mean.shape == (1, 32, 32)
    bad = tmp_path / "bad"
    bad.mkdir()
    write_idx(bad / "imgs", tri)
    write_idx(bad / "labels", trl[:-1])
    with pytest.raises(DatasetError, match="label"):
        open_dataset(bad)
    with pytest.raises(DatasetError, match="IDX file: pass its directory"):
        open_dataset(tmp_path / "train-images-idx3-ubyte")
    with pytest.raises(DatasetError, match="no such file"):
        open_dataset([tmp_path / "nope"])


def test_cifar10(tmp_path, rng):
    tr_x, tr_y, te_x, te_y, names = cifar10_dir(tmp_path / "cifar-10-batches-py", rng)
    ds = open_dataset(tmp_path)  # the archive's top folder is looked into
    assert ds.format == "cifar10" and ds.class_names == names and ds.image_size == (32, 32)
    tr = ds.split("train")
    np.testing.assert_array_equal(tr.images(np.arange(len(tr))), tr_x)
    np.testing.assert_array_equal(tr.labels, tr_y)
    np.testing.assert_array_equal(ds.split("val").images(np.arange(len(te_y))), te_x)
    np.testing.assert_allclose(ds.mean, tr_x.mean(0), rtol=1e-6)
    pix = tr_x.transpose(1, 0, 2, 3).reshape(3, -1).astype(float)
    np.testing.assert_allclose(ds.pca[0], np.linalg.eigvalsh(np.cov(pix, bias=True))[::-1], rtol=1e-9)


def test_cifar100(tmp_path, rng):
    tr_x, tr_y, te_x, te_y, names = cifar100_dir(tmp_path, rng)
    ds = open_dataset(tmp_path)
    assert ds.format == "cifar100" and ds.num_classes == 100 and ds.class_names[7] == "fine7"
    np.testing.assert_array_equal(ds.split("train").labels, tr_y)
    np.testing.assert_array_equal(ds.split("val").images([0]), te_x[:1])


class _Evil:
    def __reduce__(self):
        import os
        return (os.system, ("touch EVIL_RAN",))


def test_cifar_reader_does_not_execute_pickles(tmp_path, rng, monkeypatch):
    monkeypatch.chdir(tmp_path)
    d = tmp_path / "c"
    cifar10_dir(d, rng, batches=1)
    with open(d / "data_batch_2", "wb") as f:
        pickle.dump({b"data": _Evil(), b"labels": [0]}, f, protocol=2)
    ds = open_dataset(d)  # the evil file is not a batch we can read: ignored
    assert len(ds.split("train")) == 6
    assert not (tmp_path / "EVIL_RAN").exists()


def test_image_tree_train_val(tmp_path, rng):
    root = image_tree(tmp_path / "t", rng, train=3, val=2)
    ds = open_dataset(root, image_size=20)
    assert ds.describe() == f"image-folder at {root}: 3 classes, 9 train / 6 val images, 3x20x20"
    va = ds.split("val")
    files = [f for c in ds.class_names for f in list_images(root / "val" / c)]
    for i, f in enumerate(files):
        np.testing.assert_array_equal(va.images([i])[0], load_image(f, 20))
    np.testing.assert_array_equal(va.labels, [0, 0, 1, 1, 2, 2])


def test_image_tree_classes_split_is_deterministic(tmp_path, rng):
    root = image_tree(tmp_path / "t", rng, classes=("x", "y"), train=10, layout="classes")
    a = open_dataset(root, image_size=12)
    b = open_dataset(root, image_size=12, val_fraction=0.1)
    assert len(a.split("train")) == 18 and len(a.split("val")) == 2
    np.testing.assert_array_equal(a.split("val").images([0, 1]), b.split("val").images([0, 1]))
    # Train and val are disjoint: no val image equals a train image.
    tr = a.split("train").images(np.arange(18)).reshape(18, -1)
    for v in a.split("val").images([0, 1]).reshape(2, -1):
        assert not (tr == v).all(axis=1).any()
    assert open_dataset(root, image_size=12, val_fraction=0).split("val") is None
    c = open_dataset(root, image_size=12, val_fraction=0.5)
    assert len(c.split("val")) == 10


def test_image_tree_size_from_dataset_json_and_default(tmp_path, rng):
    root = image_tree(tmp_path / "t", rng, classes=("x",), train=1, val=0)
    (root / "dataset.json").write_text('{"image_size": 10}')
    assert open_dataset(root).image_size == (10, 10)
    (root / "dataset.json").unlink()
    assert open_dataset(root).image_size == (256, 256)


def test_shards_size_mismatch(tmp_path, rng):
    write_shards(tmp_path, ["a"], (rng.integers(0, 256, (2, 3, 8, 8), dtype=np.uint8), np.zeros(2)))
    with pytest.raises(DatasetError, match="hold 8x8 images.*--size 16"):
        open_dataset(tmp_path, image_size=16)
    (tmp_path / "train-00000-images.npy").unlink()
    with pytest.raises(DatasetError, match="incomplete.*train-00000-images.npy"):
        open_dataset(tmp_path)


def test_errors_say_what_was_looked_for_and_found(tmp_path, rng):
    with pytest.raises(DatasetError, match="no such file or directory"):
        open_dataset(tmp_path / "missing")
    with pytest.raises(DatasetError, match=r"not a dataset\. Looked for: a prepared shard.*Found: 0 file"):
        open_dataset(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"Found: 1 file\(s\) \(notes.txt\) and 1 folder\(s\) \(sub\) without image"):
        open_dataset(tmp_path)
    with pytest.raises(DatasetError, match="is a file"):
        open_dataset(tmp_path / "notes.txt")
    with pytest.raises(TypeError, match="path:"):
        open_dataset(42)
    with pytest.raises(TypeError, match="image_size:"):
        open_dataset(tmp_path, image_size=2.5)


def test_image_tree_errors(tmp_path, rng):
    root = image_tree(tmp_path / "t", rng, classes=("a", "b"), train=1, val=1)
    (root / "train" / "c").mkdir()
    (root / "train" / "c" / "readme.txt").write_text("not an image")
    with pytest.raises(DatasetError, match=f"empty class folder: {root / 'train' / 'c'}"):
        open_dataset(root)
    (root / "train" / "c" / "readme.txt").unlink()
    (root / "train" / "c").rmdir()
    (root / "val" / "zebra").mkdir()
    Image.fromarray(random_rgb(rng, 8, 8)).save(root / "val" / "zebra" / "z.png")
    with pytest.raises(DatasetError, match="zebra do not exist in"):
        open_dataset(root)


def test_split_images_rejects_bad_indices(tmp_path, rng):
    write_shards(tmp_path, ["a"], (rng.integers(0, 256, (3, 3, 4, 4), dtype=np.uint8), np.zeros(3)))
    s = open_dataset(tmp_path).split("train")
    with pytest.raises(ValueError, match=r"indices: expected values in \[0, 3\)"):
        s.images([3])
    with pytest.raises(ValueError, match="indices"):
        s.images([-1])
    with pytest.raises(TypeError, match="indices"):
        s.images([0.5])
    assert s.images([]).shape == (0, 3, 4, 4)
    with pytest.raises(ValueError, match="name: expected 'train' or 'val'"):
        open_dataset(tmp_path).split("test")


def test_image_folder_splits_name_their_files(tmp_path):
    """features writes the file of each row for image folders (issue 10): splits carry paths."""
    from alexnet_ext import features

    root = image_tree(tmp_path / "tree", np.random.default_rng(3))
    ds = open_dataset(root, image_size=16, workers=0)
    split = ds.split("train")
    assert split.paths is not None and len(split.paths) == len(split)
    names = features.item_names(split, np.array([2, 0]))
    assert names == [str(split.paths[2]), str(split.paths[0])]
    assert all(n.endswith((".jpg", ".png", ".jpeg", ".JPEG")) for n in names), names
    # arrays (IDX, CIFAR) have no files: features falls back to indices
    mnist_dir(tmp_path / "mnist", np.random.default_rng(4))
    mn = open_dataset(tmp_path / "mnist")
    assert mn.split("train").paths is None
    assert features.item_names(mn.split("train"), np.array([1])) == ["1"]
