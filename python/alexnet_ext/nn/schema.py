"""The keys a model file's tables may hold: their types, ranges and defaults.

A schema maps each key to a :class:`Key`: a check, a default (``REQUIRED``: the key must be
given) and the phrase for a value of the wrong type. Ranges are checked by the shared argument
checks of :mod:`alexnet_ext._validate` (the ops use the same ones), so a model file and an op
call reject a value with the same words. :func:`apply_schema` turns every mistake into a
:class:`ModelError` naming the file, the layer and the key.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

from .. import _validate as V

__all__ = ["ModelError", "Key", "REQUIRED", "apply_schema", "integer", "number", "pair", "flag",
           "text", "choice", "layer_names", "epochs"]

REQUIRED = None


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


class Key(NamedTuple):
    """``check(value, key)`` returns the cleaned value or raises TypeError/ValueError with a
    message starting "key: "; ``wants`` completes "expected ..." for a value of the wrong type."""

    check: Callable[[Any, str], Any]
    default: Any
    wants: str


def integer(default=REQUIRED, minimum: int | None = None) -> Key:
    return Key(lambda v, k: V.integer(v, k, minimum), default, "an integer")


def number(default=REQUIRED, minimum=None, maximum=None, *, exclusive_min=False,
           exclusive_max=False) -> Key:
    def check(v, k):
        v = V.real(v, k, minimum, None if exclusive_max else maximum, exclusive_min)
        if exclusive_max and v >= maximum:
            raise ValueError(f"{k}: expected a number < {maximum}, got {v}")
        return v
    return Key(check, default, "a number")


def pair(default=REQUIRED, minimum: int = 1) -> Key:
    """An integer or a [height, width] list of integers (TOML arrays are lists)."""
    return Key(lambda v, k: V.int_pair(v, k, minimum), default,
               "an integer or a [height, width] pair of integers")


def _exact(kind: type, wants: str, default) -> Key:
    def check(v, k):
        if not isinstance(v, kind):
            raise TypeError(k)
        return v
    return Key(check, default, wants)


def flag(default=REQUIRED) -> Key:
    return _exact(bool, "true or false", default)


def text(default=REQUIRED) -> Key:
    return _exact(str, "a string", default)


def choice(default, *options) -> Key:
    def check(v, k):
        if v not in options:
            raise ValueError(f"{k}: expected one of {', '.join(map(repr, options))}, got {v!r}")
        return v
    return Key(check, default, f"one of {', '.join(map(repr, options))}")


def layer_names(default) -> Key:
    """A layer name or a non-empty list of distinct names (always returned as a list)."""
    def check(v, k):
        if isinstance(v, str):
            return [v]
        if not (isinstance(v, list) and v and all(isinstance(s, str) for s in v)):
            raise TypeError(k)
        if len(set(v)) != len(v):
            raise ValueError(f"{k}: lists the same input twice: {v!r}")
        return list(v)
    return Key(check, default, "a layer name or a non-empty list of layer names")


def epochs(default) -> Key:
    """An increasing list of epoch numbers (>= 1)."""
    def check(v, k):
        if not isinstance(v, list):
            raise TypeError(k)
        out = [V.integer(x, f"{k}[{i}]", 1) for i, x in enumerate(v)]
        if out != sorted(set(out)):
            raise ValueError(f"{k}: expected increasing epochs, got {v!r}")
        return out
    return Key(check, default, "a list of epochs")


def check_value(schema: dict, key: str, value, *, path: str, layer: str | None = None):
    """One key's cleaned value, or a ModelError."""
    try:
        return schema[key].check(value, key)
    except TypeError:
        raise ModelError(f"{key}: expected {schema[key].wants}, got {value!r}", path=path,
                         layer=layer) from None
    except ValueError as e:
        raise ModelError(str(e), path=path, layer=layer) from None


def apply_schema(table, schema: dict, *, what: str, path: str, layer: str | None = None) -> dict:
    """The table's values checked and completed with defaults; ``what`` names the table."""
    if not isinstance(table, dict):
        raise ModelError(f"{what} must be a table, got {table!r}", path=path, layer=layer)
    unknown = [k for k in table if k not in schema]
    if unknown:
        raise ModelError(f"unknown key{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(map(repr, unknown))} in {what} "
                         f"(allowed: {', '.join(schema)})", path=path, layer=layer)
    out = {}
    for key, spec in schema.items():
        if key in table:
            out[key] = check_value(schema, key, table[key], path=path, layer=layer)
        elif spec.default is REQUIRED:
            raise ModelError(f"missing required key '{key}' in {what}", path=path, layer=layer)
        else:
            out[key] = spec.default
    return out
