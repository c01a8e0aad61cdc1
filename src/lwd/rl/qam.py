r"""QAM: Q-learning via Adjoint Matching (Li & Levine, arXiv 2601.14234; Domingo-Enrich et al., arXiv 2409.08861).

Time convention: ``lwd.policy.flow.FlowTime`` — t = 0 is noise, t = 1 is the action; x_t = (1 - t) x0 + t x1.

Two velocity fields ``v(cond, x, t)``: ``base`` (the behaviour flow, trained by flow-matching BC on all the data;
its EMA copy ``base_target`` is the reference field of the tilt) and ``actor`` (v_theta, deployed). The target
policy is pi(a|s) ∝ pi_base(a|s) exp(beta Q(s, a)). With K steps, h = 1/K, t_k = k h:

* memoryless sampling (no grad), sigma(t) = sqrt(2 (1 - t + h) / (t + h)):
      x_{k+1} = x_k + h (2 v_theta(x_k, t_k) - x_k / (t_k + h)) + sqrt(h) sigma(t_k) eps_k     for k < K - 1
      x_K     = x_{K-1} + h v_base_target(x_{K-1}, t_{K-1})                                     (plain ODE step)
* terminal adjoint  a_K = -beta grad_a Qbar(s, x_K)   (at clip(x_K), straight-through, when ``clip_terminal``)
* lean adjoint, k = K-1 ... 0 (base field only, no gradient into it):
      a_k = a_{k+1} + h VJP_x[2 v_base_target(x, t_k + dt) - x / (t_k + h)](a_{k+1})  at x = x_k,
  with dt = h (``adjoint_time_shift=True``, as written in MISSION.md §5 and in the QAM reference code) or dt = 0
  (the exact discrete adjoint of the base memoryless Euler map x_k -> x_{k+1}).
* loss  L_AM = mean_batch sum_{k=0}^{K-1}
                || (2/sigma_k) (v_theta(x_k, t_k) - v_base_target(x_k, t_k)) + sigma_k a_k ||^2
  (``residual``: the actor outputs v_theta - v_base_target directly and is zero-initialised by the caller),
  plus ``bc_weight`` * flow-matching BC loss of ``base`` on the dataset actions (a separate optimizer).

Adjoint indexing (``QAMConfig.adjoint_scheme``). "mission" (default) is the scheme above, as in MISSION.md §5 and the
QAM reference code: the loss at (x_k, t_k) uses a_k, which already contains step k's own Jacobian. At k = 0 that
Jacobian is I + h(2 grad v - I/h) = 2h grad v ~ 0 (the memoryless step forgets x_0), so the control of the first,
highest-noise step — the one that picks the mode — gets almost no signal. "next" pairs the step-k control with
g_{k+1}, the exact discrete adjoint (``discrete_adjoint``, base field at t_k, last step the ODE step) of the state
x_{k+1} that the step-k control actually moves: the discrete-time optimal control of a Gaussian step is
u_k = sigma_k grad log V_{k+1}(x_{k+1}). Both share the continuous-time limit. Measured on the 1-D toy
(scripts/qam_tilt_check.py; K = 10, 3x128 MLPs, batch 512): right-mode mass 0.79 ("mission") vs 0.84 ("next") at
beta = 1 (exact 0.881), 0.84 vs 0.94 at beta = 2 (exact 0.982); "next" with K = 20: 0.86 at beta = 1.

Optional variance reductions (off by default, see ``QAMConfig``): ``adjoint_clip`` clips each lean adjoint's norm
(the adjoints are heavy-tailed near the gap between modes), ``loss_normalize`` divides the loss by K.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from lwd.policy.flow import FlowTime, euler_times, flow_matching_loss, sample_euler
from lwd.rl.nets import soft_update

__all__ = ["QAMConfig", "QAM", "memoryless_sigma", "lean_adjoint", "discrete_adjoint", "memoryless_trajectory"]

assert FlowTime.NOISE == 0.0 and FlowTime.ACTION == 1.0  # everything below assumes t: 0 (noise) -> 1 (action)

Field = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def memoryless_sigma(t: torch.Tensor | float, h: float) -> torch.Tensor:
    """sigma(t) = sqrt(2 (1 - t + h) / (t + h)): the memoryless noise schedule for the linear path, offset by h."""
    t = torch.as_tensor(t, dtype=torch.float32)
    return torch.sqrt(2.0 * (1.0 - t + h) / (t + h))


@torch.no_grad()
def memoryless_trajectory(
    actor: Field, base: Field, cond: torch.Tensor, dim: int, steps: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """x_0 ... x_K [K+1, B, dim] of the memoryless SDE driven by ``actor``; last step = ODE step with ``base``."""
    b = cond.shape[0]
    h = 1.0 / steps
    x = torch.randn(b, dim, generator=generator, dtype=cond.dtype, device=cond.device)
    xs = [x]
    for k, t in enumerate(euler_times(steps, cond.device).to(cond.dtype)):
        tb = t.expand(b)
        if k < steps - 1:
            eps = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            x = x + h * (2.0 * actor(cond, x, tb) - x / (t + h)) + math.sqrt(h) * memoryless_sigma(t, h) * eps
        else:
            x = x + h * base(cond, x, tb)
        xs.append(x)
    return torch.stack(xs)


def lean_adjoint(
    base: Field, cond: torch.Tensor, xs: torch.Tensor, a_terminal: torch.Tensor, time_shift: bool = True
) -> torch.Tensor:
    """Lean adjoint a_0 ... a_{K-1} [K, B, dim] integrated backward from ``a_terminal`` = a_K along ``xs``
    [K+1, B, dim].

    a_k = a_{k+1} + h VJP_x[2 base(x, t_k + dt) - x/(t_k + h)](a_{k+1}) at x = x_k; dt = h if ``time_shift`` else 0.
    No gradient flows into ``base``'s parameters or into the returned tensor.
    """
    steps = xs.shape[0] - 1
    h = 1.0 / steps
    b = cond.shape[0]
    a = a_terminal.detach()
    out = [a] * steps
    for k in reversed(range(steps)):
        t = k * h
        tv = torch.full((b,), t + (h if time_shift else 0.0), dtype=xs.dtype, device=xs.device)
        with torch.enable_grad():
            x = xs[k].detach().requires_grad_(True)
            f = 2.0 * base(cond, x, tv) - x / (t + h)
            (vjp,) = torch.autograd.grad(f, x, grad_outputs=a)
        a = a + h * vjp.detach()
        out[k] = a
    return torch.stack(out)


def discrete_adjoint(base: Field, cond: torch.Tensor, xs: torch.Tensor, a_terminal: torch.Tensor) -> torch.Tensor:
    """Exact discrete adjoint g_0 ... g_K [K+1, B, dim] of the *base* sampling chain along ``xs``.

    The chain is the one ``memoryless_trajectory`` runs, with the base drift: x_{k+1} = x_k + h (2 v_base(x_k, t_k)
    - x_k/(t_k + h)) for k < K - 1 and x_K = x_{K-1} + h v_base(x_{K-1}, t_{K-1}); g_K = ``a_terminal`` and
    g_k = g_{k+1} + h VJP_x[step-k drift](g_{k+1}) at x_k, i.e. g_k = d(-beta Q(x_K))/dx_k along base dynamics.
    """
    steps = xs.shape[0] - 1
    h = 1.0 / steps
    b = cond.shape[0]
    g = a_terminal.detach()
    out = [g] * (steps + 1)
    for k in reversed(range(steps)):
        t = k * h
        tv = torch.full((b,), t, dtype=xs.dtype, device=xs.device)
        with torch.enable_grad():
            x = xs[k].detach().requires_grad_(True)
            f = base(cond, x, tv) if k == steps - 1 else 2.0 * base(cond, x, tv) - x / (t + h)
            (vjp,) = torch.autograd.grad(f, x, grad_outputs=g)
        g = g + h * vjp.detach()
        out[k] = g
    return torch.stack(out)


@dataclass
class QAMConfig:
    beta: float = 1.0  # inverse temperature of the tilt exp(beta Q)
    steps: int = 10  # K
    ema: float = 0.005  # EMA rate of base_target
    lr: float = 3e-4  # actor (v_theta) learning rate
    base_lr: float | None = None  # base BC learning rate (None: lr)
    bc_weight: float = 1.0  # weight of the base's flow-matching BC loss (0 freezes the base)
    grad_clip: float | None = 10.0
    residual: bool = False  # actor outputs v_theta - v_base_target
    clip_terminal: bool = True  # evaluate Q at clip(x_K) (gradient passed straight through)
    adjoint_time_shift: bool = True  # v_base at t_k + h in the lean adjoint (MISSION / reference); False: at t_k
    # "mission": loss at (x_k, t_k) uses the lean adjoint a_k of MISSION.md §5 (includes step k's own Jacobian).
    # "next": loss at (x_k, t_k) uses g_{k+1} of ``discrete_adjoint`` — the adjoint of the state x_{k+1} that the
    # step-k control moves (the discrete-time optimal control for a Gaussian step); see the module docstring.
    adjoint_scheme: str = "mission"
    adjoint_clip: float | None = None  # optional per-sample norm clip of the lean adjoints (variance reduction)
    loss_normalize: bool = False  # divide the summed-over-k loss by K (same optimum, smaller gradients)


class QAM(nn.Module):
    """QAM actor learner. ``q_fn(obs, act) -> [B]`` is the (ensemble-mean / pessimistic) critic, held fixed here.

    ``update(obs, act)`` takes one BC step on ``base`` and one adjoint-matching step on ``actor``;
    ``sample(obs)`` integrates the deployed field with the deterministic Euler sampler of lwd.policy.flow.
    """

    def __init__(self, base: nn.Module, actor: nn.Module, q_fn: Callable, cfg: QAMConfig | None = None,
                 act_dim: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg or QAMConfig()
        self.base = base
        self.actor = actor
        self.base_target = copy.deepcopy(base).requires_grad_(False)
        self.q_fn = q_fn
        self.act_dim = act_dim if act_dim is not None else actor.act_dim
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=self.cfg.lr)
        self.base_opt = torch.optim.Adam(self.base.parameters(), lr=self.cfg.base_lr or self.cfg.lr)
        self.generator: torch.Generator | None = None  # set for reproducible sampling noise

    # ---- fields ------------------------------------------------------------------------------
    def v_theta(self, cond: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The deployed field (base_target + residual in the residual variant)."""
        if self.cfg.residual:
            with torch.no_grad():
                vb = self.base_target(cond, x, t)
            return vb + self.actor(cond, x, t)
        return self.actor(cond, x, t)

    def terminal_adjoint(self, obs: torch.Tensor, x_final: torch.Tensor) -> torch.Tensor:
        """a_K = -beta grad_a Q(s, a) at a = clip(x_K) (straight-through) or x_K: [B, A]."""
        with torch.enable_grad():
            a = x_final.detach()
            if self.cfg.clip_terminal:
                a = a.clamp(-1.0, 1.0)
            a = a.requires_grad_(True)
            q = self.q_fn(obs, a)
            (g,) = torch.autograd.grad(q.sum(), a)
        return -self.cfg.beta * g.detach()

    def trajectory(self, obs: torch.Tensor) -> torch.Tensor:
        return memoryless_trajectory(self.v_theta, self.base_target, obs, self.act_dim, self.cfg.steps, self.generator)

    def lean_adjoint(self, obs: torch.Tensor, xs: torch.Tensor, a_terminal: torch.Tensor) -> torch.Tensor:
        return lean_adjoint(self.base_target, obs, xs, a_terminal, self.cfg.adjoint_time_shift)

    def adjoint_matching_loss(self, obs: torch.Tensor, critic_obs: torch.Tensor | None = None
                              ) -> tuple[torch.Tensor, dict[str, float]]:
        """``obs`` conditions the flows; ``critic_obs`` (default ``obs``) is the same states as the critic sees them
        (the learner's image mode: the critic reads frozen features while the flows read the fine-tuned encoder)."""
        cfg = self.cfg
        cobs = obs if critic_obs is None else critic_obs
        k_steps, h = cfg.steps, 1.0 / cfg.steps
        b = obs.shape[0]
        xs = self.trajectory(obs)  # [K+1, B, A]
        a_term = self.terminal_adjoint(cobs, xs[-1])
        if cfg.adjoint_scheme == "mission":
            adj = self.lean_adjoint(obs, xs, a_term)  # [K, B, A]: a_0 .. a_{K-1}
        elif cfg.adjoint_scheme == "next":
            adj = discrete_adjoint(self.base_target, obs, xs, a_term)[1:]  # g_1 .. g_K
        else:
            raise ValueError(f"unknown adjoint_scheme {cfg.adjoint_scheme!r}")
        if cfg.adjoint_clip is not None:
            n = adj.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            adj = adj * (cfg.adjoint_clip / n).clamp(max=1.0)
        ts = euler_times(k_steps, obs.device).to(obs.dtype)  # [K]
        sig = memoryless_sigma(ts, h).to(obs.dtype).view(k_steps, 1, 1)
        x_flat = xs[:-1].reshape(k_steps * b, -1)
        t_flat = ts.repeat_interleave(b)
        c_flat = obs.unsqueeze(0).expand(k_steps, -1, -1).reshape(k_steps * b, -1)
        out = self.actor(c_flat, x_flat, t_flat).view(k_steps, b, -1)
        if cfg.residual:
            diff = out
        else:
            with torch.no_grad():
                vb = self.base_target(c_flat, x_flat, t_flat).view(k_steps, b, -1)
            diff = out - vb
        per = ((2.0 / sig) * diff + sig * adj).pow(2).sum(-1)  # [K, B]
        loss = per.sum(0).mean()
        if cfg.loss_normalize:
            loss = loss / k_steps
        stats = {
            "adj_loss": float(loss.detach()),
            "adj_abs_mean": float(adj[0].abs().mean()),
            "adj_std": float(adj[0].std()) if adj[0].numel() > 1 else 0.0,
            "adj_abs_max": float(adj.abs().max()),
            "adj_terminal_abs_mean": float(a_term.abs().mean()),
            "q_sample_mean": float(self.q_fn(cobs, xs[-1].clamp(-1, 1)).mean().detach()),
            "actor_base_gap": float(diff.detach().pow(2).mean()),
        }
        return loss, stats

    # ---- training ----------------------------------------------------------------------------
    def update(self, obs: torch.Tensor, act: torch.Tensor, weight: torch.Tensor | None = None,
               critic_obs: torch.Tensor | None = None) -> dict[str, float]:
        """One BC step on the base (dataset actions) + one adjoint-matching step on the actor."""
        cfg = self.cfg
        stats: dict[str, float] = {"beta": float(cfg.beta)}
        if cfg.bc_weight > 0:
            bc = cfg.bc_weight * flow_matching_loss(self.base, obs, act, weights=weight, generator=self.generator)
            self.base_opt.zero_grad(set_to_none=True)
            bc.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.base.parameters(), cfg.grad_clip)
            self.base_opt.step()
            soft_update(self.base_target, self.base, cfg.ema)
            stats["bc_loss"] = float(bc.detach())
        loss, am = self.adjoint_matching_loss(obs, critic_obs)
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            stats["actor_grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.grad_clip))
        self.actor_opt.step()
        stats.update(am)
        return stats

    # ---- inference ---------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, obs: torch.Tensor, steps: int | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Deterministic Euler ODE with v_theta from noise (t = 0) to action (t = 1), clipped to [-1, 1]."""
        return sample_euler(self.v_theta, obs, self.act_dim, steps or self.cfg.steps, noise=noise, clip=True)

    @torch.no_grad()
    def sample_best_of_n(self, obs: torch.Tensor, n: int = 8, steps: int | None = None) -> torch.Tensor:
        """Draw n actions per observation and keep the one with the highest q_fn."""
        b = obs.shape[0]
        rep = obs.repeat_interleave(n, dim=0)
        acts = self.sample(rep, steps)
        q = self.q_fn(rep, acts).view(b, n)
        return acts.view(b, n, -1)[torch.arange(b), q.argmax(1)]
