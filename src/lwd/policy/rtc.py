"""Real-time chunking by inference-time guidance (Black et al. 2025, arXiv 2506.07339, Algorithm 1).

While the chunk in flight keeps executing, the next one is sampled so that it continues it: every Euler step of the
flow is steered toward the committed prefix ``y`` of the old chunk (inpainting, PiGDM-style guidance):

    x1_hat(x) = x + (1 - t) v(x, t)                  # the field's estimate of the clean chunk
    g = J^T [W * (y - x1_hat(x))]                    # J = d x1_hat / d x, W = per-element soft-mask weights
    x <- x + (v(x, t) + min(beta, (1 - t) / (t r_t^2)) g) / K,   r_t^2 = (1 - t)^2 / (t^2 + (1 - t)^2)

Time convention as in :mod:`lwd.policy.flow` (t = 0 noise, t = 1 action, which is also the paper's). With
``W = 0`` this is exactly :func:`lwd.policy.flow.sample_euler`.
"""

from __future__ import annotations

import torch

from lwd.policy.flow import VelocityField, euler_times

__all__ = ["DEFAULT_BETA", "guidance_weight", "sample_guided"]

DEFAULT_BETA = 5.0
"""Guidance weight clip (the paper's beta)."""


def guidance_weight(t: float, beta: float = DEFAULT_BETA) -> float:
    """``min(beta, (1 - t) / (t r_t^2))``; ``beta`` at t = 0."""
    if t <= 0.0:
        return beta
    r2 = (1.0 - t) ** 2 / (t**2 + (1.0 - t) ** 2)
    if r2 <= 0.0:
        return 0.0
    return min(beta, (1.0 - t) / (t * r2))


def sample_guided(
    field: VelocityField,
    cond: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor,
    steps: int = 10,
    noise: torch.Tensor | None = None,
    beta: float = DEFAULT_BETA,
    clip: bool = True,
) -> torch.Tensor:
    """K guided Euler steps from noise toward a chunk whose weighted part matches ``target``.

    Args:
        field: velocity field ``v(cond, x, t)``.
        cond: [B, C] conditioning.
        target: [B, D] (or [D]) normalized prefix ``y`` (any value where the weight is 0).
        weights: [B, D] (or [D]) soft-mask weights in [0, 1].
        steps: Euler steps K.
        noise: [B, D] start point (default standard normal).
        beta: guidance weight clip.
        clip: clamp the result to [-1, 1] like :func:`lwd.policy.flow.sample_euler`.
    """
    b = cond.shape[0]
    dim = target.shape[-1]
    x = noise if noise is not None else torch.randn(b, dim, device=cond.device, dtype=cond.dtype)
    y = target.to(x).expand(b, dim)
    w = weights.to(x).expand(b, dim)
    guided = bool((w > 0).any())
    h = 1.0 / steps
    cond = cond.detach()
    for t in euler_times(steps, cond.device):
        tt = t.expand(b)
        if not guided:
            with torch.no_grad():
                x = x + h * field(cond, x, tt)
            continue
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            v = field(cond, xg, tt)
            x1_hat = xg + (1.0 - t) * v
            (g,) = torch.autograd.grad(x1_hat, xg, grad_outputs=w * (y - x1_hat.detach()))
        x = x.detach() + h * (v.detach() + guidance_weight(float(t), beta) * g)
    return x.clamp(-1.0, 1.0) if clip else x
