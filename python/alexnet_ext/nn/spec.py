"""Model files: parsing, validation and shape inference.

A model file is TOML with four parts (docs/MODELS.md has the full reference):

* ``[model]`` -- name, input channels, default class count, number of columns;
* ``[layers.NAME]`` tables -- the graph (cuda-convnet's layers.cfg), one table per layer;
* ``[learning]`` -- the optimiser and its schedule (cuda-convnet's layer-params.cfg);
* ``[data]`` -- how images are prepared (image size, crop, flips, PCA lighting, scale).

:func:`load_model` turns one into a :class:`ModelSpec`: layers in topological order, every
tensor's per-image shape, parameter shapes, FLOPs and the column layout of every tensor, and an
estimate of the memory a training step needs (a model that cannot fit is refused). Every
mistake is a :class:`ModelError` naming the file, the layer and the reason, raised before any
array is allocated. This module knows no layer type by name: each type's keys, shape inference
and column layout are its class's (:data:`~alexnet_ext.nn.layers.LAYER_TYPES`); the key checks
are :mod:`.schema`'s.

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
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from . import schema as S
from .device import fuses
from .layers import LAYER_TYPES
from .schema import ModelError

__all__ = ["ModelError", "LayerSpec", "ModelSpec", "LAYER_TYPES", "available_models",
           "load_model", "parse_model", "models_dir", "memory_limit"]

DATA = "data"


# Keys every layer may have (each type adds its own: ``LAYER_TYPES[type].keys``), then the
# other sections.
_COMMON = {"type": S.text(), "input": S.layer_names("previous"), "split": S.flag("auto"),
           "column": S.integer(0, 0)}
MODEL_KEYS = {"name": S.text(), "description": S.text(""), "channels": S.integer(3, 1),
              "classes": S.integer(1000, 1), "columns": S.integer(1, 1)}
LEARNING_KEYS = {
    "lr": S.number(0.01, 0.0, exclusive_min=True),
    "momentum": S.number(0.9, 0.0, 1.0, exclusive_max=True),
    "weight_decay": S.number(5e-4, 0.0),
    "bias_decay": S.number(0.0, 0.0),
    "batch_size": S.integer(128, 1),
    "epochs": S.integer(90, 1),
    "schedule": S.choice("plateau", "plateau", "steps", "none"),
    "patience": S.integer(3, 1),
    "max_reductions": S.integer(3, 0),
    "lr_factor": S.number(0.1, 0.0, 1.0, exclusive_min=True, exclusive_max=True),
    "min_improvement": S.number(0.0, 0.0),
    "steps": S.epochs([]),
}
DATA_KEYS = {"image_size": S.integer(256, 1), "crop": S.integer(224, 1), "flip": S.flag(True),
             "lighting": S.number(0.1, 0.0), "scale": S.number(1.0, 0.0, exclusive_min=True)}


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
    def layer_type(self):
        """The registered :class:`~alexnet_ext.nn.layers.Layer` subclass of this layer's type."""
        return LAYER_TYPES[self.type]

    @property
    def num_params(self) -> int:
        return sum(math.prod(s) for s in self.params.values())

    @property
    def out_size(self) -> int:
        """Output values per image."""
        return math.prod(self.out_shape)


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

    def column_of(self, tensor: str) -> int:
        """The column holding a whole tensor (data: column 0)."""
        return 0 if tensor == DATA else self.layer(tensor).column

    @property
    def cost(self) -> LayerSpec:
        return self.layers[-1]

    @property
    def feature_layer(self) -> str:
        """The last hidden layer: the tensor the classifier (the fc feeding softmax) reads.

        Followed back through layers that are the identity at test time (dropout), so that the
        activations are those of the last hidden layer's ReLU.
        """
        by_name = {layer.name: layer for layer in self.layers}
        classifier = by_name[self.cost.inputs[0]]
        name = classifier.inputs[0]
        while name in by_name and by_name[name].layer_type.identity_at_test:
            name = by_name[name].inputs[0]
        return name

    def first_conv(self) -> LayerSpec | None:
        """The first layer whose weights are image filters (the one worth plotting)."""
        for layer in self.layers:
            if layer.layer_type.kernels_are_images:
                return layer
        return None

    def fused_away(self, device: str = "cpu", fuse="auto") -> set[str]:
        """The layers whose output a :class:`~alexnet_ext.nn.net.Net` on ``device`` built with
        ``fuse`` never writes: those it runs fused with their only reader (response norm ->
        max pool, on GPUs by default; see :func:`~alexnet_ext.nn.device.fuses`)."""
        if not fuses(device, fuse):
            return set()
        readers = {}
        for L in self.layers:
            for i in L.inputs:
                readers.setdefault(i, []).append(L)
        only = {name: r[0] for name, r in readers.items() if len(r) == 1 and r[0] is not self.cost}
        return {L.name for L in self.layers if L.name in only and L.layer_type.fuses_with(only[L.name])}

    def memory(self, batch_size: int | None = None, *, device: str = "cpu", fuse="auto") -> dict:
        """An estimate (a lower bound) of the memory a training step at ``batch_size`` (default:
        ``[learning] batch_size``) holds, in bytes, float32 throughout, for a net on ``device``
        built with ``fuse`` (:class:`~alexnet_ext.nn.net.Net`'s arguments).

        ``parameters``: value, gradient and momentum of every parameter; ``activations``: the
        input batch, every layer's output and its gradient (only the gradient where the net
        fuses the layer with its reader and never writes the output: :meth:`fused_away`), and
        what layers keep for backward (response norm's denominators, max pooling's switches,
        dropout's masks); ``total``; ``per_layer``: each layer's share (parameters plus
        activations).
        """
        n = self.learning["batch_size"] if batch_size is None else batch_size
        away = self.fused_away(device, fuse)
        per_layer = {L.name: 3 * 4 * L.num_params
                     + n * ((1 if L.name in away else 2) * 4 * L.out_size
                            + L.layer_type.saved_bytes(L))
                     for L in self.layers}
        params = 3 * 4 * self.num_params
        activations = n * 4 * math.prod(self.input_shape) + sum(per_layer.values()) - params
        return dict(parameters=params, activations=activations, total=params + activations,
                    per_layer=per_layer, batch_size=n)


def memory_limit() -> int | None:
    """The most memory a model may need (bytes): ``ALEXNET_EXT_MEMORY_LIMIT`` (bytes, or with
    a K, M, G or T suffix: powers of 1024) if set, else this machine's physical memory (None
    where the system does not say)."""
    v = os.environ.get("ALEXNET_EXT_MEMORY_LIMIT", "").strip()
    if v:
        scale = 1024 ** ("KMGT".index(v[-1].upper()) + 1) if v[-1].upper() in "KMGT" else 1
        try:
            limit = int(float(v[:-1] if scale > 1 else v) * scale)
            if limit > 0:
                return limit
        except (ValueError, OverflowError):
            pass
        raise ModelError(f"ALEXNET_EXT_MEMORY_LIMIT={v!r}: expected a positive number of bytes, "
                         "optionally with a K, M, G or T suffix (say 64G)")
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def gib(b: int) -> str:
    """``b`` bytes, for people: GiB and the exact count."""
    return f"{b / 2**30 if b < 2**1000 else math.inf:,.1f} GiB ({b:,} bytes)"


def check_memory(spec: ModelSpec, limit: int | None = None) -> None:
    """Refuse a model whose training step cannot fit in ``limit`` bytes (default:
    :func:`memory_limit`), naming the layer that needs the most."""
    limit = memory_limit() if limit is None else limit
    m = spec.memory()
    if limit is None or m["total"] <= limit:
        return
    worst = max(m["per_layer"], key=m["per_layer"].get)
    raise ModelError(f"needs about {gib(m['total'])} to train at batch size {m['batch_size']} "
                     f"(parameters {gib(m['parameters'])}, activations {gib(m['activations'])})"
                     f", more than the {gib(limit)} available (this machine's memory, or "
                     f"ALEXNET_EXT_MEMORY_LIMIT); the largest part is this layer's, "
                     f"{gib(m['per_layer'][worst])}", path=spec.path, layer=worst)


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
    """Parse and validate model-file text; see :func:`load_model`. A model whose training step
    needs more memory than :func:`memory_limit` is refused (:meth:`ModelSpec.memory`)."""
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
    model = S.apply_schema(doc["model"], MODEL_KEYS, what="[model]", path=path)
    learning = S.apply_schema(doc.get("learning", {}), LEARNING_KEYS, what="[learning]", path=path)
    data = S.apply_schema(doc.get("data", {}), DATA_KEYS, what="[data]", path=path)
    for section, table in (overrides or {}).items():
        target, schema = {"learning": (learning, LEARNING_KEYS), "data": (data, DATA_KEYS)}[section]
        for key, value in table.items():
            if value is not None:
                target[key] = S.check_value(schema, key, value, path=path)
    if learning["schedule"] == "steps" and not learning["steps"]:
        raise ModelError("[learning] schedule = \"steps\" needs a list of epochs in 'steps'", path=path)
    if classes is not None:
        model["classes"] = S.check_value(MODEL_KEYS, "classes", classes, path=path)
    if input_size is not None:
        data["crop"] = S.check_value(DATA_KEYS, "crop", input_size, path=path)
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
        specs.append(_parse_layer(name, table, previous, model["columns"], path))
        previous = name

    ordered = _toposort(specs, path)
    spec = ModelSpec(name=model["name"], description=model["description"], path=path, text=text,
                     channels=model["channels"], classes=model["classes"],
                     columns=model["columns"], layers=ordered, learning=learning, data=data,
                     shapes={DATA: (model["channels"], data["crop"], data["crop"])},
                     blocks={DATA: 1})
    _infer(spec)
    check_memory(spec)
    return spec


def _parse_layer(name: str, table, previous: str, columns: int, path: str) -> LayerSpec:
    """One [layers.NAME] table, checked against its type's schema."""
    def fail(reason):
        raise ModelError(reason, path=path, layer=name)

    if name == DATA:
        fail("the name 'data' is reserved for the input images")
    if not isinstance(table, dict):
        fail("expected a table [layers.NAME]")
    ltype = table.get("type")
    if ltype not in LAYER_TYPES:
        fail(f"unknown layer type {ltype!r} (known types: {', '.join(LAYER_TYPES)})"
             if ltype is not None else "missing required key 'type'")
    T = LAYER_TYPES[ltype]
    attrs = S.apply_schema(table, {**_COMMON, **T.keys}, what=f"a {ltype} layer", path=path,
                           layer=name)
    del attrs["type"]
    inputs, split, column = attrs.pop("input"), attrs.pop("split"), attrs.pop("column")
    if inputs == "previous":       # the default: the layer written above (data for the first)
        inputs = [previous]
    if not T.weighted and ("split" in table or "column" in table):
        fail(f"'split' and 'column' apply to conv and fc layers only; a {ltype} "
             "layer follows its input's columns")
    if split == "auto":
        split = columns > 1 and T.weighted
    elif split and columns == 1:
        split = False
    if "column" in table and split:
        fail("'column' places a whole layer; set split = false to use it")
    if column >= columns:
        fail(f"column {column} does not exist (the model has {columns})")
    if T.one_input and len(inputs) != 1:
        fail(f"a {ltype} layer takes exactly one input, got {len(inputs)}")
    return LayerSpec(name=name, type=ltype, inputs=inputs, attrs=attrs, split=split,
                     column=column)


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
    costs = [s for s in order if s.layer_type.is_cost]
    if len(costs) != 1:
        raise ModelError(f"expected exactly one softmax (cost) layer, found {len(costs)}"
                         + (f": {', '.join(s.name for s in costs)}" if costs else ""), path=path)
    if consumers[costs[0].name]:
        raise ModelError(f"the {costs[0].type} layer is the output: no layer may read it",
                         path=path, layer=costs[0].name)
    # Every layer must lead to the cost, or its output would never receive a gradient.
    useful = {costs[0].name}
    for s in reversed(order):
        if s.name in useful:
            useful.update(i for i in s.inputs if i != DATA)
    dead = [s.name for s in order if s.name not in useful]
    if dead:
        raise ModelError(f"output is not used on the way to the {costs[0].type} layer "
                         f"'{costs[0].name}'", path=path, layer=dead[0])
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
    """Shapes, parameters, FLOPs and column layouts, layer by layer (topological order): each
    layer's type does the work (:meth:`~alexnet_ext.nn.layers.Layer.infer`, ``layout``)."""
    for L in spec.layers:
        def fail(reason, L=L):
            raise ModelError(reason, path=spec.path, layer=L.name)

        L.in_shapes = [spec.shapes[i] for i in L.inputs]
        L.layer_type.infer(L, spec, fail)
        L.layer_type.layout(L, spec, [spec.blocks[i] for i in L.inputs], fail)
        spec.shapes[L.name] = L.out_shape
        spec.blocks[L.name] = L.blocks


def spec_column(spec: ModelSpec, tensor: str) -> int:
    """The column holding a whole tensor (data: column 0); see :meth:`ModelSpec.column_of`."""
    return spec.column_of(tensor)
