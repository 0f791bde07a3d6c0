"""Shared by the trainer and CLI tests: a tiny two-column model, its data set (also as module-scoped
fixtures: import them into a test module), ``run_train`` and the rows of metrics.jsonl (not part
of the package); the in-memory loader lives in loaders.py."""
import json

import numpy as np
import pytest

from alexnet_ext import train
from alexnet_ext.nn import load_checkpoint
from alexnet_ext.data.synthetic import default_dataset
from loaders import ArrayLoader  # noqa: F401  (re-exported for the trainer tests)
from models_fixtures import TRAIN


TINY = TRAIN   # a two-column miniature of the paper's net, 16x16 crops of 20x20 images

TIMING = ("img_per_s", "seconds", "data_wait")


def make_tiny_data(tmp):
    """3 classes of generated 20x20 shapes: 36 training (4 batches of 8) and 12 validation images."""
    return default_dataset(tmp / "shapes", classes=3, train_per_class=12, val_per_class=4, size=20,
                           seed=1, workers=1)


def write_tiny_model(tmp):
    p = tmp / "tiny.toml"
    p.write_text(TINY)
    return p


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_tiny_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("model"))


def run_train(*args, on_step=None):
    return train.main([str(a) for a in args], on_step=on_step)


def metrics(run_dir):
    """metrics.jsonl without the timing columns (strict JSON: a bare NaN fails here)."""
    rows = [json.loads(line, parse_constant=_no_constant)
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _no_constant(name):
    raise ValueError(f"not strict JSON: {name}")


def assert_same_run(a, b):
    """Two run directories hold the same metrics and, bit for bit, the same final parameters and
    velocities (a resumed run against one that was not interrupted)."""
    assert metrics(b) == metrics(a)
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    for k in ca.params:
        np.testing.assert_array_equal(ca.params[k], cb.params[k])
        np.testing.assert_array_equal(ca.velocities[k], cb.velocities[k])

