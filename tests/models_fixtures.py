"""Tiny model files shared by the net, model-file, interop and GPU tests.

Each is written as data (a [model] table, layers as (name, type, keys) and other sections) and
rendered to the TOML a user would write, one ``key = value`` per line in the order given, so
tests may edit the text (``.replace("filters = 4", "filters = 0")``) as they would a file.
"""
import json


def _value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v) if isinstance(v, (str, list)) else repr(v)


def _table(header: str, items: dict) -> str:
    return "\n".join([f"[{header}]"] + [f"{k} = {_value(v)}" for k, v in items.items()])


def toml_model(model: dict, layers, **sections) -> str:
    """Model-file text: ``[model]``, one ``[layers.NAME]`` per ``(name, type, keys)`` of
    ``layers``, then ``sections`` (``learning=..., data=...``) in the order given."""
    parts = [_table("model", model)]
    parts += [_table(f"layers.{name}", {"type": kind, **keys}) for name, kind, keys in layers]
    parts += [_table(name, table) for name, table in sections.items()]
    return "\n" + "\n\n".join(parts) + "\n"


def _image(size: int) -> dict:
    return {"image_size": size, "crop": size}


# Every layer type in one chain: conv, relu, lrn, max pool, fc, dropout, softmax.
CHAIN = toml_model(
    {"name": "chain", "channels": 3, "classes": 3},
    [("conv1", "conv", {"input": "data", "filters": 4, "size": 3, "padding": 1}),
     ("relu1", "relu", {}),
     ("norm1", "lrn", {"size": 3, "k": 2.0, "alpha": 0.1, "beta": 0.75}),
     ("pool1", "pool", {"mode": "max", "size": 3, "stride": 2}),
     ("fc1", "fc", {"outputs": 12}),
     ("relu2", "relu", {}),
     ("drop", "dropout", {"p": 0.5}),
     ("fc2", "fc", {"outputs": "classes"}),
     ("probs", "softmax", {})],
    data=_image(9))

# relu1 feeds two pools (gradients add up); conv2 and fc3 read two inputs each.
BRANCHES = toml_model(
    {"name": "branches", "channels": 2, "classes": 4},
    [("conv1", "conv", {"input": "data", "filters": 3, "size": 3, "stride": 2, "padding": 1}),
     ("relu1", "relu", {}),
     ("maxp", "pool", {"input": "relu1", "mode": "max", "size": 2, "stride": 2}),
     ("avgp", "pool", {"input": "relu1", "mode": "avg", "size": 2, "stride": 2}),
     ("conv2", "conv", {"input": ["maxp", "avgp"], "filters": 5, "size": 2}),
     ("relu2", "relu", {}),
     ("fc3", "fc", {"input": ["relu2", "avgp"], "outputs": "classes"}),
     ("probs", "softmax", {})],
    data=_image(10))

# The paper's column structure in miniature: conv1 split, conv2 in-column (groups 2), conv3 and
# fc4 reading both columns, fc5 whole; response norm within each column.
TWO_COLUMNS = toml_model(
    {"name": "twocol", "channels": 3, "classes": 5, "columns": 2},
    [("conv1", "conv", {"input": "data", "filters": 8, "size": 3, "stride": 2, "padding": 1}),
     ("relu1", "relu", {}),
     ("norm1", "lrn", {"size": 3, "k": 1.5, "alpha": 0.2, "beta": 0.75}),
     ("pool1", "pool", {"size": 3, "stride": 2}),
     ("conv2", "conv", {"filters": 8, "size": 3, "padding": 1, "groups": 2}),
     ("relu2", "relu", {}),
     ("conv3", "conv", {"filters": 6, "size": 3, "padding": 1}),
     ("relu3", "relu", {}),
     ("fc4", "fc", {"outputs": 8}),
     ("relu4", "relu", {}),
     ("fc5", "fc", {"outputs": "classes", "split": False}),
     ("probs", "softmax", {})],
    data=_image(15))

# The smallest two-column model with every kind of table: the model-file tests edit it.
SMALL = toml_model(
    {"name": "tiny", "channels": 3, "classes": 4, "columns": 2},
    [("conv1", "conv", {"input": "data", "filters": 4, "size": 3, "padding": 1}),
     ("relu1", "relu", {}),
     ("pool1", "pool", {"size": 2, "stride": 2}),
     ("fc2", "fc", {"outputs": "classes", "split": False}),
     ("probs", "softmax", {})],
    data=_image(8))

# Two columns as torch would write them per layer: conv1 split, conv2 in-column (groups=2),
# conv3 and fc4 reading both columns, response norm within each column, avg pooling, fc5 whole.
INTEROP = toml_model(
    {"name": "interop", "channels": 3, "classes": 5, "columns": 2},
    [("conv1", "conv", {"input": "data", "filters": 8, "size": 5, "stride": 2, "padding": 2}),
     ("relu1", "relu", {}),
     ("norm1", "lrn", {"size": 5, "k": 2.0, "alpha": 0.01, "beta": 0.75}),
     ("pool1", "pool", {"size": 3, "stride": 2}),
     ("conv2", "conv", {"filters": 12, "size": 3, "padding": 1, "groups": 2}),
     ("relu2", "relu", {}),
     ("conv3", "conv", {"filters": 8, "size": 3, "padding": 1}),
     ("relu3", "relu", {}),
     ("pool3", "pool", {"mode": "avg", "size": 2, "stride": 2}),
     ("fc4", "fc", {"outputs": 16}),
     ("relu4", "relu", {}),
     ("drop4", "dropout", {"p": 0.5}),
     ("fc5", "fc", {"outputs": "classes", "split": False}),
     ("probs", "softmax", {})],
    data=_image(23))

# A two-column miniature of the paper's net for 16x16 crops of 20x20 images (the CLI tests).
TRAIN = toml_model(
    {"name": "tiny", "channels": 3, "classes": 3, "columns": 2},
    [("conv1", "conv", {"input": "data", "filters": 8, "size": 3, "stride": 2, "padding": 1,
                        "init_std": 0.01}),
     ("relu1", "relu", {}),
     ("norm1", "lrn", {}),
     ("pool1", "pool", {"size": 3, "stride": 2}),
     ("conv2", "conv", {"filters": 8, "size": 3, "padding": 1, "groups": 2, "init_std": 0.1,
                        "init_bias": 0.1}),
     ("relu2", "relu", {}),
     ("fc3", "fc", {"outputs": 16, "init_std": 0.1, "init_bias": 0.1}),
     ("relu3", "relu", {}),
     ("drop3", "dropout", {"p": 0.5}),
     ("fc4", "fc", {"outputs": "classes", "split": False}),
     ("probs", "softmax", {})],
    learning={"lr": 0.01, "batch_size": 8, "epochs": 2, "patience": 1},
    data={"image_size": 20, "crop": 16})
