"""The layer table of a model: output shapes, parameters, FLOPs, columns."""
from __future__ import annotations

from .spec import DATA, ModelSpec, gib

__all__ = ["summary_rows", "format_summary"]


def _shape(s) -> str:
    return "x".join(map(str, s))


def summary_rows(spec: ModelSpec) -> list[dict]:
    """One dict per layer (data first): name, type, inputs, output, columns, params, flops."""
    rows = [dict(name=DATA, type="input", inputs="", output=_shape(spec.shapes[DATA]),
                 columns="", params=0, flops=0)]
    for L in spec.layers:
        if spec.columns == 1:
            cols = ""
        elif L.blocks > 1:
            cols = f"split {L.blocks}"
        else:
            cols = f"whole @{L.column}"
        rows.append(dict(name=L.name, type=L.type, inputs=", ".join(L.inputs),
                         output=_shape(L.out_shape), columns=cols, params=L.num_params,
                         flops=L.flops))
    return rows


def format_summary(spec: ModelSpec) -> str:
    """A printable table plus totals (parameters, forward FLOPs per image)."""
    rows = summary_rows(spec)
    head = dict(name="layer", type="type", inputs="input", output="output",
                columns="columns", params="params", flops="MFLOPs")
    cells = [head] + [dict(r, params=f"{r['params']:,}" if r["params"] else "",
                           flops=f"{r['flops'] / 1e6:,.1f}" if r["flops"] else "")
                      for r in rows]
    keys = ["name", "type", "inputs", "output", "columns", "params", "flops"]
    if spec.columns == 1:
        keys.remove("columns")
    width = {k: max(len(str(c[k])) for c in cells) for k in keys}
    right = {"params", "flops"}

    def line(c):
        return "  ".join(str(c[k]).rjust(width[k]) if k in right else str(c[k]).ljust(width[k])
                         for k in keys).rstrip()

    rule = "-" * len(line(head))
    c, h, w = spec.shapes[DATA]
    out = [f"model {spec.name}: {spec.description}".rstrip(": "),
           f"input {c}x{h}x{w}, {spec.classes} classes"
           + (f", {spec.columns} columns" if spec.columns > 1 else ""),
           "", line(head), rule]
    out += [line(r) for r in cells[1:]]
    out += [rule,
            f"total parameters: {spec.num_params:,}",
            f"forward FLOPs per image: {spec.flops / 1e9:,.3f} G "
            f"(multiply-adds x 2, conv and fc layers)"]
    m = spec.memory()
    out.append(f"memory of a training step at batch size {m['batch_size']}: about "
               f"{gib(m['total'])} (parameters with gradients and momentum "
               f"{m['parameters'] / 2**30:,.2f} GiB, activations {m['activations'] / 2**30:,.2f} GiB)")
    return "\n".join(out)
