"""Model files: parsing, validation and shape inference.

A model file is TOML with four parts (docs/MODELS.md has the full reference):

* ``[model]`` -- name, input channels, default class count, number of columns;
* ``[layers.NAME]`` tables -- the graph (cuda-convnet's layers.cfg), one table per layer;
* ``[learning]`` -- the optimiser and its schedule (cuda-convnet's layer-params.cfg);
* ``[data]`` -- how images are prepared (image size, crop, flips, PCA lighting, scale).

:func:`load_model` turns one into a :class:`ModelSpec`: layers in topological order, every
tensor's per-image shape, parameter shapes, FLOPs and the column layout of every tensor. Every
mistake is a :class:`ModelError` naming the file, the layer and the reason, raised before any
array is allocated.

Columns: a model with ``columns = K`` (the paper: 2) splits each conv/fc layer's outputs into
K equal, contiguous blocks, block c belonging to column c. Elementwise layers, pooling and
response norm follow their input's layout (response norm normalises within a column's maps, as
on the paper's two GPUs). ``split = false`` keeps a conv/fc layer whole on one column (``column``,
default 0): the paper's fc8 and the softmax. The same description runs either merged on one
device (groups express which filters see which column) or as K per-column subgraphs
(:mod:`alexnet_ext.nn.net`); validation accepts only models that are valid both ways.
"""
from __future__ import annotations

import math
import numbers
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from ..ops import conv_output_size, pool_output_size

__all__ = ["ModelError", "LayerSpec", "ModelSpec", "available_models", "load_model",
           "parse_model", "models_dir"]

DATA = "data"


class ModelError(ValueError):
    """A mistake in a model file: ``path: layer 'name': reason``."""

    def __init__(self, reason: str, *, path: str | None = None, layer: str | None = None):
        self.reason = reason
        self.path = path
        self.layer = layer
        where = f"{path}: " if path else ""
        if layer:
            where += f"layer '{layer}': "
        super().__init__(where + reason)


# ---------------------------------------------------------------------------------------------
# Value checkers used by the key schemas. Each returns the cleaned value or raises ValueError with
# a phrase that completes "key: ...".

def _int(minimum=None, maximum=None):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise ValueError(f"expected an integer, got {v!r}")
        if minimum is not None and v < minimum:
            raise ValueError(f"expected an integer >= {minimum}, got {v}")
        if maximum is not None and v > maximum:
            raise ValueError(f"expected an integer <= {maximum}, got {v}")
        return int(v)
    return check


def _float(minimum=None, maximum=None, exclusive_min=False, exclusive_max=False):
    def check(v):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise ValueError(f"expected a number, got {v!r}")
        v = float(v)
        if not math.isfinite(v):
            raise ValueError(f"expected a finite number, got {v}")
        if minimum is not None and (v <= minimum if exclusive_min else v < minimum):
            raise ValueError(f"expected a number {'>' if exclusive_min else '>='} {minimum}, got {v}")
        if maximum is not None and (v >= maximum if exclusive_max else v > maximum):
            raise ValueError(f"expected a number {'<' if exclusive_max else '<='} {maximum}, got {v}")
        return v
    return check


def _bool(v):
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {v!r}")
    return v


def _str(v):
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {v!r}")
    return v


def _choice(*options):
    def check(v):
        if v not in options:
            raise ValueError(f"expected one of {', '.join(map(repr, options))}, got {v!r}")
        return v
    return check


def _pair(minimum):
    one = _int(minimum)

    def check(v):
        if isinstance(v, list):
            if len(v) != 2:
                raise ValueError(f"expected an integer or a [height, width] pair, got {v!r}")
            return one(v[0]), one(v[1])
        v = one(v)
        return v, v
    return check


def _outputs(v):
    if v == "classes":
        return v
    try:
        return _int(1)(v)
    except ValueError:
        raise ValueError(f'expected a positive integer or "classes", got {v!r}') from None


def _inputs(v):
    if isinstance(v, str):
        return [v]
    if isinstance(v, list) and v and all(isinstance(s, str) for s in v):
        if len(set(v)) != len(v):
            raise ValueError(f"lists the same input twice: {v!r}")
        return list(v)
    raise ValueError(f"expected a layer name or a non-empty list of layer names, got {v!r}")


def _int_list(v):
    if not isinstance(v, list):
        raise ValueError(f"expected a list of epochs, got {v!r}")
    out = [_int(1)(x) for x in v]
    if out != sorted(set(out)):
        raise ValueError(f"expected increasing epochs, got {v!r}")
    return out


# Keys every layer may have, then per type: key -> (checker, default). A default of None means the
# key is required.
_COMMON = {"type": (_str, None), "input": (_inputs, "previous"), "split": (_bool, "auto"),
           "column": (_int(0), 0)}
_WEIGHTED = {"init_std": (_float(0.0), 0.01), "init_bias": (_float(), 0.0)}
LAYER_KEYS = {
    "conv": {"filters": (_int(1), None), "size": (_pair(1), None), "stride": (_pair(1), (1, 1)),
             "padding": (_pair(0), (0, 0)), "groups": (_int(1), 1), **_WEIGHTED},
    "fc": {"outputs": (_outputs, None), **_WEIGHTED},
    "relu": {},
    "lrn": {"size": (_int(1), 5), "k": (_float(), 2.0), "alpha": (_float(0.0), 1e-4),
            "beta": (_float(0.0), 0.75), "alpha_over_size": (_bool, False)},
    "pool": {"mode": (_choice("max", "avg"), "max"), "size": (_int(1), 3),
             "stride": (_int(1), 2), "padding": (_int(0), 0), "ceil_mode": (_bool, False)},
    "dropout": {"p": (_float(0.0, 1.0, exclusive_max=True), 0.5)},
    "softmax": {},
}
WEIGHTED_TYPES = ("conv", "fc")

MODEL_KEYS = {"name": (_str, None), "description": (_str, ""), "channels": (_int(1), 3),
              "classes": (_int(1), 1000), "columns": (_int(1), 1)}
LEARNING_KEYS = {
    "lr": (_float(0.0, exclusive_min=True), 0.01),
    "momentum": (_float(0.0, 1.0, exclusive_max=True), 0.9),
    "weight_decay": (_float(0.0), 5e-4),
    "bias_decay": (_float(0.0), 0.0),
    "batch_size": (_int(1), 128),
    "epochs": (_int(1), 90),
    "schedule": (_choice("plateau", "steps", "none"), "plateau"),
    "patience": (_int(1), 3),
    "max_reductions": (_int(0), 3),
    "lr_factor": (_float(0.0, 1.0, exclusive_min=True, exclusive_max=True), 0.1),
    "min_improvement": (_float(0.0), 0.0),
    "steps": (_int_list, []),
}
DATA_KEYS = {"image_size": (_int(1), 256), "crop": (_int(1), 224), "flip": (_bool, True),
             "lighting": (_float(0.0), 0.1), "scale": (_float(0.0, exclusive_min=True), 1.0)}


def _apply_schema(table, schema, *, what, path, layer=None, skip=()):
    if not isinstance(table, dict):
        raise ModelError(f"{what} must be a table, got {table!r}", path=path, layer=layer)
    unknown = [k for k in table if k not in schema and k not in skip]
    if unknown:
        raise ModelError(f"unknown key{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(map(repr, unknown))} in {what} "
                         f"(allowed: {', '.join(k for k in schema if k not in skip)})",
                         path=path, layer=layer)
    out = {}
    for key, (check, default) in schema.items():
        if key in skip:
            continue
        if key in table:
            try:
                out[key] = check(table[key])
            except ValueError as e:
                raise ModelError(f"{key}: {e}", path=path, layer=layer) from None
        elif default is None:
            raise ModelError(f"missing required key '{key}' in {what}", path=path, layer=layer)
        else:
            out[key] = default
    return out


# ---------------------------------------------------------------------------------------------

@dataclass
class LayerSpec:
    """One layer of a model file, validated, with its inferred shapes."""

    name: str
    type: str
    inputs: list[str]
    attrs: dict
    split: bool = False           # conv/fc: outputs divided into the model's columns
    column: int = 0               # the column holding a whole (unsplit) output
    in_shapes: list[tuple] = field(default_factory=list)
    out_shape: tuple = ()         # per image: (C, H, W) or (D,)
    blocks: int = 1               # output layout: 1 (whole, on `column`) or K (one block per column)
    params: dict = field(default_factory=dict)   # canonical name -> shape
    flops: int = 0                # forward multiply-adds * 2, per image

    @property
    def num_params(self) -> int:
        return sum(math.prod(s) for s in self.params.values())


@dataclass
class ModelSpec:
    """A validated model: layers in topological order plus the learning and data settings."""

    name: str
    description: str
    path: str
    text: str
    channels: int
    classes: int
    columns: int
    layers: list[LayerSpec]
    learning: dict
    data: dict
    shapes: dict                  # tensor name -> per-image shape ("data" included)
    blocks: dict                  # tensor name -> output layout (1 or columns)

    @property
    def input_shape(self) -> tuple:
        return self.shapes[DATA]

    @property
    def num_params(self) -> int:
        return sum(layer.num_params for layer in self.layers)

    @property
    def flops(self) -> int:
        return sum(layer.flops for layer in self.layers)

    def layer(self, name: str) -> LayerSpec:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    @property
    def cost(self) -> LayerSpec:
        return self.layers[-1]

    @property
    def feature_layer(self) -> str:
        """The last hidden layer: the tensor the classifier (the fc feeding softmax) reads.

        Followed back through dropout so that the activations are those of the last hidden
        layer's ReLU (dropout is the identity at test time anyway).
        """
        by_name = {layer.name: layer for layer in self.layers}
        classifier = by_name[self.cost.inputs[0]]
        name = classifier.inputs[0]
        while name in by_name and by_name[name].type == "dropout":
            name = by_name[name].inputs[0]
        return name

    def first_conv(self) -> LayerSpec | None:
        for layer in self.layers:
            if layer.type == "conv":
                return layer
        return None


def models_dir() -> Path:
    """The directory of the model files shipped with the package."""
    return Path(__file__).resolve().parent.parent / "models"


def available_models() -> list[str]:
    return sorted(p.stem for p in models_dir().glob("*.toml"))


def load_model(name_or_path, *, classes: int | None = None, input_size: int | None = None,
               overrides: dict | None = None) -> ModelSpec:
    """Load a model by shipped name (``alexnet``) or by file path.

    Args:
        classes: the number of classes (from the data set); default: ``[model] classes``.
        input_size: the crop fed to the net; default: ``[data] crop``.
        overrides: ``{"learning": {...}, "data": {...}}`` values replacing the file's.
    """
    s = str(name_or_path)
    p = Path(s)
    if p.is_file():
        pass
    elif p.suffix == ".toml" or "/" in s or "\\" in s:
        raise ModelError(f"model file not found (shipped models: {', '.join(available_models())})",
                         path=s)
    else:  # a bare name: a shipped model (a folder of that name, say the data, does not count)
        p = models_dir() / f"{s}.toml"
        if not p.is_file():
            raise ModelError(f"unknown model '{s}': expected one of {', '.join(available_models())} "
                             "or the path of a .toml model file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"cannot read: {e}", path=str(p)) from None
    return parse_model(text, path=str(p), classes=classes, input_size=input_size,
                       overrides=overrides)


def parse_model(text: str, *, path: str = "<model>", classes: int | None = None,
                input_size: int | None = None, overrides: dict | None = None) -> ModelSpec:
    """Parse and validate model-file text; see :func:`load_model`."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ModelError(f"not valid TOML: {e}", path=path) from None
    unknown = [k for k in doc if k not in ("model", "layers", "learning", "data")]
    if unknown:
        raise ModelError(f"unknown section{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(map(repr, unknown))} (allowed: model, layers, learning, data)",
                         path=path)
    if "model" not in doc:
        raise ModelError("missing [model] section", path=path)
    model = _apply_schema(doc["model"], MODEL_KEYS, what="[model]", path=path)
    learning = _apply_schema(doc.get("learning", {}), LEARNING_KEYS, what="[learning]", path=path)
    data = _apply_schema(doc.get("data", {}), DATA_KEYS, what="[data]", path=path)
    for section, table in (overrides or {}).items():
        target = {"learning": (learning, LEARNING_KEYS), "data": (data, DATA_KEYS)}[section]
        for key, value in table.items():
            if value is not None:
                target[0][key] = _apply_schema({key: value}, {key: target[1][key]},
                                               what=f"[{section}]", path=path)[key]
    if learning["schedule"] == "steps" and not learning["steps"]:
        raise ModelError("[learning] schedule = \"steps\" needs a list of epochs in 'steps'", path=path)
    if classes is not None:
        model["classes"] = _int(1)(classes)
    if input_size is not None:
        data["crop"] = _int(1)(input_size)
        data["image_size"] = max(data["image_size"], data["crop"])
    if data["crop"] > data["image_size"]:
        raise ModelError(f"[data] crop {data['crop']} is larger than image_size {data['image_size']}",
                         path=path)

    layers_doc = doc.get("layers")
    if not layers_doc:
        raise ModelError("no layers: expected [layers.NAME] tables", path=path)
    if not isinstance(layers_doc, dict):
        raise ModelError("'layers' must be a set of [layers.NAME] tables", path=path)

    specs = []
    previous = DATA
    for name, table in layers_doc.items():
        if name == DATA:
            raise ModelError("the name 'data' is reserved for the input images", path=path, layer=name)
        if not isinstance(table, dict):
            raise ModelError("expected a table [layers.NAME]", path=path, layer=name)
        ltype = table.get("type")
        if ltype not in LAYER_KEYS:
            raise ModelError(f"unknown layer type {ltype!r} (known types: {', '.join(LAYER_KEYS)})"
                             if ltype is not None else "missing required key 'type'",
                             path=path, layer=name)
        schema = {**_COMMON, **LAYER_KEYS[ltype]}
        attrs = _apply_schema(table, schema, what=f"a {ltype} layer", path=path, layer=name)
        inputs = attrs.pop("input")
        if inputs == "previous":       # the default: the layer written above (data for the first)
            inputs = [previous]
        attrs.pop("type")
        split = attrs.pop("split")
        column = attrs.pop("column")
        if ltype not in WEIGHTED_TYPES and ("split" in table or "column" in table):
            raise ModelError(f"'split' and 'column' apply to conv and fc layers only; a {ltype} "
                             "layer follows its input's columns", path=path, layer=name)
        if split == "auto":
            split = model["columns"] > 1 and ltype in WEIGHTED_TYPES
        elif split and model["columns"] == 1:
            split = False
        if "column" in table and split:
            raise ModelError("'column' places a whole layer; set split = false to use it",
                             path=path, layer=name)
        if column >= model["columns"]:
            raise ModelError(f"column {column} does not exist (the model has {model['columns']})",
                             path=path, layer=name)
        if ltype in ("relu", "lrn", "pool", "dropout", "softmax") and len(inputs) != 1:
            raise ModelError(f"a {ltype} layer takes exactly one input, got {len(inputs)}",
                             path=path, layer=name)
        specs.append(LayerSpec(name=name, type=ltype, inputs=inputs, attrs=attrs, split=split,
                               column=column))
        previous = name

    ordered = _toposort(specs, path)
    spec = ModelSpec(name=model["name"], description=model["description"], path=path, text=text,
                     channels=model["channels"], classes=model["classes"],
                     columns=model["columns"], layers=ordered, learning=learning, data=data,
                     shapes={DATA: (model["channels"], data["crop"], data["crop"])},
                     blocks={DATA: 1})
    _infer(spec)
    return spec


def _toposort(specs: list[LayerSpec], path: str) -> list[LayerSpec]:
    by_name = {s.name: s for s in specs}
    for s in specs:
        for i in s.inputs:
            if i != DATA and i not in by_name:
                raise ModelError(f"input '{i}' is not defined (layers: data, "
                                 f"{', '.join(by_name)})", path=path, layer=s.name)
            if i == s.name:
                raise ModelError("a layer cannot read its own output", path=path, layer=s.name)
    consumers = {s.name: [] for s in specs}
    for s in specs:
        for i in s.inputs:
            if i != DATA:
                consumers[i].append(s.name)
    waiting = {s.name: sum(i != DATA for i in s.inputs) for s in specs}
    ready = [s.name for s in specs if waiting[s.name] == 0]
    order = []
    while ready:
        n = ready.pop(0)
        order.append(by_name[n])
        for c in consumers[n]:
            waiting[c] -= 1
            if waiting[c] == 0:
                ready.append(c)
                # keep file order among ready layers so that the order is predictable
                ready.sort(key=lambda x: specs.index(by_name[x]))
    if len(order) != len(specs):
        left = {n for n, w in waiting.items() if w > 0}
        cycle = _find_cycle(left, by_name)
        raise ModelError(f"the layers form a cycle: {' -> '.join(cycle)}", path=path, layer=cycle[0])
    costs = [s for s in order if s.type == "softmax"]
    if len(costs) != 1:
        raise ModelError(f"expected exactly one softmax (cost) layer, found {len(costs)}"
                         + (f": {', '.join(s.name for s in costs)}" if costs else ""), path=path)
    if consumers[costs[0].name]:
        raise ModelError("the softmax layer is the output: no layer may read it", path=path,
                         layer=costs[0].name)
    # Every layer must lead to the cost, or its output would never receive a gradient.
    useful = {costs[0].name}
    for s in reversed(order):
        if s.name in useful:
            useful.update(i for i in s.inputs if i != DATA)
    dead = [s.name for s in order if s.name not in useful]
    if dead:
        raise ModelError(f"output is not used on the way to the softmax layer '{costs[0].name}'",
                         path=path, layer=dead[0])
    if not any(DATA in s.inputs for s in order):
        raise ModelError("no layer reads 'data'", path=path)
    return order


def _find_cycle(nodes, by_name):
    start = sorted(nodes)[0]
    seen = [start]
    n = start
    while True:
        n = next(i for i in by_name[n].inputs if i in nodes)
        if n in seen:
            cyc = seen[seen.index(n):] + [n]
            return list(reversed(cyc))
        seen.append(n)


def _infer(spec: ModelSpec) -> None:
    """Shapes, parameters, FLOPs and column layouts, layer by layer (topological order)."""
    K = spec.columns
    for L in spec.layers:
        def fail(reason, L=L):
            raise ModelError(reason, path=spec.path, layer=L.name)

        L.in_shapes = [spec.shapes[i] for i in L.inputs]
        in_blocks = [spec.blocks[i] for i in L.inputs]
        a = L.attrs
        if L.type == "conv":
            for i, s in zip(L.inputs, L.in_shapes):
                if len(s) != 3:
                    fail(f"input '{i}' has shape {s}: a conv layer needs (channels, height, width) "
                         "maps, not a flat vector")
            hw = {s[1:] for s in L.in_shapes}
            if len(hw) > 1:
                fail(f"inputs have different map sizes {sorted(hw)}: a conv layer with several "
                     "inputs sums them, so their maps must have the same size")
            g, f = a["groups"], a["filters"]
            cin = sum(s[0] for s in L.in_shapes)
            if g > 1 and len(L.inputs) > 1:
                fail(f"groups={g} with several inputs: grouped convolution takes one input")
            if cin % g:
                fail(f"groups={g} does not divide the {cin} input channels")
            if f % g:
                fail(f"groups={g} does not divide the {f} filters")
            (kh, kw), (sh, sw), (ph, pw) = a["size"], a["stride"], a["padding"]
            _, h, w = L.in_shapes[0]
            try:
                ho = conv_output_size(h, kh, sh, ph)
                wo = conv_output_size(w, kw, sw, pw)
            except ValueError:
                fail(f"a {kh}x{kw} filter does not fit the {h}x{w} input with padding "
                     f"{ph}x{pw}")
            L.out_shape = (f, ho, wo)
            L.params = {f"{L.name}.weight": (f, cin // g, kh, kw), f"{L.name}.bias": (f,)}
            L.flops = 2 * f * ho * wo * (cin // g) * kh * kw
        elif L.type == "fc":
            f = spec.classes if a["outputs"] == "classes" else a["outputs"]
            a["outputs"] = f
            d = sum(math.prod(s) for s in L.in_shapes)
            L.out_shape = (f,)
            L.params = {f"{L.name}.weight": (f, d), f"{L.name}.bias": (f,)}
            L.flops = 2 * f * d
        elif L.type in ("relu", "dropout"):
            L.out_shape = L.in_shapes[0]
        elif L.type == "lrn":
            s = L.in_shapes[0]
            if len(s) != 3:
                fail(f"input has shape {s}: response norm runs across the maps of (C, H, W) input")
            L.out_shape = s
        elif L.type == "pool":
            s = L.in_shapes[0]
            if len(s) != 3:
                fail(f"input has shape {s}: pooling needs (C, H, W) input")
            c, h, w = s
            z, st, p = a["size"], a["stride"], a["padding"]
            if p > z // 2:
                fail(f"padding {p} is more than half the {z}x{z} window")
            try:
                ho = pool_output_size(h, z, st, p, a["ceil_mode"])
                wo = pool_output_size(w, z, st, p, a["ceil_mode"])
            except ValueError:
                fail(f"a {z}x{z} window does not fit the {h}x{w} input with padding {p}")
            L.out_shape = (c, ho, wo)
        elif L.type == "softmax":
            s = L.in_shapes[0]
            if len(s) != 1:
                fail(f"input '{L.inputs[0]}' has shape {s}: the softmax reads the class scores "
                     "of an fc layer")
            if s[0] != spec.classes:
                fail(f"input '{L.inputs[0]}' has {s[0]} outputs for {spec.classes} classes "
                     '(write outputs = "classes" in the last fc layer)')
            L.out_shape = s                # the class probabilities
        # Column layout.
        if L.type in WEIGHTED_TYPES:
            g = a.get("groups", 1)
            if L.split:
                f = L.out_shape[0]
                if f % K:
                    fail(f"{f} outputs do not split into {K} columns (set split = false to keep "
                         "the layer whole)")
                if g > 1 and (g % K or any(b != K for b in in_blocks)):
                    fail(f"groups={g} in a layer split into {K} columns needs groups to be a "
                         f"multiple of {K} and an input split into the same columns")
                L.blocks = K
            else:
                if g > 1 and any(b > 1 for b in in_blocks):
                    fail(f"groups={g} in a whole (split = false) layer reading columns: "
                         "split it, or use groups = 1")
                L.blocks = 1
        elif L.type == "softmax":
            if in_blocks[0] != 1:
                fail(f"input '{L.inputs[0]}' is split into {in_blocks[0]} columns: set split = "
                     f"false on '{L.inputs[0]}' so the class scores are whole")
            L.blocks = 1
            L.column = spec_column(spec, L.inputs[0])
        else:
            L.blocks = in_blocks[0]
            L.column = spec_column(spec, L.inputs[0])
            if L.blocks > 1 and L.out_shape[0] % L.blocks:
                fail(f"{L.out_shape[0]} channels do not split into {L.blocks} columns")
        spec.shapes[L.name] = L.out_shape
        spec.blocks[L.name] = L.blocks


def spec_column(spec: ModelSpec, tensor: str) -> int:
    """The column holding a whole tensor (data: column 0)."""
    if tensor == DATA:
        return 0
    return spec.layer(tensor).column
