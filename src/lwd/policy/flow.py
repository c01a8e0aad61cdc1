"""Flow matching: the one place that fixes the time convention, the training loss and the Euler sampler.

Time convention (used everywhere in lwd): ``t = 0`` is pure noise, ``t = 1`` is the action.
``x_t = (1 - t) * x0 + t * x1`` with ``x0 ~ N(0, I)`` and ``x1`` a normalized action chunk in [-1, 1];
the velocity target is ``x1 - x0``; sampling integrates ``dx/dt = v(x, t)`` from t = 0 to t = 1.
"""

from __future__ import annotations

import enum
from typing import Protocol

import torch

__all__ = ["FlowTime", "VelocityField", "interpolate", "flow_matching_loss", "sample_euler", "euler_times"]


class FlowTime(float, enum.Enum):
    """Endpoints of flow time: NOISE at 0, ACTION at 1 (the opposite of pi0's paper convention)."""

    NOISE = 0.0
    ACTION = 1.0


class VelocityField(Protocol):
    """``v(cond, x, t)``: cond [B, C], x [B, D], t [B] -> velocity [B, D]."""

    def __call__(self, cond: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Point on the straight path from noise ``x0`` (t=0) to action ``x1`` (t=1); ``t`` is [B]."""
    tt = t.view(-1, *([1] * (x1.dim() - 1)))
    return (1.0 - tt) * x0 + tt * x1


def flow_matching_loss(
    field: VelocityField,
    cond: torch.Tensor,
    x1: torch.Tensor,
    weights: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Conditional flow-matching loss ``E ||v(x_t, t) - (x1 - x0)||^2`` (mean over dims, weighted mean over batch)."""
    b = x1.shape[0]
    x0 = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
    t = torch.rand(b, generator=generator, device=x1.device, dtype=x1.dtype)
    v = field(cond, interpolate(x0, x1, t), t)
    per = ((v - (x1 - x0)) ** 2).reshape(b, -1).mean(dim=1)
    if weights is None:
        return per.mean()
    return (per * weights).sum() / weights.sum().clamp_min(1e-8)


def euler_times(steps: int, device: torch.device | None = None) -> torch.Tensor:
    """Grid ``t_k = k / K`` for k = 0..K-1 (left endpoints of the Euler steps)."""
    return torch.arange(steps, device=device, dtype=torch.float32) / steps


@torch.no_grad()
def sample_euler(
    field: VelocityField,
    cond: torch.Tensor,
    dim: int,
    steps: int = 10,
    noise: torch.Tensor | None = None,
    clip: bool = True,
) -> torch.Tensor:
    """K Euler steps from noise: ``x <- x + v(x, t) / K`` for t = 0, 1/K, ...; result clipped to [-1, 1]."""
    b = cond.shape[0]
    x = noise if noise is not None else torch.randn(b, dim, device=cond.device, dtype=cond.dtype)
    h = 1.0 / steps
    for t in euler_times(steps, cond.device):
        x = x + h * field(cond, x, t.expand(b))
    return x.clamp(-1.0, 1.0) if clip else x
