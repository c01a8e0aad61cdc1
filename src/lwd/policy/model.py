"""A small flow-matching VLA: image + instruction + proprioception -> an H x 14 action chunk.

Three encoders make the conditioning vector ``cond`` (the "observation features" the critics also consume);
the action expert is a velocity field ``v(cond, x_t, t)`` over the flattened, normalized chunk.
Actions are normalized per joint relative to the joint positions at chunk start: ``x = (a - q0) / scale``,
clipped to [-1, 1] (see :mod:`lwd.policy.flow` for the time convention).
"""

from __future__ import annotations

import dataclasses
import math
import re
import zlib
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from lwd.policy.flow import flow_matching_loss, sample_euler

__all__ = ["PolicyConfig", "FlowVLA", "ActionExpert", "tokenize", "normalize_chunk", "denormalize_chunk"]


@dataclass(frozen=True)
class PolicyConfig:
    """Architecture and normalization of a FlowVLA; saved beside every checkpoint."""

    image_size: int = 64
    """Square RGB input resolution."""
    n_joints: int = 14
    """Action/proprio dimension (2 arms x (6 joints + gripper))."""
    horizon: int = 10
    """H: actions per chunk (one per control step)."""
    flow_steps: int = 10
    """K: Euler steps when sampling a chunk."""
    vocab_size: int = 1024
    """Hashed word buckets of the instruction tokenizer."""
    max_tokens: int = 16
    text_dim: int = 64
    vision_channels: int = 16
    cond_dim: int = 256
    """Size of the observation features shared by actor and critics."""
    hidden: int = 512
    """Width of the action expert."""
    action_scale: tuple[float, ...] = field(default_factory=lambda: (0.5,) * 14)
    """Per-joint scale of (target - q0) mapped to 1.0; fitted to the pretraining data."""
    qpos_mean: tuple[float, ...] = field(default_factory=lambda: (0.0,) * 14)
    qpos_std: tuple[float, ...] = field(default_factory=lambda: (1.0,) * 14)

    @property
    def action_dim(self) -> int:
        return self.horizon * self.n_joints

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PolicyConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown PolicyConfig fields: {sorted(unknown)}")
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        cfg = cls(**d)
        for name in ("action_scale", "qpos_mean", "qpos_std"):
            if len(getattr(cfg, name)) != cfg.n_joints:
                raise ValueError(f"PolicyConfig.{name} has {len(getattr(cfg, name))} entries, expected {cfg.n_joints}")
        return cfg


_WORD = re.compile(r"[a-z0-9]+")


def tokenize(text: str, vocab_size: int, max_tokens: int) -> np.ndarray:
    """Hash lower-cased words into ``[1, vocab_size)``; 0 pads. Stable across processes (crc32, not hash())."""
    ids = [1 + zlib.crc32(w.encode()) % (vocab_size - 1) for w in _WORD.findall(text.lower())][:max_tokens]
    out = np.zeros(max_tokens, dtype=np.int64)
    out[: len(ids)] = ids
    return out


def normalize_chunk(actions: np.ndarray, q0: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(…, H, J) absolute targets -> (…, H*J) in [-1, 1] relative to q0 (…, J)."""
    x = (actions - q0[..., None, :]) / scale
    return np.clip(x, -1.0, 1.0).reshape(*actions.shape[:-2], -1).astype(np.float32)


def denormalize_chunk(x: np.ndarray, q0: np.ndarray, scale: np.ndarray, n_joints: int) -> np.ndarray:
    """Inverse of :func:`normalize_chunk` (x clipped to [-1, 1])."""
    x = np.clip(x, -1.0, 1.0).reshape(*x.shape[:-1], -1, n_joints)
    return q0[..., None, :] + x * scale


class SpatialSoftmax(nn.Module):
    """Expected (x, y) image coordinates per channel: a compact, position-aware visual feature."""

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        b, c, h, w = f.shape
        p = torch.softmax(f.reshape(b, c, h * w), dim=-1).reshape(b, c, h, w)
        ys = torch.linspace(-1, 1, h, device=f.device)
        xs = torch.linspace(-1, 1, w, device=f.device)
        ex = (p.sum(dim=2) * xs).sum(-1)
        ey = (p.sum(dim=3) * ys).sum(-1)
        return torch.cat([ex, ey], dim=1)


class VisionEncoder(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        c = channels
        self.conv = nn.Sequential(
            nn.Conv2d(3, c, 5, stride=2, padding=2), nn.GroupNorm(4, c), nn.SiLU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.GroupNorm(8, 2 * c), nn.SiLU(),
            nn.Conv2d(2 * c, 2 * c, 3, stride=1, padding=1), nn.GroupNorm(8, 2 * c), nn.SiLU(),
        )
        self.keypoints = SpatialSoftmax()
        self.out_dim = 2 * c * 2 + 2 * c

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """img [B, 3, S, S] float in [0, 1] -> [B, out_dim]."""
        f = self.conv(img * 2.0 - 1.0)
        return torch.cat([self.keypoints(f), f.mean(dim=(2, 3))], dim=1)


def time_embedding(t: torch.Tensor, dim: int = 64) -> torch.Tensor:
    """Sinusoidal features of flow time t in [0, 1]; [B] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(1000.0) / half))
    ang = t.float()[:, None] * freqs[None] * 1000.0
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)


class ActionExpert(nn.Module):
    """Velocity field v(cond, x_t, t) over the flattened chunk; also used as QAM's base and fine-tuned fields."""

    def __init__(self, cond_dim: int, action_dim: int, hidden: int, time_dim: int = 64) -> None:
        super().__init__()
        self.time_dim = time_dim
        self.net = nn.Sequential(
            nn.Linear(cond_dim + action_dim + time_dim, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, action_dim),
        )

    def forward(self, cond: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([cond, x, time_embedding(t, self.time_dim)], dim=1))


class FlowVLA(nn.Module):
    """Encoders (vision, language, proprio) -> cond; action expert -> chunk via K Euler steps."""

    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.vision = VisionEncoder(cfg.vision_channels)
        self.text = nn.EmbeddingBag(cfg.vocab_size, cfg.text_dim, mode="mean", padding_idx=0)
        self.proprio = nn.Sequential(nn.Linear(cfg.n_joints, 64), nn.SiLU())
        self.fuse = nn.Sequential(
            nn.Linear(self.vision.out_dim + cfg.text_dim + 64, cfg.cond_dim), nn.SiLU(),
            nn.Linear(cfg.cond_dim, cfg.cond_dim), nn.LayerNorm(cfg.cond_dim),
        )
        self.expert = ActionExpert(cfg.cond_dim, cfg.action_dim, cfg.hidden)
        self.register_buffer("qpos_mean", torch.tensor(cfg.qpos_mean, dtype=torch.float32), persistent=False)
        self.register_buffer("qpos_std", torch.tensor(cfg.qpos_std, dtype=torch.float32), persistent=False)

    def encode(self, image: torch.Tensor, qpos: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """image uint8 [B, S, S, 3], qpos [B, J], tokens [B, L] -> cond [B, cond_dim]."""
        img = image.permute(0, 3, 1, 2).float() / 255.0
        q = (qpos.float() - self.qpos_mean) / self.qpos_std
        # Mean over non-padding tokens; an all-padding instruction gives zeros.
        text = self.text(tokens)
        return self.fuse(torch.cat([self.vision(img), text, self.proprio(q)], dim=1))

    def loss(self, cond: torch.Tensor, x1: torch.Tensor, weights: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        return flow_matching_loss(self.expert, cond, x1, weights, generator)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return sample_euler(self.expert, cond, self.cfg.action_dim, self.cfg.flow_steps, noise=noise)
