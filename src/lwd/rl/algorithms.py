"""Registry of learner algorithms: name -> factory(model, overrides)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from lwd.policy.model import FlowVLA
from lwd.rl.base import Algorithm

__all__ = ["ALGORITHMS", "make_algorithm"]


def _with_overrides(cfg_cls, overrides: dict):
    names = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"unknown {cfg_cls.__name__} fields: {sorted(unknown)}")
    return cfg_cls(**overrides)


def _bc(model: FlowVLA, overrides: dict) -> Algorithm:
    from lwd.rl.bc import BCConfig, FilteredBC

    return FilteredBC(model, _with_overrides(BCConfig, overrides))


ALGORITHMS: dict[str, Callable[[FlowVLA, dict], Algorithm]] = {"bc": _bc}


def make_algorithm(name: str, model: FlowVLA, overrides: dict | None = None) -> Algorithm:
    try:
        factory = ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown algo {name!r}; choose from {sorted(ALGORITHMS)}") from None
    return factory(model, dict(overrides or {}))
