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


def _fleet_rl(variant: str) -> Callable[[FlowVLA, dict], Algorithm]:
    def make(model: FlowVLA, overrides: dict) -> Algorithm:
        from lwd.rl.fleet_rl import FleetRL, FleetRLConfig

        return FleetRL(model, _with_overrides(FleetRLConfig, overrides), variant=variant)

    return make


ALGORITHMS: dict[str, Callable[[FlowVLA, dict], Algorithm]] = {
    "lwd": _fleet_rl("lwd"),  # DIVL + QAM
    "bc": _bc,  # filtered BC (HG-DAgger style)
    "iql_awr": _fleet_rl("iql_awr"),
    "lwd_no_divl": _fleet_rl("lwd_no_divl"),  # scalar expectile critic + QAM
    "lwd_no_qam": _fleet_rl("lwd_no_qam"),  # DIVL + AWR
}


def make_algorithm(name: str, model: FlowVLA, overrides: dict | None = None) -> Algorithm:
    try:
        factory = ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown algo {name!r}; choose from {sorted(ALGORITHMS)}") from None
    return factory(model, dict(overrides or {}))
