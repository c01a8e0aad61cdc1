"""Small network builders shared by the critics (DIVL, IQL) and the flow actors (QAM, AWR).

Everything works on *vector* inputs: the learner feeds the frozen VLA encoder's features as ``obs`` and
the flattened, normalized action chunk (H x 14 in [-1, 1]) as ``act``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = [
    "mlp",
    "EnsembleLinear",
    "EnsembleMLP",
    "time_embedding",
    "VelocityMLP",
    "soft_update",
    "hard_update",
]


def mlp(
    in_dim: int,
    out_dim: int,
    hidden: Sequence[int] = (256, 256),
    activation: type[nn.Module] = nn.SiLU,
    layer_norm: bool = False,
) -> nn.Sequential:
    """Plain MLP ``in_dim -> hidden... -> out_dim`` (optional LayerNorm after each hidden Linear)."""
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers.append(nn.Linear(d, h))
        if layer_norm:
            layers.append(nn.LayerNorm(h))
        layers.append(activation())
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """E independent linear layers evaluated in one batched matmul: [E, B, in] -> [E, B, out]."""

    def __init__(self, in_dim: int, out_dim: int, ensemble_size: int) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.ensemble_size = in_dim, out_dim, ensemble_size
        bound = 1.0 / math.sqrt(in_dim)  # same init scale as nn.Linear, drawn independently per member
        self.weight = nn.Parameter(torch.empty(ensemble_size, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(ensemble_size, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleMLP(nn.Module):
    """Vectorised ensemble of MLPs. ``forward(x)``: x [B, in] (shared) or [E, B, in] -> [E, B, out]."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: Sequence[int] = (256, 256),
        ensemble_size: int = 2,
        layer_norm: bool = True,
        activation: type[nn.Module] = nn.SiLU,
    ) -> None:
        super().__init__()
        self.ensemble_size = ensemble_size
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden:
            layers.append(EnsembleLinear(d, h, ensemble_size))
            if layer_norm:
                layers.append(nn.LayerNorm(h, elementwise_affine=False))
            layers.append(activation())
            d = h
        layers.append(EnsembleLinear(d, out_dim, ensemble_size))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.ensemble_size, -1, -1)
        return self.net(x)


def time_embedding(t: torch.Tensor, dim: int = 32, max_freq: float = 100.0) -> torch.Tensor:
    """Sinusoidal embedding of flow time t in [0, 1] (see lwd.policy.flow.FlowTime): [B] -> [B, dim].

    The raw ``t`` is the first feature so that fields stay smooth in t even at low frequencies.
    """
    half = max(1, (dim - 1) // 2)
    freqs = torch.exp(torch.linspace(0.0, math.log(max_freq), half, device=t.device, dtype=t.dtype))
    ang = t.reshape(-1, 1) * freqs
    emb = torch.cat([t.reshape(-1, 1), torch.sin(ang), torch.cos(ang)], dim=-1)
    if emb.shape[-1] < dim:
        emb = torch.cat([emb, emb.new_zeros(emb.shape[0], dim - emb.shape[-1])], dim=-1)
    return emb


class VelocityMLP(nn.Module):
    """Velocity field ``v(cond, x, t)``: cond [B, C] (C may be 0), x [B, A], t [B] -> [B, A].

    Satisfies ``lwd.policy.flow.VelocityField`` so it works with ``flow_matching_loss`` / ``sample_euler`` and
    as QAM's ``v_base`` or ``v_theta``. ``zero_init`` zeroes the output layer (for QAM's residual variant).
    """

    def __init__(
        self,
        cond_dim: int,
        act_dim: int,
        hidden: Sequence[int] = (256, 256, 256),
        time_dim: int = 32,
        layer_norm: bool = False,
        zero_init: bool = False,
    ) -> None:
        super().__init__()
        self.cond_dim, self.act_dim, self.time_dim = cond_dim, act_dim, time_dim
        self.net = mlp(cond_dim + act_dim + time_dim, act_dim, hidden, layer_norm=layer_norm)
        if zero_init:
            last = self.net[-1]
            assert isinstance(last, nn.Linear)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, cond: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.reshape(-1).to(x.dtype)
        if t.numel() == 1 and x.shape[0] != 1:
            t = t.expand(x.shape[0])
        return self.net(torch.cat([cond.to(x.dtype), x, time_embedding(t, self.time_dim)], dim=-1))


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, rate: float) -> None:
    """EMA: ``target <- (1 - rate) * target + rate * source`` (parameters and float buffers)."""
    for tp, sp in zip(target.parameters(), source.parameters(), strict=True):
        tp.lerp_(sp, rate)
    for tb, sb in zip(target.buffers(), source.buffers(), strict=True):
        if tb.dtype.is_floating_point:
            tb.lerp_(sb, rate)
        else:
            tb.copy_(sb)


@torch.no_grad()
def hard_update(target: nn.Module, source: nn.Module) -> None:
    target.load_state_dict(source.state_dict())
