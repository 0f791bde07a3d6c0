"""A whole model (a model file, or a trained run) as a ``torch.nn.Module``.

:class:`AlexNetModule` runs the layers of a :class:`~alexnet_ext.nn.ModelSpec` in its
topological order -- the merged formulation of our ``Net``: columns are expressed by ``groups``
and by response norm within each column's block of maps, so a two-column model is one tensor per
layer. Parameter names and layouts are our canonical ones (``conv1.weight`` (F, C/groups, kh,
kw), ``fc6.weight`` (F, D) over the input flattened channel-major, ``*.bias``), which are also
torch's Conv2d/Linear layouts, so ``module.state_dict()`` and ``Net.state_dict()`` hold the same
arrays under the same names. A layer reading several inputs (``input = [a, b]``) reads their
concatenation along channels (conv) or along the flattened features (fc), as ``Net`` does with
one weight block per input.

``forward(x)`` takes prepared images (N, C, crop, crop) -- mean image subtracted, times the
model's ``[data] scale`` -- and returns the class scores (the softmax layer's input, before the
softmax); :meth:`AlexNetModule.prepare` does the preparation from raw pixels; use
:func:`alexnet_ext.torch.functional.softmax_log_loss` or ``F.cross_entropy`` for the loss.
fc layers and ReLU use torch's ``F.linear`` / ``F.relu`` in both paths (plain GEMMs and maxima);
convolution, response norm, pooling, dropout go through our kernels unless ``pure=True``.

Dropout (training mode) reproduces ``Net``'s masks: layer L at step s with run seed r uses
:func:`alexnet_ext.nn.derive_seed` (r, s, L) as in ``Net.forward(train=True, step=s, seed=r)``;
set :attr:`AlexNetModule.seed` and :attr:`AlexNetModule.step` (``train_step`` style loops
increment ``step`` themselves).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from ..nn import Net, derive_seed, load_checkpoint, load_model, parse_model
from . import functional as AF

__all__ = ["AlexNetModule", "from_model", "load_exported", "EXPORT_FORMAT"]

EXPORT_FORMAT = "alexnet_ext-torch-export-1"


class AlexNetModule(torch.nn.Module):
    """A model file's network on torch tensors; see the module docstring.

    Args:
        spec: a :class:`~alexnet_ext.nn.ModelSpec` (from :func:`alexnet_ext.nn.load_model`).
        pure: plain torch ops only (for ONNX and machines without our kernels).
        mean: optional (C, S, S) mean image the inputs are prepared with (a buffer,
            ``input_mean``); ``scale``: the model's input scale.
    """

    def __init__(self, spec, *, pure: bool = False, mean=None, scale: float | None = None):
        super().__init__()
        self.spec = spec
        self.pure = bool(pure)
        self.scale = float(spec.data["scale"] if scale is None else scale)
        self.crop = int(spec.data["crop"])
        self.seed = 0
        self.step = 0
        if mean is not None:
            self.register_buffer("input_mean", torch.as_tensor(mean, dtype=torch.float32).clone())
        else:
            self.input_mean = None
        for L in spec.layers:
            if L.type not in ("conv", "fc"):
                continue
            if "." in L.name or not L.name.isidentifier():
                raise ValueError(f"layer '{L.name}': torch module names must be identifiers")
            w, b = f"{L.name}.weight", f"{L.name}.bias"
            holder = torch.nn.Module()
            holder.weight = torch.nn.Parameter(torch.zeros(L.params[w]))
            holder.bias = torch.nn.Parameter(torch.zeros(L.params[b]))
            self.add_module(L.name, holder)

    # ---- running ------------------------------------------------------------------------------

    def forward(self, x):
        spec = self.spec
        want = (spec.channels, self.crop, self.crop)
        if x.dim() != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"x: expected prepared images of shape (N, {want[0]}, {want[1]}, "
                             f"{want[2]}), got {tuple(x.shape)}")
        t = {"data": x}
        out = None
        for L in spec.layers:
            a = L.attrs
            ins = [t[i] for i in L.inputs]
            if L.type == "conv":
                m = getattr(self, L.name)
                src = ins[0] if len(ins) == 1 else torch.cat(ins, dim=1)
                y = AF.conv2d(src, m.weight, m.bias, stride=a["stride"], padding=a["padding"],
                              groups=a["groups"], pure=self.pure)
            elif L.type == "fc":
                m = getattr(self, L.name)
                flat = [i.reshape(i.shape[0], -1) for i in ins]
                y = F.linear(flat[0] if len(flat) == 1 else torch.cat(flat, dim=1), m.weight, m.bias)
            elif L.type == "relu":
                y = F.relu(ins[0])
            elif L.type == "lrn":
                y = AF.cross_map_lrn(ins[0], size=a["size"], k=a["k"], alpha=a["alpha"],
                                     beta=a["beta"], alpha_over_size=a["alpha_over_size"],
                                     blocks=L.blocks, pure=self.pure)
            elif L.type == "pool":
                geo = dict(size=a["size"], stride=a["stride"], padding=a["padding"],
                           ceil_mode=a["ceil_mode"], pure=self.pure)
                y = (AF.max_pool2d(ins[0], **geo) if a["mode"] == "max"
                     else AF.avg_pool2d(ins[0], **geo))
            elif L.type == "dropout":
                y = AF.dropout(ins[0], p=a["p"], seed=derive_seed(self.seed, self.step, L.name),
                               training=self.training, pure=self.pure)
            elif L.type == "softmax":
                out = ins[0]                       # the class scores; the loss is the caller's
                continue
            else:  # pragma: no cover - the spec knows every type
                raise NotImplementedError(f"layer '{L.name}': type {L.type!r}")
            t[L.name] = y
        return out if out is not None else y

    def prepare(self, images):
        """``(images - mean) * scale`` for raw pixel images (N, C, S, S) (uint8 or float, 0-255),
        then the centre crop (as evaluation does) when S is larger than the crop.

        Without a mean image (a model file rather than a run), only the scale is applied."""
        x = images.to(torch.float32)
        if self.input_mean is not None:
            if tuple(x.shape[1:]) != tuple(self.input_mean.shape):
                raise ValueError(f"images: expected (N, {', '.join(map(str, self.input_mean.shape))})"
                                 f" like the mean image, got {tuple(x.shape)}")
            x = x - self.input_mean
        if self.scale != 1.0:
            x = x * self.scale
        h, w = x.shape[2:]
        if h < self.crop or w < self.crop:
            raise ValueError(f"images: {h}x{w} is smaller than the crop {self.crop}")
        y0, x0 = (h - self.crop) // 2, (w - self.crop) // 2
        return x[:, :, y0:y0 + self.crop, x0:x0 + self.crop].contiguous()

    def param_groups(self, *, weight_decay=None, bias_decay=None):
        """torch.optim parameter groups with the model file's decays: weights get
        ``[learning] weight_decay``, biases ``bias_decay`` (default 0), as ``Net.update`` does."""
        lr = self.spec.learning
        wd = lr["weight_decay"] if weight_decay is None else weight_decay
        bd = lr["bias_decay"] if bias_decay is None else bias_decay
        weights = [p for n, p in self.named_parameters() if n.endswith(".weight")]
        biases = [p for n, p in self.named_parameters() if n.endswith(".bias")]
        return [{"params": weights, "weight_decay": wd}, {"params": biases, "weight_decay": bd}]

    def extra_repr(self):
        return f"model={self.spec.name!r}, pure={self.pure}, crop={self.crop}, scale={self.scale}"


def _load_weights(module: AlexNetModule, arrays: dict) -> None:
    sd = {k: torch.as_tensor(v) for k, v in arrays.items()}
    if module.input_mean is not None and "input_mean" not in sd:
        sd["input_mean"] = module.input_mean
    module.load_state_dict(sd, strict=True)


def _is_run(p: Path) -> bool:
    return p.is_dir() or p.suffix == ".safetensors"


def from_model(model_or_run, pure: bool = False, *, init: str = "random", seed: int = 0,
               classes: int | None = None) -> AlexNetModule:
    """A ``torch.nn.Module`` for a model or a trained run.

    Args:
        model_or_run: a shipped model name (``"alexnet"``), a model file (``.toml``), a run
            directory of ``python -m alexnet_ext.train`` or its ``checkpoint.safetensors``.
            A run gives its trained weights, the training set's mean image (buffer
            ``input_mean``) and the model's input scale (``module.scale``).
        pure: plain torch ops only (ONNX export, machines without our kernels).
        init: for a model (not a run): ``"random"`` draws exactly the weights ``Net(spec,
            seed=seed)`` draws (weights ~ N(0, init_std), biases = init_bias); ``"zeros"``
            sets every parameter to 0.
        classes: for a model: the class count (default: the file's).
    """
    p = Path(str(model_or_run))
    if _is_run(p) and p.exists():
        ckpt = load_checkpoint(p)
        spec = parse_model(ckpt.model_text, path=f"{ckpt.path} (model)",
                           classes=ckpt.info.get("classes"))
        mod = AlexNetModule(spec, pure=pure, mean=ckpt.extra.get("mean"))
        _load_weights(mod, ckpt.params)
        return mod
    spec = load_model(model_or_run, classes=classes)
    mod = AlexNetModule(spec, pure=pure)
    if init == "random":
        _load_weights(mod, Net(spec, seed=seed).state_dict())
    elif init != "zeros":
        raise ValueError(f"init: expected 'random' or 'zeros', got {init!r}")
    return mod


def load_exported(path, pure: bool = False) -> AlexNetModule:
    """The module saved by ``python -m alexnet_ext.export RUN --to torch OUT`` (OUT the
    directory): ``model.toml`` (the model file), ``weights.safetensors`` (the state dict, mean
    image included as ``input_mean``) and ``export.json`` (format, class count, scale, class
    names)."""
    from safetensors.torch import load_file

    d = Path(path)
    meta_path = d / "export.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{path}: no export.json (not a directory written by "
                                "python -m alexnet_ext.export --to torch)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{meta_path}: unknown format {meta.get('format')!r}")
    spec = parse_model((d / "model.toml").read_text(encoding="utf-8"), path=str(d / "model.toml"),
                       classes=meta["classes"])
    sd = load_file(str(d / "weights.safetensors"))
    mod = AlexNetModule(spec, pure=pure, mean=sd.get("input_mean"), scale=meta["scale"])
    mod.load_state_dict(sd, strict=True)
    mod.class_names = meta.get("class_names")
    return mod
