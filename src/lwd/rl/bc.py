"""Filtered behaviour cloning (HG-DAgger style): flow matching on demos, operator corrections and successes.

This is the pretraining objective too (on demos only), and the `bc` baseline of the learner.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lwd.policy.model import FlowVLA
from lwd.rl.base import Algorithm, random_shift
from lwd.rl.dataset import Batch

__all__ = ["BCConfig", "FilteredBC"]


@dataclass
class BCConfig:
    lr: float = 3e-4
    """Adam learning rate."""
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    augment_pad: int = 0
    """Random-shift augmentation in pixels; off by default (fixed camera, see PretrainConfig.augment_pad)."""
    """Random-shift augmentation in pixels (0 = off)."""
    correction_weight: float = 2.0
    """Extra weight on operator-corrected chunks: they are the most informative labels."""


class FilteredBC(Algorithm):
    name = "bc"

    def __init__(self, model: FlowVLA, cfg: BCConfig | None = None) -> None:
        self.cfg = cfg or BCConfig()
        self.model = model
        self.opt = torch.optim.AdamW(model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

    def sample_mask(self, buffer):
        return buffer.filtered_bc_mask()

    def update(self, batch: Batch) -> dict[str, float]:
        self.model.train()
        img = random_shift(batch.image, self.cfg.augment_pad) if self.cfg.augment_pad else batch.image
        cond = self.model.encode(img, batch.qpos, batch.tokens)
        w = 1.0 + (self.cfg.correction_weight - 1.0) * batch.intervention
        loss = self.model.loss(cond, batch.act, w)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        self.model.eval()
        return {"loss/actor": loss.item(), "grad_norm/actor": gn.item()}

    def actor(self) -> FlowVLA:
        return self.model
