"""Behaviour cloning by flow matching.

* :class:`ImageBC` trains the whole VLA (encoders + action expert) on images: the pretraining objective.
* :class:`FilteredBC` is the learner's ``bc`` baseline (HG-DAgger style): the deployed action expert is cloned on
  cached features of demos, operator corrections and the non-overruled steps of successful episodes.
* ``pretrain_more`` is the same update restricted to the demonstrations: the control that spends the learner's
  compute without fleet data, so that gains can be attributed to fleet experience.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from lwd.data.schema import SOURCE_EXPERT
from lwd.policy.flow import flow_matching_loss
from lwd.policy.model import FlowVLA
from lwd.rl.base import Algorithm, random_shift
from lwd.rl.dataset import Batch

__all__ = ["BCConfig", "ImageBC", "FilteredBC"]


@dataclass
class BCConfig:
    lr: float = 3e-4
    """AdamW learning rate."""
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    batch_size: int = 128
    augment_pad: int = 0
    """ImageBC only: random-shift augmentation in pixels; off by default (fixed camera, see
    PretrainConfig.augment_pad)."""
    correction_weight: float = 2.0
    """Extra weight on operator-corrected chunks: they are the most informative labels."""
    demos_only: bool = False
    """Train on the demonstrations only (the ``pretrain_more`` control)."""
    image_lr: float = 1e-3
    """FilteredBC with ``images``: peak learning rate of the whole VLA, decayed by a cosine to a tenth over each
    round (row 22 of docs/learning.md: 1e-3 cosine, batch 64)."""
    image_warmup: int = 0
    """ImageBC: linear learning-rate warm-up over the first updates of each round's schedule (each round's
    schedule restarts AdamW at ``image_lr``; its moments carry over from the round before)."""
    image_batch: int = 64
    """FilteredBC with ``images``: image batch (an image step costs ~75 ms at 64 on one core)."""
    image_ema: float = 0.0
    """ImageBC with rounds: keep an exponential moving average of the weights over each round's updates and end the
    round on it (:meth:`ImageBC.end_round`), so the published VLA and the next round's start are the average, not
    the last step; 0 = off. Measured over three learner seeds and 3000 held-out episodes: +1 to +2 points, not
    shown (docs/learning.md row 72): the round's cosine decay to a tenth already averages its last steps."""
    images: bool = True
    """FilteredBC: train the whole VLA on images, encoder included (the default), instead of the action expert on
    cached features of the frozen encoder (False). The head alone did not learn even from 400 perfect deployment
    episodes (1/30); the whole VLA did, given thousands of steps (docs/learning.md rows 19, 21 and 23)."""


class ImageBC:
    """Flow-matching BC of the whole VLA on image batches (pretraining)."""

    def __init__(self, model: FlowVLA, cfg: BCConfig | None = None) -> None:
        self.cfg = cfg or BCConfig()
        self.model = model
        self.opt = torch.optim.AdamW(model.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        self.sched: torch.optim.lr_scheduler.LRScheduler | None = None
        self._sched_left = 0
        self.ema: AveragedModel | None = None

    def begin_schedule(self, steps: int) -> None:
        """Cosine-decay the learning rate from ``cfg.lr`` to a tenth over the next ``steps`` updates, then hold;
        the first ``cfg.image_warmup`` of them ramp it up linearly."""
        for g in self.opt.param_groups:
            g["lr"] = g["initial_lr"] = self.cfg.lr
        warm, total = self.cfg.image_warmup, max(1, steps)

        def factor(k: int) -> float:  # the cosine below, times the warm-up ramp
            k = min(k, total)
            return min(1.0, (k + 1) / warm) * (0.1 + 0.45 * (1 + math.cos(math.pi * k / total)))

        if steps <= 0:
            self.sched = None
        elif warm > 0:
            self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, factor)
        else:  # without a warm-up: the scheduler the measured runs used, so they replay bit for bit
            self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=total, eta_min=self.cfg.lr * 0.1)
        self._sched_left = steps
        if self.cfg.image_ema > 0:  # each round's average starts from where the round starts
            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(self.cfg.image_ema),
                                     use_buffers=True)

    def end_round(self) -> bool:
        """Load the round's weight average into the model (once); True when there was one to load."""
        if self.ema is None:
            return False
        self.model.load_state_dict(self.ema.module.state_dict())
        self.ema = None
        return True

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
        if self.sched is not None and self._sched_left > 0:
            self.sched.step()
            self._sched_left -= 1
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.model.eval()
        return {"loss/actor": loss.item(), "grad_norm/actor": gn.item()}


def optimizer_tensors(opt: torch.optim.Optimizer, prefix: str) -> dict[str, torch.Tensor]:
    """An optimizer's per-parameter state as flat tensors (safetensors holds no nested dicts)."""
    return {f"{prefix}{i}.{k}": (v if torch.is_tensor(v) else torch.tensor(v)).detach().clone()
            for i, st in opt.state_dict()["state"].items() for k, v in st.items()}


def load_optimizer_tensors(opt: torch.optim.Optimizer, state: dict[str, torch.Tensor], prefix: str) -> None:
    """Inverse of :func:`optimizer_tensors`; a state without them (a version saved before they were) is left fresh."""
    per: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in state.items():
        if key.startswith(prefix):
            i, _, name = key[len(prefix):].partition(".")
            per.setdefault(int(i), {})[name] = v
    if not per:
        return
    params = [p for g in opt.param_groups for p in g["params"]]
    for i, st in per.items():
        moments = [v.shape for k, v in st.items() if k.startswith("exp_avg")]
        if i >= len(params) or any(m != params[i].shape for m in moments):
            raise ValueError(f"optimizer state for parameter {i} does not fit an optimizer of {len(params)} "
                             "parameters (saved by another learner configuration?)")
    sd = opt.state_dict()
    sd["state"] = per
    opt.load_state_dict(sd)


def bc_step(field: nn.Module, opt: torch.optim.Optimizer, batch, correction_weight: float,
            grad_clip: float | None) -> float:
    """One weighted flow-matching step of ``field`` on a feature batch; returns the loss."""
    w = 1.0 + (correction_weight - 1.0) * batch.intervention
    loss = flow_matching_loss(field, batch.obs, batch.act, weights=w)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(field.parameters(), grad_clip)
    opt.step()
    return float(loss.detach())


class FilteredBC(Algorithm):
    """Filtered BC of the deployed action expert on cached features, or of the whole VLA on images
    (``BCConfig.images``; then ``model`` is the deployed VLA, trained in place)."""

    def __init__(self, expert: nn.Module, obs_dim: int, act_dim: int, cfg: BCConfig | None = None,
                 model: FlowVLA | None = None) -> None:
        self.cfg = cfg or BCConfig()
        self.name = "pretrain_more" if self.cfg.demos_only else "bc"
        self.expert = expert
        self.image_bc: ImageBC | None = None
        if self.cfg.images:
            if model is None or model.expert is not expert:
                raise ValueError("BCConfig.images needs the deployed VLA whose action expert this is")
            self.image_bc = ImageBC(model, dataclasses.replace(self.cfg, lr=self.cfg.image_lr))
            self.trains_encoder = True
            self.needs_features = False
        else:
            self.opt = torch.optim.AdamW(expert.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

    def mask(self, buffer) -> np.ndarray:
        return buffer.source == SOURCE_EXPERT if self.cfg.demos_only else buffer.filtered_bc_mask()

    def update(self, buffer, rng: np.random.Generator) -> dict[str, float]:
        batch = self.cfg.image_batch if self.image_bc is not None else self.cfg.batch_size
        idx = buffer.sample_indices(batch, rng, buffer.cached_mask(self.name, self.mask))
        if self.image_bc is not None:
            return {"loss/actor_bc": self.image_bc.update(buffer.gather(idx))["loss/actor"]}
        self.expert.train()
        loss = bc_step(self.expert, self.opt, buffer.gather_features(idx), self.cfg.correction_weight,
                       self.cfg.grad_clip)
        self.expert.eval()
        return {"loss/actor_bc": loss}

    def on_round_start(self, updates: int = 0) -> None:
        if self.image_bc is not None:
            self.image_bc.begin_schedule(updates)

    def on_round_end(self, buffer, rng: np.random.Generator) -> dict[str, float]:
        if self.image_bc is not None and self.image_bc.end_round():
            return {"round/image_ema": self.cfg.image_ema}
        return {}

    def deployed(self) -> nn.Module:
        return self.expert

    def _opt(self) -> torch.optim.Optimizer:
        return self.image_bc.opt if self.image_bc is not None else self.opt

    def state_dict(self) -> dict[str, torch.Tensor]:
        # AdamW's moments carry over between rounds: saved, so a restarted learner continues as it would have
        return optimizer_tensors(self._opt(), "opt.")

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        load_optimizer_tensors(self._opt(), state, "opt.")
