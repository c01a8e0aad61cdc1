"""The learner/algorithm contract.

The learner owns the data (a :class:`~lwd.rl.dataset.ChunkBuffer` with cached encoder features), the deployed VLA's
frozen encoder, gating and publishing. An algorithm owns the math on top of the features: it trains the deployed
action expert (and whatever critics or behaviour flows it needs) and saves/restores its own state.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Algorithm", "ReplayedStreams", "random_shift"]


def random_shift(image: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """DrQ-style augmentation: shift each uint8 image [B, S, S, 3] by up to ``pad`` pixels (edge-replicated).

    Views side by side ([B, S, S * V, 3], ``PolicyConfig.cameras``) are shifted each on its own, so no pixel crosses
    from one camera's view into another's."""
    b0, s, v = image.shape[0], image.shape[1], image.shape[2] // image.shape[1]
    if v > 1:
        views = image.reshape(b0, s, v, s, 3).permute(0, 2, 1, 3, 4).reshape(b0 * v, s, s, 3)
        out = random_shift(views, pad, generator)
        return out.reshape(b0, v, s, s, 3).permute(0, 2, 1, 3, 4).reshape(b0, s, v * s, 3)
    b = b0
    x = image.permute(0, 3, 1, 2).float()
    x = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    rows = (oy[:, None] + torch.arange(s)[None])[:, :, None].expand(b, s, s)
    cols = (ox[:, None] + torch.arange(s)[None])[:, None, :].expand(b, s, s)
    bi = torch.arange(b)[:, None, None].expand(b, s, s)
    out = x.permute(0, 2, 3, 1)[bi, rows, cols]
    return out.round().clamp(0, 255).to(torch.uint8)


class ReplayedStreams:
    """The random draws a learner running filtered BC alone would make, replayed for a BC reference trained inside
    another algorithm (common random numbers). The learner reseeds its streams at every round; at the first update
    after that, the reference forks a copy of the numpy generator and of torch's CPU generator and from then on draws
    only from the copies, so the critic's and the extractor's draws in between do not shift its batches, shifts and
    flow noise. lwd's reference then equals bc's update for update, and an lwd run differs from bc's on the same
    seeds only by what lwd adds (a kept tilt, value-guided selection), not by another draw of BC's ~12-point
    learner-seed noise (docs/learning.md rows 33, 63). CUDA generators are not replayed: on a GPU the two only share
    their index draws."""

    def __init__(self) -> None:
        self._source: np.random.Generator | None = None
        self.rng: np.random.Generator | None = None
        self._torch: torch.Tensor | None = None

    def follow(self, rng: np.random.Generator) -> np.random.Generator:
        """Call first in every update with the learner's generator; returns the reference's numpy stream."""
        if rng is not self._source:  # a reseed (a new round, or a restarted learner): fork its streams afresh
            self._source, self.rng, self._torch = rng, copy.deepcopy(rng), torch.get_rng_state()
        return self.rng

    @contextmanager
    def torch_stream(self) -> Iterator[None]:
        """Run the reference's step on its own torch CPU stream, restoring the learner's afterwards."""
        if self._torch is None:
            raise RuntimeError("ReplayedStreams.follow() must come first")
        outer = torch.get_rng_state()
        torch.set_rng_state(self._torch)
        try:
            yield
        finally:
            self._torch = torch.get_rng_state()
            torch.set_rng_state(outer)


class Algorithm(abc.ABC):
    """A learner-side algorithm on cached observation features.

    Args of every implementation: ``expert`` — the deployed action expert (a velocity field
    ``v(cond, x_t, t)``, trained in place), ``obs_dim`` — feature size, ``act_dim`` — flattened chunk size.
    """

    name: str = "algorithm"
    trains_encoder: bool = False
    """True: the algorithm trains the whole deployed VLA on images (the learner then leaves its encoder unfrozen
    and needs no feature cache for it)."""
    needs_features: bool = True
    """True: the algorithm reads cached features (``buffer.gather_features``). With ``trains_encoder`` they come
    from a frozen copy of the VLA the learner started from (the critic's view stays fixed while the encoder moves)."""

    @abc.abstractmethod
    def update(self, buffer, rng: np.random.Generator) -> dict[str, float]:
        """One learner update: sample what it needs from ``buffer`` (features cached) and take its gradient steps."""

    @abc.abstractmethod
    def deployed(self) -> nn.Module:
        """The action expert to publish (trained in place; the learner puts it into the checkpoint)."""

    def feature_encoder(self) -> nn.Module | None:
        """A frozen VLA whose ``encode`` the cached features must come from, when the algorithm moved them off the
        learner's (see FleetRLConfig.critic_features); None = the learner's frozen feature encoder."""
        return None

    def scorer_spec(self) -> dict | None:
        """Manifest entry of a critic (saved under ``critic.`` in :meth:`state_dict`) that values chunks on the
        *published* VLA's own features, for value-guided selection at deployment (lwd.rl.selection); None = none."""
        return None

    def reference(self) -> nn.Module | None:
        """The behaviour/reference field the deployed one is tilted from (QAM's base), if any."""
        return None

    def alternative(self) -> nn.Module | None:
        """An action expert the learner may publish instead of :meth:`deployed` when rollouts show it succeeding
        more often (lwd: the untilted reference, after a round whose tilt was kept); None = nothing to choose."""
        return None

    def q_value(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor | None:
        """The critic's Q(s, a) [B] (ensemble mean), or None for critic-free algorithms."""
        return None

    def v_value(self, obs: torch.Tensor) -> torch.Tensor | None:
        """The critic's V(s) [B], or None."""
        return None

    def on_round_start(self, updates: int = 0) -> None:  # noqa: B027 - optional hook
        """Called when the learner starts an update round (enough new fleet episodes arrived); ``updates`` is the
        number of updates the round will run (for per-round learning-rate schedules)."""

    def on_round_end(self, buffer, rng: np.random.Generator) -> dict[str, float]:
        """Called after the round's updates, before the candidate is diagnosed and gated; returns stats to log."""
        return {}

    def on_published(self) -> None:  # noqa: B027 - optional hook, most algorithms need nothing
        """Called after the learner published the deployed expert as a new version."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Everything needed to resume this algorithm (tensors only; saved with safetensors)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:  # noqa: B027 - stateless by default
        """Inverse of :meth:`state_dict`. Raises ValueError when the state does not fit."""
