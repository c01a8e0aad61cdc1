"""Scalar expectile critic (IQL, Kostrikov et al. 2021) with the same API as ``lwd.rl.divl.DIVL``.

Used by the ablation ``lwd_no_divl`` and the baseline ``iql_awr``. Objective (``IQL.update``):

    y   = r + discount * (1 - done) * V(s')                                  (stop-grad)
    L_Q = sum_e E_D[ weight * (Q_e(s, a) - y)^2 ] / E_D[weight]
    u   = mean_e Qbar_e(s, a) - value_rho * std_e Qbar_e(s, a) - V(s)      (Qbar: EMA critic, dataset actions only)
    L_V = E_D[ weight * |tau - 1(u < 0)| * u^2 ] / E_D[weight]

Identical to DIVL except that each ensemble member regresses a scalar by MSE instead of a categorical distribution
by cross-entropy, so the two share a fixed point in the tabular limit (tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lwd.rl.divl import ImplicitCritic, _wmean

__all__ = ["IQLConfig", "IQL"]


@dataclass
class IQLConfig:
    expectile: float = 0.8
    ensemble_size: int = 2
    rho: float = 0.5
    value_rho: float = 0.0
    target_ema: float = 0.005
    lr: float = 3e-4
    hidden: tuple[int, ...] = field(default_factory=lambda: (256, 256))
    layer_norm: bool = True
    grad_clip: float | None = 10.0


class IQL(ImplicitCritic):
    """Scalar ensemble Q + expectile V. Same methods as DIVL: update, q, q_pessimistic, v, advantage."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: IQLConfig | None = None) -> None:
        super().__init__(obs_dim, act_dim, cfg or IQLConfig())

    def _out_dim(self) -> int:
        return 1

    def _members(self, obs, act, target=False):
        net = self.target_critic if target else self.critic
        return net(torch.cat([obs, act], dim=-1)).squeeze(-1)

    def _critic_loss(self, obs, act, y, weight):
        q = self._members(obs, act)
        se = (q - y.unsqueeze(0)).pow(2)
        return sum(_wmean(se[e], weight) for e in range(se.shape[0])), {}
