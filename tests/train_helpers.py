"""Shared by the trainer tests: a tiny two-column model, its data set, a run helper (not part of
the package); the in-memory loader lives in loaders.py."""
import json

from alexnet_ext import train
from alexnet_ext.data.synthetic import default_dataset
from loaders import ArrayLoader  # noqa: F401  (re-exported for the trainer tests)


# A two-column miniature of the paper's net for 16x16 crops of 20x20 images.
TINY = """
[model]
name = "tiny"
channels = 3
classes = 3
columns = 2

[layers.conv1]
type = "conv"
input = "data"
filters = 8
size = 3
stride = 2
padding = 1
init_std = 0.01

[layers.relu1]
type = "relu"

[layers.norm1]
type = "lrn"

[layers.pool1]
type = "pool"
size = 3
stride = 2

[layers.conv2]
type = "conv"
filters = 8
size = 3
padding = 1
groups = 2
init_std = 0.1
init_bias = 0.1

[layers.relu2]
type = "relu"

[layers.fc3]
type = "fc"
outputs = 16
init_std = 0.1
init_bias = 0.1

[layers.relu3]
type = "relu"

[layers.drop3]
type = "dropout"
p = 0.5

[layers.fc4]
type = "fc"
outputs = "classes"
split = false

[layers.probs]
type = "softmax"

[learning]
lr = 0.01
batch_size = 8
epochs = 2
patience = 1

[data]
image_size = 20
crop = 16
"""

TIMING = ("img_per_s", "seconds", "data_wait")


def make_tiny_data(tmp):
    """3 classes of generated 20x20 shapes: 36 training (4 batches of 8) and 12 validation images."""
    return default_dataset(tmp / "shapes", classes=3, train_per_class=12, val_per_class=4, size=20,
                           seed=1, workers=1)


def write_tiny_model(tmp):
    p = tmp / "tiny.toml"
    p.write_text(TINY)
    return p


def run_train(*args, on_step=None):
    return train.main([str(a) for a in args], on_step=on_step)


def metrics(run_dir):
    """metrics.jsonl without the timing columns (strict JSON: a bare NaN fails here)."""
    rows = [json.loads(line, parse_constant=_no_constant)
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _no_constant(name):
    raise ValueError(f"not strict JSON: {name}")
