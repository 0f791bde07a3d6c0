"""Running the training CLI in tests: a tiny generated data set and model (module-scoped
fixtures: import them into a test module), ``run_train`` and the rows of metrics.jsonl."""
import json

import pytest

from alexnet_ext import train
from alexnet_ext.data.synthetic import default_dataset
from models_fixtures import TRAIN

TIMING = ("img_per_s", "seconds", "data_wait")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "shapes"
    return default_dataset(root, classes=3, train_per_class=12, val_per_class=4, size=20, seed=1,
                           workers=1)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    p = tmp_path_factory.mktemp("model") / "tiny.toml"
    p.write_text(TRAIN)
    return p


def run_train(*args, on_step=None):
    return train.main([str(a) for a in args], on_step=on_step)


def metrics(run_dir):
    """metrics.jsonl's rows without the timing columns (they differ from run to run)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]
