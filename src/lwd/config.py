"""One source of defaults: config dataclasses <-> flat ROS 2 parameters / CLI values (ROS-free).

ROS parameters are scalars, so tuples travel as comma-separated strings and dicts as JSON strings; the dataclass
field's default is the parameter's default. ``config/*.yaml`` may only set declared fields (tested).
"""

from __future__ import annotations

import dataclasses
import json
import typing

__all__ = ["param_defaults", "from_params"]


def _encode(value):
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return value


def param_defaults(cls) -> dict[str, object]:
    """Field name -> ROS-compatible default of a config dataclass."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            continue
        out[f.name] = _encode(value)
    return out


def from_params(cls, values: dict[str, object]):
    """Build ``cls`` from flat parameter values (decoding comma strings and JSON); unknown names raise."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} parameters: {sorted(unknown)}")
    kw = {}
    for name, value in values.items():
        kind = typing.get_origin(hints[name]) or hints[name]
        if kind is tuple and isinstance(value, str):
            value = tuple(v.strip() for v in value.split(",") if v.strip())
        elif kind is dict and isinstance(value, str):
            value = json.loads(value or "{}")
            if not isinstance(value, dict):
                raise ValueError(f"{cls.__name__}.{name} must be a JSON object")
        elif hints[name] is int:
            value = int(value)
        elif hints[name] is float:
            value = float(value)
        kw[name] = value
    return cls(**kw)
