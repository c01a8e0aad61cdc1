"""What every learning algorithm offers the learner: ``update(batch) -> stats`` and the deployable actor."""

from __future__ import annotations

import abc

import torch
import torch.nn.functional as F

from lwd.policy.model import FlowVLA
from lwd.rl.dataset import Batch

__all__ = ["Algorithm", "random_shift"]


def random_shift(image: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """DrQ-style augmentation: shift each uint8 image [B, S, S, 3] by up to ``pad`` pixels (edge-replicated)."""
    b, s = image.shape[0], image.shape[1]
    x = image.permute(0, 3, 1, 2).float()
    x = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    rows = (oy[:, None] + torch.arange(s)[None])[:, :, None].expand(b, s, s)
    cols = (ox[:, None] + torch.arange(s)[None])[:, None, :].expand(b, s, s)
    bi = torch.arange(b)[:, None, None].expand(b, s, s)
    out = x.permute(0, 2, 3, 1)[bi, rows, cols]
    return out.round().clamp(0, 255).to(torch.uint8)


class Algorithm(abc.ABC):
    """A learner-side algorithm. The learner owns data, gating and publishing; the algorithm owns the math."""

    name: str = "algorithm"

    @abc.abstractmethod
    def update(self, batch: Batch) -> dict[str, float]:
        """One gradient step on a batch of chunk transitions; returns scalar stats for logging."""

    @abc.abstractmethod
    def actor(self) -> FlowVLA:
        """The model to deploy (a FlowVLA whose action expert samples the improved policy)."""

    def sample_mask(self, buffer) -> torch.Tensor | None:
        """Which steps this algorithm trains on (None = all)."""
        return None

    def extra_state(self) -> dict[str, torch.Tensor]:
        """Learner-only tensors saved beside a checkpoint (critics, base field), for restarts and inspection."""
        return {}
