"""Advantage-weighted flow matching (AWR extraction for flow policies): the ``lwd_no_qam`` ablation and ``iql_awr``.

    A(s, a) = critic.advantage(s, a)          (q_bar(s, a) - V(s) on *dataset* actions; DIVL or IQL)
    w(s, a) = min(exp(beta_awr * A(s, a)), max_weight)        (optionally times the batch's own ``weight``)
    L       = sum_i w_i ||v(x_t, t) - (x1 - x0)||^2 / sum_i w_i   = lwd.policy.flow.flow_matching_loss(..., weights=w)

The target of this weighted regression is pi(a|s) ∝ pi_data(a|s) exp(beta_awr A(s, a)), restricted to the data's
support (no gradient of Q with respect to the action is used, unlike QAM).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lwd.policy.flow import flow_matching_loss, sample_euler

__all__ = ["AWRConfig", "AWR", "awr_weights"]


def awr_weights(adv: torch.Tensor, beta: float, max_weight: float) -> torch.Tensor:
    """exp(beta * A) clipped at ``max_weight`` (computed in a numerically safe way)."""
    return torch.exp(torch.clamp(beta * adv, max=float(torch.log(torch.tensor(max_weight)))))


@dataclass
class AWRConfig:
    beta: float = 3.0  # inverse temperature on the advantage
    max_weight: float = 100.0
    lr: float = 3e-4
    grad_clip: float | None = 10.0
    steps: int = 10  # Euler steps for sampling


class AWR(nn.Module):
    """``AWR(field, critic, cfg, act_dim)``: ``update(obs, act, weight=None) -> stats``; ``sample(obs)``.

    ``critic`` is anything with ``advantage(obs, act) -> [B]`` (``lwd.rl.divl.DIVL`` or ``lwd.rl.iql.IQL``); it is
    read under no_grad and not trained here.
    """

    def __init__(self, field: nn.Module, critic, cfg: AWRConfig | None = None, act_dim: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg or AWRConfig()
        self.field = field
        self.critic = critic
        self.act_dim = act_dim if act_dim is not None else field.act_dim
        self.opt = torch.optim.Adam(self.field.parameters(), lr=self.cfg.lr)

    def update(self, obs: torch.Tensor, act: torch.Tensor, weight: torch.Tensor | None = None,
               critic_obs: torch.Tensor | None = None) -> dict[str, float]:
        """``critic_obs``: the same states as the critic sees them (default ``obs``)."""
        with torch.no_grad():
            adv = self.critic.advantage(obs if critic_obs is None else critic_obs, act)
            w = awr_weights(adv, self.cfg.beta, self.cfg.max_weight)
            if weight is not None:
                w = w * weight.reshape(-1)
        loss = flow_matching_loss(self.field, obs, act, weights=w)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.field.parameters(), self.cfg.grad_clip)
        self.opt.step()
        return {
            "actor_loss": float(loss.detach()),
            "adv_mean": float(adv.mean()),
            "awr_weight_mean": float(w.mean()),
            "awr_weight_max": float(w.max()),
            "awr_clipped_frac": float((w >= self.cfg.max_weight * (1 - 1e-6)).float().mean()),
        }

    @torch.no_grad()
    def sample(self, obs: torch.Tensor, steps: int | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        return sample_euler(self.field, obs, self.act_dim, steps or self.cfg.steps, noise=noise, clip=True)
