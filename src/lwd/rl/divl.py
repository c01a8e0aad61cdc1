r"""DIVL: Distributional Implicit Value Learning (the lwd critic).

The paper names DIVL but publishes no equations; this module *is* the definition used by lwd.

Setting
-------
Chunk-level MDP: ``s`` = observation features at the start of a chunk, ``a`` = the flattened normalized action chunk,
``r`` = sparse success reward (0/1), ``discount`` = gamma^H supplied per transition by the caller, ``done`` = 1 when the
chunk ends the episode (no bootstrap). Data mixes demonstrations, autonomous rollouts of many policy versions and
human interventions, with an optional per-transition ``weight``.

Objective (exactly what ``DIVL.update`` minimises)
--------------------------------------------------
Support: ``num_bins`` = M bins of equal width w on [v_min, v_max], centres z_1..z_M. Critic: an ensemble of E
categorical heads p_e(. | s, a) = softmax(f_e(s, a)); its mean ``Q_e(s, a) = sum_i p_e(i | s, a) z_i``. A scalar
value net V_psi(s). A Polyak (EMA) copy f_bar of the critic.

1. TD target (no action is ever sampled):   y = r + discount * (1 - done) * V_psi(s')                (stop-grad)
2. HL-Gauss projection (Imani & White 2018; Farebrother et al. 2024):
       P_y(i) = [Phi((u_i - y)/sigma) - Phi((l_i - y)/sigma)] / [Phi((v_max - y)/sigma) - Phi((v_min - y)/sigma)],
   with [l_i, u_i] bin i's edges and sigma = ``sigma_ratio`` * w.
3. Critic loss:   L_Q = sum_e  E_D[ weight * ( - sum_i P_y(i) log p_e(i | s, a) ) ] / E_D[weight]
4. Value loss (implicit: over the *dataset's* actions only):
       q_bar(s, a) = mean_e Q_bar_e(s, a) - value_rho * std_e Q_bar_e(s, a)        (EMA critic, stop-grad)
       u = q_bar(s, a) - V_psi(s),   L_V = E_D[ weight * |tau - 1(u < 0)| * u^2 ] / E_D[weight]
5. EMA: f_bar <- (1 - target_ema) f_bar + target_ema f.
The actor reads ``q_pessimistic(s, a) = mean_e Q_e(s, a) - rho * std_e Q_e(s, a)``; ``advantage(s, a)`` = q_bar - V.

Why each choice
---------------
* Distributional (categorical + HL-Gauss, trained by cross-entropy): returns of sparse 0/1 success are bounded
  and often bimodal (the same state succeeds under a human correction and fails under an early policy version).
  A classification loss has scale-free, bounded gradients, does not let rare large TD errors dominate (the failure
  mode of MSE regression on mixed-quality data), and the HL-Gauss smoothing spreads the target over neighbouring bins
  so that the mean stays unbiased (the support is padded beyond [0, 1] by default so that targets at 0 or 1 are not
  truncated) while giving a richer, better-conditioned learning signal ("Stop Regressing", Farebrother et al. 2024).
  In expectation the fixed point of the categorical mean is the scalar TD fixed point (tested against ``iql.py``).
* Implicit value (expectile over dataset actions, IQL-style): V(s) is an upper expectile of Q(s, a) over the actions
  *present in the data* at s, so tau -> 1 recovers the best in-support action's value and tau = 0.5 the behaviour
  value. The target never evaluates the critic at a policy-sampled action, so there is no extrapolation error from
  out-of-distribution chunks — essential with 140-dim chunks and a few hundred episodes.
* Expectile over the critic's *mean* (not over samples of the return distribution): an expectile over return samples
  would mix aleatoric outcome luck with the choice of action — with tau -> 1 any action that *sometimes* succeeds
  would look like a sure success (V -> 1 for a 50% action). Taking the expectile of the per-action mean removes the
  aleatoric spread, so the implicit maximum is over actions only (tested on a stochastic bandit). The distribution is
  still what the critic learns from (item 3).
* Ensemble + pessimism: the ensemble spread is an epistemic signal; it is largest on rarely seen actions (a single
  human correction, a new policy version's first rollouts). ``value_rho`` keeps the implicit max from latching onto
  a lucky under-sampled action; ``rho`` makes the actor conservative where the critic is unsure.
* Mixed human/autonomous data and many policy versions: the TD target r + gamma^H V(s') is independent of which
  policy produced (s, a); the behaviour mixture only defines the support over which the expectile maximises, so no
  behaviour likelihoods or importance weights are needed. Bad autonomous actions lower Q(s, a) for those actions but
  do not drag V(s) down (tau > 0.5), good human interventions raise it. ``weight`` allows e.g. up-weighting
  interventions without changing the objective's fixed point structure.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from lwd.rl.nets import EnsembleMLP, mlp, soft_update

__all__ = ["DIVLConfig", "DIVL", "hl_gauss_probs", "expectile_loss", "ImplicitCritic", "Batch"]

Batch = dict  # keys: obs [B,O], act [B,A], rew [B], next_obs [B,O], done [B], discount [B], optional weight [B]


def expectile_loss(u: torch.Tensor, tau: float, weight: torch.Tensor | None = None) -> torch.Tensor:
    """``E |tau - 1(u < 0)| * u^2`` (weighted mean over the batch)."""
    per = torch.abs(tau - (u < 0).to(u.dtype)) * u.pow(2)
    return _wmean(per, weight)


def _wmean(x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    if weight is None:
        return x.mean()
    return (x * weight).sum() / weight.sum().clamp_min(1e-8)


def hl_gauss_probs(y: torch.Tensor, edges: torch.Tensor, sigma: float) -> torch.Tensor:
    """HL-Gauss projection of scalar targets y [B] onto bins with ``edges`` [M+1]: [B, M] (rows sum to 1)."""
    cdf = torch.special.ndtr((edges.view(1, -1) - y.view(-1, 1)) / sigma)
    mass = cdf[:, 1:] - cdf[:, :-1]
    return mass / (cdf[:, -1:] - cdf[:, :1]).clamp_min(1e-12)


class ImplicitCritic(nn.Module):
    """Shared machinery of DIVL and the scalar IQL critic: ensemble Q, implicit V (expectile), EMA target.

    Subclasses implement ``_members(obs, act, target) -> [E, B]`` (per-member Q means) and ``_critic_loss``.
    """

    def __init__(self, obs_dim: int, act_dim: int, cfg) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.cfg = obs_dim, act_dim, cfg
        self.value = mlp(obs_dim, 1, tuple(cfg.hidden), layer_norm=cfg.layer_norm)
        self.critic = EnsembleMLP(
            obs_dim + act_dim, self._out_dim(), tuple(cfg.hidden), cfg.ensemble_size, layer_norm=cfg.layer_norm
        )
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.q_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.lr)
        self.v_opt = torch.optim.Adam(self.value.parameters(), lr=cfg.lr)
        self.num_updates = 0

    # ---- to implement -------------------------------------------------------------------------
    def _out_dim(self) -> int:
        raise NotImplementedError

    def _members(self, obs: torch.Tensor, act: torch.Tensor, target: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def _critic_loss(self, obs, act, y, weight) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    # ---- public API ---------------------------------------------------------------------------
    def v(self, obs: torch.Tensor) -> torch.Tensor:
        """Implicit state value V(s): [B]."""
        return self.value(obs).squeeze(-1)

    def q(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Per-member Q means [E, B] (online critic)."""
        return self._members(obs, act, target=False)

    def q_pessimistic(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Ensemble mean - rho * ensemble std: [B] (the actor's objective)."""
        return _pessimistic(self.q(obs, act), self.cfg.rho)

    def advantage(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """q_bar(s, a) - V(s) with the same q_bar that V was fitted to (EMA critic, value_rho): [B]."""
        return _pessimistic(self._members(obs, act, target=True), self.cfg.value_rho) - self.v(obs)

    def update(self, batch: Batch) -> dict[str, float]:
        cfg = self.cfg
        obs, act = batch["obs"], batch["act"]
        rew, next_obs = batch["rew"].reshape(-1), batch["next_obs"]
        done, disc = batch["done"].reshape(-1), batch["discount"].reshape(-1)
        weight = batch.get("weight")
        if weight is not None:
            weight = weight.reshape(-1)

        # Critic: TD toward r + discount * (1 - done) * V(s') — only dataset transitions, no action sampling.
        with torch.no_grad():
            v_next = self.v(next_obs)
            y = rew + disc * (1.0 - done) * v_next
        q_loss, q_stats = self._critic_loss(obs, act, y, weight)
        self.q_opt.zero_grad(set_to_none=True)
        q_loss.backward()
        q_gn = _clip(self.critic.parameters(), cfg.grad_clip)
        self.q_opt.step()

        # Value: expectile of the (pessimistic) EMA-critic mean over the dataset's actions.
        with torch.no_grad():
            qm = self._members(obs, act, target=True)
            q_bar = _pessimistic(qm, cfg.value_rho)
        v = self.v(obs)
        u = q_bar - v
        v_loss = expectile_loss(u, cfg.expectile, weight)
        self.v_opt.zero_grad(set_to_none=True)
        v_loss.backward()
        _clip(self.value.parameters(), cfg.grad_clip)
        self.v_opt.step()

        soft_update(self.target_critic, self.critic, cfg.target_ema)
        self.num_updates += 1
        stats = {
            "critic_loss": float(q_loss.detach()),
            "value_loss": float(v_loss.detach()),
            "q_mean": float(qm.mean()),
            "q_std": float(qm.std(0, unbiased=False).mean()) if qm.shape[0] > 1 else 0.0,
            "v_mean": float(v.detach().mean()),
            "adv_mean": float(u.detach().mean()),
            "td_target_mean": float(y.mean()),
            "critic_grad_norm": q_gn,
        }
        stats.update(q_stats)
        return stats


def _pessimistic(qm: torch.Tensor, rho: float) -> torch.Tensor:
    if qm.shape[0] == 1 or rho == 0.0:
        return qm.mean(0)
    return qm.mean(0) - rho * qm.std(0, unbiased=False)


def _clip(params, max_norm: float | None) -> float:
    params = [p for p in params if p.grad is not None]
    if max_norm is None or max_norm <= 0:
        return float(torch.sqrt(sum((p.grad.detach() ** 2).sum() for p in params))) if params else 0.0
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm))


@dataclass
class DIVLConfig:
    num_bins: int = 51
    v_min: float = -0.25  # returns of sparse 0/1 success live in [0, 1]; padding keeps HL-Gauss targets untruncated
    v_max: float = 1.25
    sigma_ratio: float = 0.75  # HL-Gauss sigma as a multiple of the bin width
    expectile: float = 0.8  # tau
    ensemble_size: int = 2
    rho: float = 0.5  # pessimism of q_pessimistic (actor)
    value_rho: float = 0.0  # pessimism of the V target (implicit max over in-support actions)
    target_ema: float = 0.005
    lr: float = 3e-4
    hidden: tuple[int, ...] = field(default_factory=lambda: (256, 256))
    layer_norm: bool = True
    grad_clip: float | None = 10.0


class DIVL(ImplicitCritic):
    """Distributional implicit critic; see the module docstring for the exact objective."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: DIVLConfig | None = None) -> None:
        cfg = cfg or DIVLConfig()
        super().__init__(obs_dim, act_dim, cfg)
        edges = torch.linspace(cfg.v_min, cfg.v_max, cfg.num_bins + 1)
        self.register_buffer("edges", edges)
        self.register_buffer("centers", 0.5 * (edges[1:] + edges[:-1]))
        self.sigma = cfg.sigma_ratio * (cfg.v_max - cfg.v_min) / cfg.num_bins

    def _out_dim(self) -> int:
        return self.cfg.num_bins

    def logits(self, obs: torch.Tensor, act: torch.Tensor, target: bool = False) -> torch.Tensor:
        """Per-member categorical logits [E, B, M]."""
        net = self.target_critic if target else self.critic
        return net(torch.cat([obs, act], dim=-1))

    def q_dist(self, obs: torch.Tensor, act: torch.Tensor, target: bool = False) -> torch.Tensor:
        """Per-member return distributions over ``self.centers``: [E, B, M]."""
        return torch.softmax(self.logits(obs, act, target), dim=-1)

    def _members(self, obs, act, target=False):
        return self.q_dist(obs, act, target) @ self.centers

    def _critic_loss(self, obs, act, y, weight):
        target = hl_gauss_probs(y.clamp(self.cfg.v_min, self.cfg.v_max), self.edges, self.sigma)  # [B, M]
        logp = torch.log_softmax(self.logits(obs, act), dim=-1)  # [E, B, M]
        ce = -(target.unsqueeze(0) * logp).sum(-1)  # [E, B]
        loss = sum(_wmean(ce[e], weight) for e in range(ce.shape[0]))
        ent = -(logp.exp() * logp).sum(-1).mean()
        return loss, {"q_entropy": float(ent.detach()), "y_clipped_frac": float(
            ((y < self.cfg.v_min) | (y > self.cfg.v_max)).float().mean())}

    def __repr__(self) -> str:  # keep nn.Module's repr short in logs
        c = self.cfg
        return (f"DIVL(obs={self.obs_dim}, act={self.act_dim}, bins={c.num_bins}, tau={c.expectile}, "
                f"E={c.ensemble_size})")

