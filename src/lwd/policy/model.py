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
from lwd.robot import check_cameras

__all__ = ["PolicyConfig", "FlowVLA", "ActionExpert", "tokenize", "normalize_chunk", "denormalize_chunk"]


@dataclass(frozen=True)
class PolicyConfig:
    """Architecture and normalization of a FlowVLA; saved beside every checkpoint."""

    image_size: int = 64
    """Square RGB input resolution (of each camera)."""
    cameras: tuple[str, ...] = ("overview",)
    """The cameras the policy sees (``lwd.robot.CAMERAS`` order); their views come side by side, (S, S * V, 3),
    and one vision encoder (shared weights, per-view keypoints) reads each: the overview alone, or with the wrist
    cameras that show the grasp up close (docs/learning.md row 84)."""
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
    hidden: int = 256
    """Width of the action expert (256: a QAM update runs it ~3K times per state; 512 costs ~4x as much)."""
    expert_arch: str = "film"
    """Action expert: "film" (residual blocks modulated by cond and t) or "mlp" (plain concat MLP)."""
    expert_output: str = "x1"
    """What the expert network predicts: "x1" (the clean chunk; v = (x1_hat - x_t) / (1 - t)) or "v" (the velocity)."""
    coord_conv: bool = True
    """Append fixed x/y coordinate channels to the image (the camera is static: absolute position matters)."""
    vision_film: bool = True
    """Modulate every conv stage by the instruction (FiLM, as RT-1 does): the spatial-softmax keypoints then locate
    the *named* item. Without it, keypoints see all items alike and the fused MLP must pick by text, which the
    small policy did not learn (it headed for the named item 11/30 times, chance 10/30)."""
    proprio: str = "full"
    """Joint state the network sees: "full" (all 14), "gripper" (the two gripper openings) or "none". The arm joints
    are always the frame of the relative action chunk (target = q0 + scale * x). With "full", v0 copies the motion
    it is in: its chunks were about as good with another episode's image (R^2 0.63-0.86 vs 0.86-0.88 along the
    demos; 0.16 either way at the first chunk). "none" makes the image matter (R^2 0.83-0.93 with its own image,
    below 0 with another's) but did not succeed more in closed loop (docs/learning.md rows 16-17)."""
    action_scale: tuple[float, ...] = field(default_factory=lambda: (0.5,) * 14)
    """Per-joint scale of (target - q0) mapped to 1.0; fitted to the pretraining data."""
    qpos_mean: tuple[float, ...] = field(default_factory=lambda: (0.0,) * 14)
    qpos_std: tuple[float, ...] = field(default_factory=lambda: (1.0,) * 14)

    @property
    def action_dim(self) -> int:
        return self.horizon * self.n_joints

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """Shape of one observation's image: the cameras' square views side by side."""
        return (self.image_size, self.image_size * len(self.cameras), 3)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PolicyConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown PolicyConfig fields: {sorted(unknown)}")
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        if "expert_arch" not in d:  # configs saved before these fields existed describe the original architecture
            d.update(expert_arch="mlp", expert_output="v", coord_conv=False)
        d.setdefault("vision_film", False)
        d.setdefault("proprio", "full")
        if isinstance(d["proprio"], bool):
            d["proprio"] = "full" if d["proprio"] else "none"
        cfg = cls(**d)
        check_cameras(cfg.cameras)
        for name in ("action_scale", "qpos_mean", "qpos_std"):
            if len(getattr(cfg, name)) != cfg.n_joints:
                raise ValueError(f"PolicyConfig.{name} has {len(getattr(cfg, name))} entries, expected {cfg.n_joints}")
        return cfg


# proprio mode -> joint indices fed to the network (grippers: the last joint of each arm)
PROPRIO_JOINTS = {
    "full": lambda n: list(range(n)),
    "gripper": lambda n: [n // 2 - 1, n - 1],
    "none": lambda n: [],
}

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
    def __init__(self, channels: int, coord_conv: bool = False, film_dim: int = 0) -> None:
        super().__init__()
        c = channels
        self.coord_conv = coord_conv
        self.conv = nn.Sequential(
            nn.Conv2d(5 if coord_conv else 3, c, 5, stride=2, padding=2), nn.GroupNorm(4, c), nn.SiLU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.GroupNorm(8, 2 * c), nn.SiLU(),
            nn.Conv2d(2 * c, 2 * c, 3, stride=1, padding=1), nn.GroupNorm(8, 2 * c), nn.SiLU(),
        )
        # FiLM after each GroupNorm (zero-init: starts as the unconditioned encoder)
        self.film = nn.ModuleList(nn.Linear(film_dim, 2 * ch) for ch in (c, 2 * c, 2 * c)) if film_dim else None
        if self.film is not None:
            for lin in self.film:
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)
        self.keypoints = SpatialSoftmax()
        self.out_dim = 2 * c * 2 + 2 * c

    def forward(self, img: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        """img [B, 3, S, S] float in [0, 1] (+ FiLM conditioning [B, film_dim]) -> [B, out_dim]."""
        x = img * 2.0 - 1.0
        if self.coord_conv:
            b, _, h, w = x.shape
            ys = torch.linspace(-1, 1, h, device=x.device).view(1, 1, h, 1).expand(b, 1, h, w)
            xs = torch.linspace(-1, 1, w, device=x.device).view(1, 1, 1, w).expand(b, 1, h, w)
            x = torch.cat([x, xs, ys], dim=1)
        if self.film is None or cond is None:
            f = self.conv(x)
        else:
            f = x
            layers = list(self.conv)
            for stage in range(3):
                conv, norm, act = layers[3 * stage: 3 * stage + 3]
                f = norm(conv(f))
                scale, shift = self.film[stage](cond).chunk(2, dim=1)
                f = act(f * (1.0 + scale[:, :, None, None]) + shift[:, :, None, None])
        return torch.cat([self.keypoints(f), f.mean(dim=(2, 3))], dim=1)


def time_embedding(t: torch.Tensor, dim: int = 64) -> torch.Tensor:
    """Sinusoidal features of flow time t in [0, 1]; [B] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32) * (-math.log(1000.0) / half))
    ang = t.float()[:, None] * freqs[None] * 1000.0
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)


class _FiLMBlock(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.film = nn.Linear(hidden, 2 * hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(c).chunk(2, dim=1)
        z = self.norm(h) * (1.0 + scale) + shift
        return h + self.fc2(nn.functional.silu(self.fc1(nn.functional.silu(z))))


class ActionExpert(nn.Module):
    """Velocity field v(cond, x_t, t) over the flattened chunk; also used as QAM's base and fine-tuned fields.

    ``arch="film"``: the input layer sees [cond, x_t, t]; residual blocks are FiLM-modulated by an embedding of
    (cond, t), so the observation steers every layer instead of competing with the noisy x_t in one concat.
    ``arch="mlp"``: a plain 4-layer MLP over the concat.
    """

    def __init__(self, cond_dim: int, action_dim: int, hidden: int, time_dim: int = 64, arch: str = "film",
                 n_blocks: int = 3, output: str = "v") -> None:
        super().__init__()
        if output not in ("v", "x1"):
            raise ValueError(f"unknown action expert output {output!r}")
        self.time_dim = time_dim
        self.arch = arch
        self.output = output
        if arch == "mlp":
            self.net = nn.Sequential(
                nn.Linear(cond_dim + action_dim + time_dim, hidden), nn.SiLU(),
                nn.Linear(hidden, hidden), nn.SiLU(),
                nn.Linear(hidden, hidden), nn.SiLU(),
                nn.Linear(hidden, action_dim),
            )
        elif arch == "film":
            self.inp = nn.Linear(cond_dim + action_dim + time_dim, hidden)
            self.ctx = nn.Sequential(nn.Linear(cond_dim + time_dim, hidden), nn.SiLU())
            self.blocks = nn.ModuleList(_FiLMBlock(hidden) for _ in range(n_blocks))
            self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, action_dim))
        else:
            raise ValueError(f"unknown action expert arch {arch!r}")

    def forward(self, cond: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = self._net(cond, x, t)
        if self.output == "v":
            return out
        # x1-prediction: the network regresses the clean chunk, the field is the straight line from x_t to it
        # (the conditional-flow velocity); an easy target for a small net on small, low-variance chunks.
        return (out - x) / (1.0 - t.float()).clamp_min(0.05)[:, None]

    def _net(self, cond: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        te = time_embedding(t, self.time_dim)
        if self.arch == "mlp":
            return self.net(torch.cat([cond, x, te], dim=1))
        c = self.ctx(torch.cat([cond, te], dim=1))
        h = self.inp(torch.cat([cond, x, te], dim=1))
        for blk in self.blocks:
            h = blk(h, c)
        return self.out(h)


class FlowVLA(nn.Module):
    """Encoders (vision, language, proprio) -> cond; action expert -> chunk via K Euler steps."""

    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.vision = VisionEncoder(cfg.vision_channels, cfg.coord_conv, cfg.text_dim if cfg.vision_film else 0)
        self.text = nn.EmbeddingBag(cfg.vocab_size, cfg.text_dim, mode="mean", padding_idx=0)
        if cfg.proprio not in PROPRIO_JOINTS:
            raise ValueError(f"unknown proprio {cfg.proprio!r}; choose from {sorted(PROPRIO_JOINTS)}")
        self._proprio_idx = PROPRIO_JOINTS[cfg.proprio](cfg.n_joints)
        n_in = len(self._proprio_idx)
        self.proprio = nn.Sequential(nn.Linear(n_in, 64), nn.SiLU()) if n_in else None
        self.n_views = len(check_cameras(cfg.cameras))
        self.fuse = nn.Sequential(
            nn.Linear(self.n_views * self.vision.out_dim + cfg.text_dim + (64 if n_in else 0), cfg.cond_dim), nn.SiLU(),
            nn.Linear(cfg.cond_dim, cfg.cond_dim), nn.LayerNorm(cfg.cond_dim),
        )
        self.expert = ActionExpert(cfg.cond_dim, cfg.action_dim, cfg.hidden, arch=cfg.expert_arch,
                                   output=cfg.expert_output)
        self.register_buffer("qpos_mean", torch.tensor(cfg.qpos_mean, dtype=torch.float32), persistent=False)
        self.register_buffer("qpos_std", torch.tensor(cfg.qpos_std, dtype=torch.float32), persistent=False)

    def encode(self, image: torch.Tensor, qpos: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """image uint8 [B, S, S * V, 3] (V views side by side), qpos [B, J], tokens [B, L] -> cond [B, cond_dim]."""
        b, s, v = image.shape[0], image.shape[1], self.n_views
        # [B, S, V*S, 3] -> [B*V, 3, S, S]: each view through the one encoder, its keypoints kept per view
        img = image.reshape(b, s, v, s, 3).permute(0, 2, 4, 1, 3).reshape(b * v, 3, s, s).float() / 255.0
        # Mean over non-padding tokens; an all-padding instruction gives zeros.
        text = self.text(tokens)
        vis = self.vision(img, text.repeat_interleave(v, dim=0) if v > 1 else text)
        parts = [vis.reshape(b, v * vis.shape[1]), text]
        if self.proprio is not None:
            q = (qpos.float() - self.qpos_mean) / self.qpos_std
            parts.append(self.proprio(q[:, self._proprio_idx]))
        return self.fuse(torch.cat(parts, dim=1))

    def loss(self, cond: torch.Tensor, x1: torch.Tensor, weights: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        return flow_matching_loss(self.expert, cond, x1, weights, generator)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return sample_euler(self.expert, cond, self.cfg.action_dim, self.cfg.flow_steps, noise=noise)
