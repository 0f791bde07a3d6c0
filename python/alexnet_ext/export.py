"""``python -m alexnet_ext.export RUN --to torch|onnx OUT``: a trained run for PyTorch or ONNX.

RUN is a run directory of ``python -m alexnet_ext.train`` (or its checkpoint file). OUT is a
directory, created if needed, holding:

``--to torch``
    ``weights.safetensors`` -- the module's state dict: our canonical parameter names and
    layouts (``conv1.weight`` (F, C/groups, kh, kw), ``fc6.weight`` (F, D), ``*.bias``) plus
    ``input_mean`` (the training set's mean image, (C, S, S)); ``model.toml`` -- the model file
    the run trained (the module's construction); ``export.json`` -- format, class count and
    names, crop, input scale. Load with ``alexnet_ext.torch.load_exported(OUT)`` (our kernels, or
    ``pure=True`` for plain torch ops).
``--to onnx``
    ``model.onnx`` -- ``torch.onnx.export`` of the pure-torch module in eval mode: input
    ``images`` (N, C, crop, crop) prepared as ``(pixels - mean) * scale``, centre-cropped; output
    ``scores`` (N, classes), the class scores before the softmax (the batch size is dynamic);
    ``mean.npy`` -- the mean image (C, S, S) float32; ``export.json`` as above.

torchvision's ``alexnet`` is a different network (one column; 64, 192, 384, 256, 256 filters; no
response normalisation), so these weights do not load into it: use the exported module.

Needs torch (``pip install "alexnet_ext[torch]"``); ``--to onnx`` also needs ``onnx`` and
``onnxscript`` (``pip install "alexnet_ext[onnx]"``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["main", "export"]

PROG = "python -m alexnet_ext.export"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Export a trained run as a PyTorch module "
                                "(safetensors + model file) or an ONNX model.")
    p.add_argument("run", metavar="RUN_DIR|CHECKPOINT", help="run directory or checkpoint file")
    p.add_argument("--to", choices=("torch", "onnx"), required=True, help="output kind")
    p.add_argument("out", metavar="OUT", help="output directory (created if missing)")
    return p


def export(run, to: str, out) -> Path:
    """Export ``run`` to directory ``out`` (see the module docstring). Returns ``out``."""
    import numpy as np

    from .nn import load_checkpoint
    from .torch.model import EXPORT_FORMAT, from_model

    if to not in ("torch", "onnx"):
        raise ValueError(f"to: expected 'torch' or 'onnx', got {to!r}")
    ckpt = load_checkpoint(run)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a directory")
    mod = from_model(ckpt.path, pure=(to == "onnx")).eval()
    spec = mod.spec
    meta = {"format": EXPORT_FORMAT, "model": spec.name, "classes": spec.classes,
            "channels": spec.channels, "crop": mod.crop, "scale": mod.scale,
            "class_names": ckpt.info.get("class_names"),
            "epoch": ckpt.state.get("epoch"), "step": ckpt.state.get("step"),
            "input": "(N, C, crop, crop) float32 = centre crop of (pixels - mean) * scale",
            "output": "(N, classes) class scores before the softmax"}
    out.mkdir(parents=True, exist_ok=True)
    if to == "torch":
        from safetensors.torch import save_file

        save_file({k: v.detach().contiguous() for k, v in mod.state_dict().items()},
                  str(out / "weights.safetensors"), metadata={"format": EXPORT_FORMAT})
        (out / "model.toml").write_text(spec.text, encoding="utf-8")
    else:
        _onnx(mod, out / "model.onnx")
        if mod.input_mean is not None:
            np.save(out / "mean.npy", mod.input_mean.numpy())
        meta["onnx"] = {"file": "model.onnx", "input": "images", "output": "scores",
                        "mean": "mean.npy" if mod.input_mean is not None else None}
    (out / "export.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out


def _onnx(mod, path: Path) -> None:
    import torch

    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise RuntimeError(f"--to onnx needs the onnx and onnxscript packages ({e}); "
                           "pip install 'alexnet_ext[onnx]'") from None
    x = torch.zeros(2, mod.spec.channels, mod.crop, mod.crop)
    batch = torch.export.Dim("batch", min=1)
    torch.onnx.export(mod, (x,), str(path), input_names=["images"], output_names=["scores"],
                      dynamic_shapes={"x": {0: batch}}, dynamo=True, external_data=False,
                      verbose=False)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out = export(args.run, args.to, args.out)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    print(f"exported {args.run} -> {out} ({args.to})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
