"""The learner's RL algorithms on the VLA: a critic (DIVL or IQL) + a policy extractor (QAM or AWR).

``lwd`` (the default) = DIVL + QAM, as in the LWD paper; the baselines and ablations swap one part:
``iql_awr`` = IQL + AWR, ``lwd_no_divl`` = IQL + QAM, ``lwd_no_qam`` = DIVL + AWR.

How the pieces share the VLA (one encoder, three heads):
- the VLA's encoder + a *base* action expert ``v_base`` are trained by flow-matching BC on all the data (the
  behaviour flow; it starts as the pretrained expert and keeps learning as fleet data grows);
- the critic reads the encoder's features (detached) of the chunk's first and next observations;
- the *deployed* expert ``v_theta`` is fine-tuned by adjoint matching toward pi_base * exp(beta * Q) (QAM) or by
  advantage-weighted flow matching (AWR) on the same detached features.
The deployed checkpoint is the VLA with the shared encoder and ``v_theta``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from lwd.policy.flow import flow_matching_loss, sample_euler
from lwd.policy.model import FlowVLA
from lwd.rl.awr import AWR, AWRConfig
from lwd.rl.base import Algorithm, random_shift
from lwd.rl.dataset import Batch
from lwd.rl.divl import DIVL, DIVLConfig
from lwd.rl.iql import IQL, IQLConfig
from lwd.rl.nets import soft_update
from lwd.rl.qam import QAM, QAMConfig

__all__ = ["FleetRLConfig", "FleetRL", "VARIANTS"]

# algo name -> (critic, extractor)
VARIANTS = {"lwd": ("divl", "qam"), "iql_awr": ("iql", "awr"), "lwd_no_divl": ("iql", "qam"), "lwd_no_qam": ("divl", "awr")}


@dataclass
class FleetRLConfig:
    lr: float = 3e-4
    """Encoder + base BC learning rate."""
    actor_lr: float = 1e-4
    critic_lr: float = 3e-4
    augment_pad: int = 0
    """Random-shift augmentation in pixels; off by default (fixed camera, see PretrainConfig.augment_pad)."""
    correction_weight: float = 2.0
    """Weight of operator-corrected chunks in the base's BC loss."""
    beta: float = 10.0
    """QAM inverse temperature. Q is a discounted success probability in [0, 1], so useful tilts need beta ~ 10:
    a 0.2 gap in Q then weighs the better chunk e^2 ~ 7x more than the base policy does."""
    flow_steps: int = 10
    """K for QAM's memoryless sampler and adjoint."""
    adjoint_scheme: str = "mission"
    """'mission' = MISSION.md §5 exactly; 'next' = the exact discrete adjoint of each step (closer tilt on toys)."""
    actor_batch: int = 32
    """QAM's adjoint pass is ~10x a BC step: it runs on this many of each batch's states."""
    awr_beta: float = 10.0
    """AWR inverse temperature on advantages (same scale argument as beta)."""
    expectile: float = 0.8
    rho: float = 0.5
    """Critic pessimism (ensemble std) in the actor's Q."""
    num_bins: int = 51
    ema: float = 0.005
    gate_states: int = 128
    """States scored by the critic in the promotion gate."""
    gate_tolerance: float = 0.02
    """A candidate passes when its critic value is at least the deployed one's minus this."""


class FleetRL(Algorithm):
    def __init__(self, model: FlowVLA, cfg: FleetRLConfig | None = None, variant: str = "lwd") -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
        self.name = variant
        self.cfg = cfg = cfg or FleetRLConfig()
        self.critic_kind, self.extractor_kind = VARIANTS[variant]
        self.model = model
        mc = model.cfg
        self.base = copy.deepcopy(model.expert)
        encoder = [p for n, p in model.named_parameters() if not n.startswith("expert.")]
        self.bc_opt = torch.optim.AdamW(encoder + list(self.base.parameters()), lr=cfg.lr, weight_decay=1e-4)
        if self.critic_kind == "divl":
            self.critic = DIVL(mc.cond_dim, mc.action_dim, DIVLConfig(
                num_bins=cfg.num_bins, expectile=cfg.expectile, rho=cfg.rho, lr=cfg.critic_lr, target_ema=cfg.ema))
        else:
            self.critic = IQL(mc.cond_dim, mc.action_dim, IQLConfig(expectile=cfg.expectile, rho=cfg.rho,
                                                                     lr=cfg.critic_lr, target_ema=cfg.ema))
        if self.extractor_kind == "qam":
            self.extractor = QAM(self.base, model.expert, self.critic.q_pessimistic, QAMConfig(
                beta=cfg.beta, steps=cfg.flow_steps, lr=cfg.actor_lr, bc_weight=0.0, ema=cfg.ema,
                adjoint_scheme=cfg.adjoint_scheme), act_dim=mc.action_dim)
        else:
            self.extractor = AWR(model.expert, self.critic, AWRConfig(beta=cfg.awr_beta, lr=cfg.actor_lr),
                                 act_dim=mc.action_dim)
        self.deployed = copy.deepcopy(model).eval()

    def update(self, batch: Batch) -> dict[str, float]:
        cfg = self.cfg
        self.model.train()
        # 1. Behaviour flow + encoder: flow-matching BC on all data (corrections weighted up).
        img = random_shift(batch.image, cfg.augment_pad) if cfg.augment_pad else batch.image
        cond = self.model.encode(img, batch.qpos, batch.tokens)
        w = 1.0 + (cfg.correction_weight - 1.0) * batch.intervention
        bc = flow_matching_loss(self.base, cond, batch.act, weights=w)
        self.bc_opt.zero_grad(set_to_none=True)
        bc.backward()
        torch.nn.utils.clip_grad_norm_(self.bc_opt.param_groups[0]["params"], 1.0)
        self.bc_opt.step()
        if self.extractor_kind == "qam":
            soft_update(self.extractor.base_target, self.base, cfg.ema)
        # 2. Critic on detached features of s and s' (un-augmented features reuse step 1's forward pass).
        with torch.no_grad():
            obs = cond.detach() if img is batch.image else self.model.encode(batch.image, batch.qpos, batch.tokens)
            nxt = self.model.encode(batch.next_image, batch.next_qpos, batch.next_tokens)
        stats = {f"critic/{k}": v for k, v in self.critic.update({
            "obs": obs, "act": batch.act, "rew": batch.rew, "next_obs": nxt, "done": batch.done,
            "discount": batch.discount}).items()}
        # 3. Policy extraction on the deployed expert.
        if self.extractor_kind == "qam":
            n = min(cfg.actor_batch, len(obs))
            actor = self.extractor.update(obs[:n], batch.act[:n])
        else:
            actor = self.extractor.update(obs, batch.act)
        stats.update({f"actor/{k}": v for k, v in actor.items()})
        stats["loss/base_bc"] = bc.item()
        self.model.eval()
        return stats

    def actor(self) -> FlowVLA:
        return self.model

    @torch.no_grad()
    def gate(self, buffer, rng: np.random.Generator | None = None) -> tuple[bool, dict[str, float]]:
        """Critic-scored promotion: the candidate's chunks vs the deployed policy's, on the same (recent) states.

        Both are scored by the current critic on the current encoder's features, deterministic sampling (zero noise).
        """
        rng = rng or np.random.default_rng(0)
        n = min(self.cfg.gate_states, len(buffer))
        b = buffer.gather(buffer.sample_indices(n, rng))
        mc = self.model.cfg
        noise = torch.zeros(n, mc.action_dim)
        obs = self.model.encode(b.image, b.qpos, b.tokens)
        a_new = sample_euler(self.model.expert, obs, mc.action_dim, mc.flow_steps, noise=noise)
        dep_obs = self.deployed.encode(b.image, b.qpos, b.tokens)
        a_old = sample_euler(self.deployed.expert, dep_obs, mc.action_dim, mc.flow_steps, noise=noise)
        q_new = self.critic.q_pessimistic(obs, a_new).mean().item()
        q_old = self.critic.q_pessimistic(obs, a_old).mean().item()
        q_data = self.critic.q_pessimistic(obs, b.act).mean().item()
        accept = q_new >= q_old - self.cfg.gate_tolerance
        return accept, {"q_candidate": q_new, "q_deployed": q_old, "q_dataset": q_data, "states": float(n)}

    def on_published(self) -> None:
        self.deployed = copy.deepcopy(self.model).eval()

    def extra_state(self) -> dict[str, torch.Tensor]:
        out = {f"base.{k}": v for k, v in self.base.state_dict().items()}
        out.update({f"critic.{k}": v for k, v in self.critic.state_dict().items()})
        return out

    def load_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        self.base.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("base.")})
        self.critic.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("critic.")})
        if self.extractor_kind == "qam":
            self.extractor.base_target.load_state_dict(self.base.state_dict())
