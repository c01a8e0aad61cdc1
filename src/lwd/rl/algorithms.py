"""Registry of learner algorithms: name -> factory(expert, obs_dim, act_dim, overrides)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from torch import nn

from lwd.rl.base import Algorithm

__all__ = ["ALGORITHMS", "make_algorithm", "algorithm_config"]


def _with_overrides(cfg_cls, overrides: dict):
    names = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = set(overrides) - names
    if unknown:
        raise ValueError(f"unknown {cfg_cls.__name__} fields: {sorted(unknown)}")
    return cfg_cls(**overrides)


def _bc(demos_only: bool) -> Callable[..., Algorithm]:
    def make(expert: nn.Module, obs_dim: int, act_dim: int, overrides: dict, model=None) -> Algorithm:
        from lwd.rl.bc import BCConfig, FilteredBC

        return FilteredBC(expert, obs_dim, act_dim, _with_overrides(BCConfig, {"demos_only": demos_only,
                                                                               **overrides}), model=model)

    return make


def _fleet_rl(variant: str) -> Callable[..., Algorithm]:
    def make(expert: nn.Module, obs_dim: int, act_dim: int, overrides: dict, model=None) -> Algorithm:
        from lwd.rl.fleet_rl import FleetRL, FleetRLConfig

        return FleetRL(expert, obs_dim, act_dim, _with_overrides(FleetRLConfig, overrides), variant=variant,
                       model=model)

    return make


ALGORITHMS: dict[str, Callable[..., Algorithm]] = {
    "lwd": _fleet_rl("lwd"),  # DIVL + QAM
    "bc": _bc(False),  # filtered BC (HG-DAgger style)
    "iql_awr": _fleet_rl("iql_awr"),
    "lwd_no_divl": _fleet_rl("lwd_no_divl"),  # scalar expectile critic + QAM
    "lwd_no_qam": _fleet_rl("lwd_no_qam"),  # DIVL + AWR
    "pretrain_more": _bc(True),  # control: the same compute on the demonstrations only
}


def algorithm_config(name: str):
    """The config dataclass that ``algo_overrides`` of algorithm ``name`` fill."""
    from lwd.rl.bc import BCConfig
    from lwd.rl.fleet_rl import FleetRLConfig

    if name not in ALGORITHMS:
        raise ValueError(f"unknown algo {name!r}; choose from {sorted(ALGORITHMS)}")
    return BCConfig if name in ("bc", "pretrain_more") else FleetRLConfig


def make_algorithm(name: str, expert: nn.Module, obs_dim: int, act_dim: int,
                   overrides: dict | None = None, model: nn.Module | None = None) -> Algorithm:
    """``model``: the deployed VLA that ``expert`` belongs to (needed by algorithms that train its encoder)."""
    try:
        factory = ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown algo {name!r}; choose from {sorted(ALGORITHMS)}") from None
    return factory(expert, obs_dim, act_dim, dict(overrides or {}), model=model)
