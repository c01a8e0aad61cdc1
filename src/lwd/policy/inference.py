"""The one policy interface (``reset`` / ``infer``) used by the ROS node, sim evaluation and the learner's gate."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from lwd.policy.checkpoint import Checkpoint
from lwd.policy.model import FlowVLA, denormalize_chunk, normalize_chunk, tokenize
from lwd.policy.rtc import DEFAULT_BETA, sample_guided

__all__ = ["VLAPolicy", "ChunkScorer", "DEFAULT_NOISE_SCALE", "DEFAULT_CANDIDATE_NOISE"]

DEFAULT_NOISE_SCALE = 0.0
"""Scale of the initial flow noise at inference: 0 integrates the flow from its centre (a deterministic chunk near
the mode). Measured on 20 held-out pick_place scenes at the demos' variation: 9/20 successes at 0.0 vs 4/30 at 1.0
(docs/learning.md)."""

DEFAULT_CANDIDATE_NOISE = 0.5
"""Noise scale of the extra candidates of value-guided selection (the first candidate keeps ``noise_scale``)."""


class ChunkScorer(Protocol):
    """``score(cond [N, C], chunks [N, D]) -> [N]``: a critic's value of each normalized chunk in the state whose
    features (this policy's ``encode``) are ``cond``; higher is better."""

    def __call__(self, cond: torch.Tensor, chunks: torch.Tensor) -> torch.Tensor: ...


class VLAPolicy:
    """Wraps a FlowVLA: ``infer(obs) -> (H, J)`` absolute joint targets.

    ``obs`` = ``{"image": uint8 (S, S, 3), "qpos": (J,), "instruction": str}``. ``infer(obs, prefix)`` with a
    :class:`lwd.control.chunking.Prefix` (absolute targets + weights per slot) samples a chunk that continues it
    (real-time chunking guidance, :mod:`lwd.policy.rtc`); without one, plain flow sampling.

    Value-guided selection (IDQL-style: sample from the behaviour flow, let the critic choose): with a ``scorer``
    and ``candidates`` N > 1, each re-plan samples N chunks, the one at ``noise_scale`` (the plain policy's) and
    N - 1 from noise of scale ``candidate_noise``, and executes the one the scorer values most.
    """

    def __init__(self, model: FlowVLA, version: int = 0, seed: int | None = None, exec_steps: int | None = None,
                 noise_scale: float = DEFAULT_NOISE_SCALE, rtc_beta: float = DEFAULT_BETA,
                 scorer: ChunkScorer | None = None, candidates: int = 1,
                 candidate_noise: float = DEFAULT_CANDIDATE_NOISE) -> None:
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        self.model = model.eval()
        self.scorer = scorer
        self.candidates = candidates
        self.candidate_noise = candidate_noise
        self.picks = [0, 0]
        """Value-guided selection: [re-plans that kept the plain candidate, re-plans]."""
        self.noise_scale = noise_scale
        self.rtc_beta = rtc_beta
        self.sha256: str | None = None
        self.exec_steps = exec_steps or model.cfg.horizon
        self.cfg = model.cfg
        self.version = version
        self._scale = np.asarray(self.cfg.action_scale, dtype=np.float32)
        self._gen = torch.Generator().manual_seed(seed) if seed is not None else None
        self._tokens_cache: dict[str, np.ndarray] = {}

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint, seed: int | None = None, exec_steps: int | None = None) -> VLAPolicy:
        policy = cls(ckpt.model, ckpt.version, seed, exec_steps)
        policy.sha256 = ckpt.sha256
        return policy

    def reset(self) -> None:
        """No recurrent state today; kept so every caller resets at episode start."""

    def _tokens(self, text: str) -> np.ndarray:
        if text not in self._tokens_cache:
            self._tokens_cache[text] = tokenize(text, self.cfg.vocab_size, self.cfg.max_tokens)
        return self._tokens_cache[text]

    @torch.no_grad()
    def infer(self, obs: dict, prefix=None) -> np.ndarray:
        image = np.asarray(obs["image"], dtype=np.uint8)
        if image.shape != self.cfg.image_shape:
            raise ValueError(f"image shape {image.shape} != {self.cfg.image_shape} "
                             f"(cameras {list(self.cfg.cameras)})")
        qpos = np.asarray(obs["qpos"], dtype=np.float32)
        if qpos.shape != (self.cfg.n_joints,) or not np.isfinite(qpos).all():
            raise ValueError(f"qpos must be finite with shape ({self.cfg.n_joints},)")
        cond = self.model.encode(
            torch.from_numpy(image[None]), torch.from_numpy(qpos[None]),
            torch.from_numpy(self._tokens(obs["instruction"])[None]),
        )
        # noise_scale < 1 samples closer to the flow's mode (0 = deterministic): smoother chunks from a small policy.
        noise = torch.randn(1, self.cfg.action_dim, generator=self._gen) * self.noise_scale
        n = self.candidates if self.scorer is not None else 1
        if n > 1:
            extra = torch.randn(n - 1, self.cfg.action_dim, generator=self._gen) * self.candidate_noise
            noise, cond = torch.cat([noise, extra]), cond.expand(n, -1)
        if prefix is None or len(prefix.actions) == 0:
            x = self.model.sample(cond, noise=noise)
        else:
            y, w = self._prefix_target(prefix, qpos)
            x = sample_guided(self.model.expert, cond, torch.from_numpy(y), torch.from_numpy(w),
                              self.cfg.flow_steps, noise=noise, beta=self.rtc_beta)
        i = 0
        if n > 1:
            i = int(torch.argmax(self.scorer(cond, x)))
            self.picks[0] += i == 0
            self.picks[1] += 1
        return denormalize_chunk(x[i].numpy(), qpos, self._scale, self.cfg.n_joints)

    def _prefix_target(self, prefix, qpos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalized, flattened prefix target and per-element weights (zero past the prefix)."""
        h, j = self.cfg.horizon, self.cfg.n_joints
        a = np.asarray(prefix.actions, dtype=np.float32)[:h]
        p = a.shape[0]
        if a.shape != (p, j) or not np.isfinite(a).all():
            raise ValueError(f"prefix actions must be finite with shape (P <= {h}, {j})")
        y = np.zeros(h * j, dtype=np.float32)
        y[: p * j] = normalize_chunk(a, qpos, self._scale)
        w = np.zeros((h, j), dtype=np.float32)
        w[:p] = np.clip(np.asarray(prefix.weights, dtype=np.float32)[:p], 0.0, 1.0)[:, None]
        return y, w.reshape(-1)

    def act(self, obs: dict) -> np.ndarray:
        """Sim-rollout actor protocol (``reset()`` / ``act(obs) -> (n, J)``): the first ``exec_steps`` of a chunk."""
        return self.infer(obs)[: self.exec_steps]
