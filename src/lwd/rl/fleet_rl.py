"""The learner's RL algorithms on the VLA: a critic (DIVL or IQL) + a policy extractor (QAM or AWR).

``lwd`` (the default) = DIVL + QAM, as in the LWD paper; the baselines and ablations swap one part:
``iql_awr`` = IQL + AWR, ``lwd_no_divl`` = IQL + QAM, ``lwd_no_qam`` = DIVL + AWR.

The critics train on cached features (a critic update costs milliseconds, so the critic gets the thousands of updates
per round it needs to fit); by default (``images``) the policies are whole VLAs trained on images:

- the critic learns Q(s, a) of H-step chunks and an implicit V(s) from all fleet data (sparse success reward);
- QAM: a *reference* VLA is cloned on the filtered data (demos, operator corrections, successful non-overruled
  steps: the behaviour worth imitating); at each round's end the deployed VLA restarts from it and its action
  expert ``v_theta`` is tilted by adjoint matching toward pi_ref(a|s) exp(beta Q(s, a)), encoder held;
- AWR: the same, with advantage-weighted flow matching on all data as the tilt.

With ``images=False`` everything trains on cached features of the deployed VLA's frozen encoder (the reference and
deployed action experts too), so the deployed policy cannot drift through a shared encoder.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lwd.policy.flow import sample_euler
from lwd.rl.awr import AWR, AWRConfig
from lwd.rl.base import Algorithm, ReplayedStreams
from lwd.rl.bc import bc_step, load_optimizer_tensors, optimizer_tensors
from lwd.rl.divl import DIVL, DIVLConfig
from lwd.rl.iql import IQL, IQLConfig
from lwd.rl.nets import soft_update
from lwd.rl.qam import QAM, QAMConfig

__all__ = ["FleetRLConfig", "FleetRL", "VARIANTS"]

# algo name -> (critic, extractor)
VARIANTS = {"lwd": ("divl", "qam"), "iql_awr": ("iql", "awr"), "lwd_no_divl": ("iql", "qam"),
            "lwd_no_qam": ("divl", "awr")}


@dataclass
class FleetRLConfig:
    lr: float = 3e-4
    """Reference flow (v_base) BC learning rate."""
    actor_lr: float = 1e-4
    critic_lr: float = 3e-4
    batch_size: int = 128
    """Reference-flow BC batch (filtered data)."""
    critic_batch: int = 128
    """Critic batch (all data)."""
    actor_batch: int = 32
    """States per QAM step (its adjoint pass costs ~K forward/backward passes of the expert)."""
    actor_every: int = 4
    """One actor (QAM/AWR) step every N learner updates (delayed policy updates, as in TD3); the critic and the
    reference flow step every update. A QAM step costs ~15 BC steps (K-step trajectory, adjoint, K-fold loss)."""
    correction_weight: float = 2.0
    """Weight of operator-corrected chunks in the reference flow's BC loss."""
    beta: float = 10.0
    """QAM inverse temperature. Q is a discounted success probability in [0, 1], so useful tilts need beta ~ 10:
    a 0.2 gap in Q then weighs the better chunk e^2 ~ 7x more than the reference policy does."""
    flow_steps: int = 10
    """K for QAM's memoryless sampler and adjoint."""
    adjoint_scheme: str = "next"
    """'next' = the exact discrete adjoint of each sampling step; 'mission' = MISSION.md §5's lean adjoint (base at
    t_k + h). The deployed experts predict the clean chunk, v = (x1_hat - x) / (1 - t), whose Jacobian in x is
    ~ -1/(1 - t): the time-shifted lean adjoint then flips sign near t = 1 and tilts *away* from high Q (on v0 with a
    known quadratic Q: joint-0 shift -0.11 for a +0.3 target with 'mission', +0.13 with 'next';
    test_qam_tilts_an_x1_output_expert_toward_higher_q). Every lwd result before this default tilted the wrong way."""
    awr_beta: float = 10.0
    """AWR inverse temperature on advantages (same scale argument as beta)."""
    expectile: float = 0.8
    rho: float = 0.5
    """Critic pessimism (ensemble std) in the actor's Q."""
    num_bins: int = 51
    ema: float = 0.005
    sync_actor: bool = True
    """QAM: restart the deployed field from the reference flow at every round, then tilt it by adjoint matching.
    QAM's target is pi_base exp(beta Q): the reference absorbs the round's demonstrations, corrections and successes
    by BC, and the adjoint-matching steps only add the tilt. Without the restart the deployed field followed a
    moving reference through ~375 small adjoint steps per round and moved 0.02 rad (docs/learning.md)."""
    images: bool = True
    """Train the whole VLA, encoder included (the default; False: the action expert on frozen features). The head
    alone did not learn from 400 perfect deployment episodes, the whole VLA did (docs/learning.md rows 19, 21, 23).
    The reference policy is then a copy of the VLA trained by filtered image BC every update; the critic reads cached
    features (``critic_features``); at the end of each round the deployed VLA restarts from the reference and its
    action expert is tilted by ``tilt_steps`` extractor steps with the encoder held (QAM: toward pi_ref exp(beta Q))."""
    image_lr: float = 1e-3
    """images: peak learning rate of the reference VLA, cosine-decayed to a tenth over each round (as bc's)."""
    image_batch: int = 64
    image_ema: float = 0.0
    """images: the reference VLA ends each round on its weights' moving average (``BCConfig.image_ema``)."""
    tilt_steps: int = 300
    """images: extractor (QAM / AWR) steps at the end of each round, ``actor_batch`` states each."""
    critic_features: str = "reference"
    """images: what the critic reads (the default "reference" measured best: docs/learning.md rows 25-28).
    "frozen": features of the VLA the learner started from (v0 hardly encodes where the item is, docs/learning.md
    row 15, so Q's action gradient cannot aim a grasp). "reference": at each round's end every stored step is
    re-encoded by the round's reference VLA (the encoder the deployed policy will use) and the critic is refit on
    those features for ``critic_refit`` updates before the tilt."""
    tilt_guard: bool = True
    """images: keep the tilted expert only if the critic rates its chunks above the reference's on 256 stored states
    (deterministic sampling, as deployed); else publish the reference. Without it, a tilt along a frozen-feature
    critic's action gradient took pick_place from 7/30 to 0/30 while the critic itself rated it 0.2 lower."""
    critic_refit: int = 2000
    """images + critic_features="reference": critic-only updates after each re-encoding (~10 ms each)."""


class FleetRL(Algorithm):
    def __init__(self, expert: nn.Module, obs_dim: int, act_dim: int, cfg: FleetRLConfig | None = None,
                 variant: str = "lwd", model: nn.Module | None = None) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
        self.name = variant
        self.cfg = cfg = cfg or FleetRLConfig()
        self.critic_kind, self.extractor_kind = VARIANTS[variant]
        self.expert = expert
        self.model = model
        self.ref_bc = None
        if cfg.images:
            from lwd.rl.bc import BCConfig, ImageBC

            if model is None or model.expert is not expert:
                raise ValueError("FleetRLConfig.images needs the deployed VLA whose action expert this is")
            ref = copy.deepcopy(model).requires_grad_(True)
            self.ref_bc = ImageBC(ref, BCConfig(lr=cfg.image_lr, correction_weight=cfg.correction_weight,
                                                image_ema=cfg.image_ema))
            self._ref_streams = ReplayedStreams()  # the reference draws what bc draws: paired comparisons
            self.trains_encoder = True
        if cfg.critic_features not in ("frozen", "reference"):
            raise ValueError(f"critic_features must be 'frozen' or 'reference', got {cfg.critic_features!r}")
        self._feature_model: nn.Module | None = None
        if self.critic_kind == "divl":
            self.critic = DIVL(obs_dim, act_dim, DIVLConfig(
                num_bins=cfg.num_bins, expectile=cfg.expectile, rho=cfg.rho, lr=cfg.critic_lr, target_ema=cfg.ema))
        else:
            self.critic = IQL(obs_dim, act_dim, IQLConfig(expectile=cfg.expectile, rho=cfg.rho, lr=cfg.critic_lr,
                                                          target_ema=cfg.ema))
        self.base: nn.Module | None = None
        if self.extractor_kind == "qam":
            if self.ref_bc is not None:  # the reference VLA's expert, trained by ImageBC
                self.base = self.ref_bc.model.expert
            else:
                self.base = copy.deepcopy(expert)
                self.base_opt = torch.optim.AdamW(self.base.parameters(), lr=cfg.lr, weight_decay=1e-4)
            self.extractor = QAM(self.base, expert, self.critic.q_pessimistic, QAMConfig(
                beta=cfg.beta, steps=cfg.flow_steps, lr=cfg.actor_lr, bc_weight=0.0, ema=cfg.ema,
                adjoint_scheme=cfg.adjoint_scheme), act_dim=act_dim)
        else:
            self.extractor = AWR(expert, self.critic, AWRConfig(beta=cfg.awr_beta, lr=cfg.actor_lr), act_dim=act_dim)
        self.num_updates = 0
        self._tilted = False

    def _critic_step(self, buffer, rng: np.random.Generator):
        b = buffer.gather_features(buffer.sample_indices(self.cfg.critic_batch, rng))
        stats = {f"critic/{k}": v for k, v in self.critic.update({
            "obs": b.obs, "act": b.act, "rew": b.rew, "next_obs": b.next_obs, "done": b.done,
            "discount": b.discount}).items()}
        return b, stats

    def feature_encoder(self) -> nn.Module | None:
        return self._feature_model

    def update(self, buffer, rng: np.random.Generator) -> dict[str, float]:
        cfg = self.cfg
        ref_rng = self._ref_streams.follow(rng) if self.ref_bc is not None else None
        b, stats = self._critic_step(buffer, rng)
        if self.ref_bc is not None:  # the whole reference VLA on images; the tilt comes at the round's end
            idx = buffer.sample_indices(cfg.image_batch, ref_rng,
                                        buffer.cached_mask("filtered_bc", lambda buf: buf.filtered_bc_mask()))
            with self._ref_streams.torch_stream():
                stats["loss/base_bc"] = self.ref_bc.update(buffer.gather(idx))["loss/actor"]
            self.num_updates += 1
            return stats
        if self.base is not None:
            fb = buffer.gather_features(buffer.sample_indices(
                cfg.batch_size, rng, buffer.cached_mask("filtered_bc", lambda buf: buf.filtered_bc_mask())))
            self.base.train()
            stats["loss/base_bc"] = bc_step(self.base, self.base_opt, fb, cfg.correction_weight, 1.0)
            self.base.eval()
            soft_update(self.extractor.base_target, self.base, cfg.ema)
        if self.num_updates % cfg.actor_every == 0:
            self.expert.train()
            if self.extractor_kind == "qam":
                n = min(cfg.actor_batch, len(b.obs))
                actor = self.extractor.update(b.obs[:n], b.act[:n])
            else:
                actor = self.extractor.update(b.obs, b.act)
            self.expert.eval()
            stats.update({f"actor/{k}": v for k, v in actor.items()})
        self.num_updates += 1
        return stats

    def on_round_start(self, updates: int = 0) -> None:
        if self.ref_bc is not None:
            self.ref_bc.begin_schedule(updates)
        elif self.base is not None and self.cfg.sync_actor:
            self.expert.load_state_dict(self.extractor.base_target.state_dict())
            self.extractor.actor_opt.state.clear()

    def on_round_end(self, buffer, rng: np.random.Generator) -> dict[str, float]:
        """images: the deployed VLA <- the reference VLA, then the extractor tilts its action expert (encoder held);
        the critic reads the same states through its frozen features."""
        if self.ref_bc is None:
            return {}
        cfg = self.cfg
        self.ref_bc.end_round()
        self.model.load_state_dict(self.ref_bc.model.state_dict())
        agg: dict[str, list[float]] = {}
        perf: dict[str, float] = {}
        if cfg.critic_features == "reference":
            t0 = time.perf_counter()
            self._feature_model = copy.deepcopy(self.model).eval().requires_grad_(False)
            buffer.encode_features(self._feature_model.encode, refresh=True)
            t1 = time.perf_counter()
            for _ in range(cfg.critic_refit):
                for k, v in self._critic_step(buffer, rng)[1].items():
                    agg.setdefault(f"refit_{k}", []).append(v)
            perf.update({"perf/encode_s": t1 - t0, "perf/refit_s": time.perf_counter() - t1})
        t0 = time.perf_counter()
        if self.extractor_kind == "qam":
            self.extractor.base_target.load_state_dict(self.ref_bc.model.expert.state_dict())
            self.extractor.actor_opt.state.clear()
        else:
            self.extractor.opt.state.clear()
        self.expert.train()
        for _ in range(cfg.tilt_steps):
            idx = buffer.sample_indices(cfg.actor_batch, rng)
            b = buffer.gather(idx)
            with torch.no_grad():
                obs = self.model.encode(b.image, b.qpos, b.tokens)
            for k, v in self.extractor.update(obs, b.act, critic_obs=buffer.features(idx)).items():
                agg.setdefault(f"actor/{k}", []).append(v)
        self.expert.eval()
        perf["perf/tilt_s"] = time.perf_counter() - t0
        out = {k: float(np.mean(v)) for k, v in agg.items()} | perf
        idx = buffer.sample_indices(256, np.random.default_rng(12345))
        b = buffer.gather(idx)
        with torch.no_grad():
            obs = self.model.encode(b.image, b.qpos, b.tokens)
            noise = torch.zeros(len(idx), self.model.cfg.action_dim)
            q_tilt, q_ref = (float(self.q_value(buffer.features(idx), sample_euler(
                f, obs, self.model.cfg.action_dim, self.model.cfg.flow_steps, noise=noise)).mean())
                for f in (self.expert, self.ref_bc.model.expert))
        keep = q_tilt >= q_ref or not cfg.tilt_guard
        if not keep:
            self.expert.load_state_dict(self.ref_bc.model.expert.state_dict())
        self._tilted = keep and cfg.tilt_steps > 0
        out.update({"actor/tilt_q": q_tilt, "actor/tilt_q_ref": q_ref, "actor/tilt_kept": float(keep)})
        return out

    def deployed(self) -> nn.Module:
        return self.expert

    def alternative(self) -> nn.Module | None:
        """images: after a kept tilt, the untilted reference expert (the critic rates its own tilt higher by
        construction; only rollouts can say whether the tilt helps)."""
        return self.ref_bc.model.expert if self.ref_bc is not None and self._tilted else None

    def scorer_spec(self) -> dict | None:
        """Only once the critic was refit on the reference VLA's features (each round's end): the published VLA
        keeps that encoder, so the critic then reads exactly what the deployed policy encodes."""
        if self._feature_model is None:
            return None
        from lwd.rl.selection import scorer_spec

        return scorer_spec(self.critic_kind, self.critic)

    def reference(self) -> nn.Module | None:
        if self.ref_bc is not None:
            return self.ref_bc.model.expert
        return self.extractor.base_target if self.base is not None else None

    @torch.no_grad()
    def q_value(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        return self.critic.q(obs, act).mean(0)

    @torch.no_grad()
    def v_value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic.v(obs)

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers whose moments carry over between rounds (the image-mode tilt clears its own each round)."""
        opts = {"opt.q.": self.critic.q_opt, "opt.v.": self.critic.v_opt}
        if self.ref_bc is not None:
            opts["opt.ref."] = self.ref_bc.opt
            return opts
        if self.base is not None:
            opts["opt.base."] = self.base_opt
        opts["opt.actor."] = self.extractor.actor_opt if self.extractor_kind == "qam" else self.extractor.opt
        return opts

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {f"critic.{k}": v for k, v in self.critic.state_dict().items()}
        # the moments and the actor's every-k-th-update phase, so a restarted learner continues as it would have
        for prefix, opt in self._optimizers().items():
            out.update(optimizer_tensors(opt, prefix))
        out["num_updates"] = torch.tensor(self.num_updates)
        if self.ref_bc is not None:
            out.update({f"ref.{k}": v for k, v in self.ref_bc.model.state_dict().items()})
            return out
        if self.base is not None:
            out.update({f"base.{k}": v for k, v in self.base.state_dict().items()})
            out.update({f"base_target.{k}": v for k, v in self.extractor.base_target.state_dict().items()})
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

        try:
            self.critic.load_state_dict(part("critic."))
            if self.ref_bc is not None:
                if part("ref."):  # a state saved without image mode keeps the deployed VLA as the reference
                    self.ref_bc.model.load_state_dict(part("ref."))
                    if self.cfg.critic_features == "reference":  # the view the saved critic was refit on
                        self._feature_model = copy.deepcopy(self.ref_bc.model).eval().requires_grad_(False)
            elif self.base is not None:
                self.base.load_state_dict(part("base."))
                self.extractor.base_target.load_state_dict(part("base_target.") or part("base."))
            for prefix, opt in self._optimizers().items():
                load_optimizer_tensors(opt, state, prefix)
            if "num_updates" in state:
                self.num_updates = int(state["num_updates"])
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"{self.name}: learner state does not fit: {e}") from None
