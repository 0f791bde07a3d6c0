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

def _paper_in_miniature(name, *, conv1, norm1, conv2, conv3, fc4, image, pool3=False,
                        dropout=False):
    """Two columns as in the paper: conv1 split, conv2 in-column (groups 2), conv3 and fc4
    reading both columns, response norm within each column, fc5 whole (the classifier).
    ``conv1`` = (size, padding), the others: filters or outputs; optional avg pool after conv3
    and dropout after fc4."""
    layers = [("conv1", "conv", {"input": "data", "filters": 8, "size": conv1[0], "stride": 2,
                                 "padding": conv1[1]}),
              ("relu1", "relu", {}),
              ("norm1", "lrn", norm1),
              ("pool1", "pool", {"size": 3, "stride": 2}),
              ("conv2", "conv", {"filters": conv2, "size": 3, "padding": 1, "groups": 2}),
              ("relu2", "relu", {}),
              ("conv3", "conv", {"filters": conv3, "size": 3, "padding": 1}),
              ("relu3", "relu", {})]
    layers += [("pool3", "pool", {"mode": "avg", "size": 2, "stride": 2})] * pool3
    layers += [("fc4", "fc", {"outputs": fc4}), ("relu4", "relu", {})]
    layers += [("drop4", "dropout", {"p": 0.5})] * dropout
    layers += [("fc5", "fc", {"outputs": "classes", "split": False}), ("probs", "softmax", {})]
    return toml_model({"name": name, "channels": 3, "classes": 5, "columns": 2}, layers,
                      data=_image(image))


# The paper's column structure in miniature (the net tests).
TWO_COLUMNS = _paper_in_miniature(
    "twocol", conv1=(3, 1), norm1={"size": 3, "k": 1.5, "alpha": 0.2, "beta": 0.75}, conv2=8,
    conv3=6, fc4=8, image=15)

# The same as torch would write it per layer, with avg pooling and dropout (the interop tests).
INTEROP = _paper_in_miniature(
    "interop", conv1=(5, 2), norm1={"size": 5, "k": 2.0, "alpha": 0.01, "beta": 0.75}, conv2=12,
    conv3=8, fc4=16, image=23, pool3=True, dropout=True)

# The smallest two-column model with every kind of table: the model-file tests edit it.
SMALL = toml_model(
    {"name": "tiny", "channels": 3, "classes": 4, "columns": 2},
    [("conv1", "conv", {"input": "data", "filters": 4, "size": 3, "padding": 1}),
     ("relu1", "relu", {}),
     ("pool1", "pool", {"size": 2, "stride": 2}),
     ("fc2", "fc", {"outputs": "classes", "split": False}),
     ("probs", "softmax", {})],
    data=_image(8))

def _classifier(i: int) -> list:
    """fc{i} (16 units) -> relu -> dropout -> fc{i+1} (the classes, one merged layer) -> probs."""
    return [(f"fc{i}", "fc", {"outputs": 16, "init_std": 0.1, "init_bias": 0.1}),
            (f"relu{i}", "relu", {}),
            (f"drop{i}", "dropout", {"p": 0.5}),
            (f"fc{i + 1}", "fc", {"outputs": "classes", "split": False}),
            ("probs", "softmax", {})]


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
     *_classifier(3)],
    learning={"lr": 0.01, "batch_size": 8, "epochs": 2, "patience": 1},
    data={"image_size": 20, "crop": 16})

# Two columns, a dropout over both, one merged fc: split nets give the dropout a column block
# (the data-parallel tests).
DATA_PARALLEL = toml_model(
    {"name": "tinydp", "channels": 3, "classes": 3, "columns": 2},
    [("conv1", "conv", {"input": "data", "filters": 8, "size": 3, "stride": 2, "padding": 1,
                        "init_std": 0.1}),
     ("relu1", "relu", {}),
     ("pool1", "pool", {"size": 3, "stride": 2}),
     *_classifier(2)],
    learning={"lr": 0.02, "batch_size": 8, "epochs": 2, "patience": 1},
    data={"image_size": 20, "crop": 16, "scale": 0.02})
