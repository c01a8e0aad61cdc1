"""QAM: lean adjoint against exact derivatives, beta = 0 invariance, and the tilt direction on the 1-D toy.

Toy (MISSION.md §5): base = flow-matching fit of 0.5 N(-1, 0.15^2) + 0.5 N(+1, 0.15^2), Q(a) = a, K = 10; the exact
tilt pi ∝ p_base exp(beta a) has right-mode mass 0.881 (beta = 1). QAM is measured to undershoot (about 0.8), so the
fast test checks the thresholds that hold: beta = 1 -> mass > 0.70 and mean > 0.3; flipped adjoint sign -> mass < 0.30.
The slower accuracy check against the exact tilt at beta = 1, 2 runs with LWD_SLOW=1 (or scripts/qam_tilt_check.py).
"""

from __future__ import annotations

import copy
import math
import os

import pytest
import torch
from torch import nn

from lwd.policy.flow import flow_matching_loss, sample_euler
from lwd.rl.nets import VelocityMLP
from lwd.rl.qam import QAM, QAMConfig, discrete_adjoint, lean_adjoint, memoryless_sigma, memoryless_trajectory


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class LinearField(nn.Module):
    """v(x, t) = (1 + t) x A^T + c: linear in x, with a t-dependent Jacobian (so the time index matters)."""

    def __init__(self, a: torch.Tensor, c: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("a", a)
        self.register_buffer("c", c)

    def forward(self, cond, x, t):
        return (1.0 + t).unsqueeze(-1) * (x @ self.a.T) + self.c


def base_chain(field, cond, x0, steps, time_shift, start=0):
    """Deterministic base memoryless Euler chain x_{k+1} = x_k + h (2 v(x_k, t_k + dt) - x_k / (t_k + h))."""
    h = 1.0 / steps
    xs = [x0]
    x = x0
    for k in range(start, steps):
        t = k * h
        tv = torch.full((x.shape[0],), t + (h if time_shift else 0.0), dtype=x.dtype)
        x = x + h * (2.0 * field(cond, x, tv) - x / (t + h))
        xs.append(x)
    return xs


def q_nonlinear(a: torch.Tensor) -> torch.Tensor:
    w = torch.arange(1, a.shape[-1] + 1, dtype=a.dtype)
    return torch.sin(a).sum(-1) + 0.3 * (a * w).sum(-1) ** 2


def test_memoryless_sigma_schedule():
    h = 0.1
    assert memoryless_sigma(0.0, h).item() == pytest.approx(math.sqrt(2 * 1.1 / 0.1))
    assert memoryless_sigma(0.9, h).item() == pytest.approx(math.sqrt(2 * 0.2 / 1.0))
    s = memoryless_sigma(torch.arange(10) / 10.0, h)
    assert torch.all(s[1:] < s[:-1])


@pytest.mark.parametrize("time_shift", [True, False])
def test_lean_adjoint_matches_finite_differences_linear_field(time_shift):
    """On a linear base field the lean adjoint a_k equals -beta d Q(x_K) / d x_k through the base chain (central FD)."""
    torch.manual_seed(0)
    d, b, steps, beta = 3, 4, 5, 1.7
    field = LinearField(0.5 * torch.randn(d, d, dtype=torch.float64), torch.randn(d, dtype=torch.float64))
    cond = torch.zeros(b, 0, dtype=torch.float64)
    x0 = torch.randn(b, d, dtype=torch.float64)
    xs = torch.stack(base_chain(field, cond, x0, steps, time_shift))
    a_term = torch.func.vmap(torch.func.grad(lambda a: -beta * q_nonlinear(a)))(xs[-1])
    adj = lean_adjoint(field, cond, xs, a_term, time_shift=time_shift)
    assert adj.shape == (steps, b, d)
    eps = 1e-6
    for k in range(steps):
        fd = torch.zeros(b, d, dtype=torch.float64)
        for i in range(d):
            e = torch.zeros(b, d, dtype=torch.float64)
            e[:, i] = eps
            jp = -beta * q_nonlinear(base_chain(field, cond, xs[k] + e, steps, time_shift, start=k)[-1])
            jm = -beta * q_nonlinear(base_chain(field, cond, xs[k] - e, steps, time_shift, start=k)[-1])
            fd[:, i] = (jp - jm) / (2 * eps)
        assert torch.allclose(adj[k], fd, rtol=1e-5, atol=1e-7), (k, adj[k], fd)
    # the wrong time index is detectably different (the test can fail)
    other = lean_adjoint(field, cond, xs, a_term, time_shift=not time_shift)
    assert not torch.allclose(other[0], adj[0], rtol=1e-3)


def test_lean_adjoint_is_exact_discrete_adjoint_of_nonlinear_base():
    """For a nonlinear MLP field, a_k (time_shift=False) equals reverse-mode autograd through the base Euler chain."""
    torch.manual_seed(0)
    d, b, steps, beta = 2, 3, 6, 0.8
    field = VelocityMLP(2, d, (16, 16)).double().requires_grad_(False)
    cond = torch.randn(b, 2, dtype=torch.float64)
    x0 = torch.randn(b, d, dtype=torch.float64)
    xs = torch.stack(base_chain(field, cond, x0, steps, time_shift=False))
    a_term = torch.func.vmap(torch.func.grad(lambda a: -beta * q_nonlinear(a)))(xs[-1])
    adj = lean_adjoint(field, cond, xs, a_term, time_shift=False)
    for k in (0, 2, steps - 1):
        x = xs[k].clone().requires_grad_(True)
        j = -beta * q_nonlinear(base_chain(field, cond, x, steps, False, start=k)[-1]).sum()
        (g,) = torch.autograd.grad(j, x)
        assert torch.allclose(adj[k], g, rtol=1e-9, atol=1e-12)


def test_discrete_adjoint_is_gradient_through_the_sampling_chain():
    """g_k of ``discrete_adjoint`` = d(-beta Q(x_K))/dx_k through the base chain that memoryless_trajectory runs
    (memoryless steps at t_k, last step the plain ODE step), for a nonlinear field."""
    torch.manual_seed(0)
    d, b, steps, beta = 2, 3, 5, 1.3
    field = VelocityMLP(1, d, (16, 16)).double().requires_grad_(False)
    cond = torch.randn(b, 1, dtype=torch.float64)
    h = 1.0 / steps

    def chain(x, start):
        xs = [x]
        for k in range(start, steps):
            tv = torch.full((b,), k * h, dtype=torch.float64)
            x = x + h * (field(cond, x, tv) if k == steps - 1 else 2.0 * field(cond, x, tv) - x / (k * h + h))
            xs.append(x)
        return xs

    xs = torch.stack(chain(torch.randn(b, d, dtype=torch.float64), 0))
    # the same chain as memoryless_trajectory with actor = base and no noise (sigma -> 0 is not the schedule, so
    # compare only the last, noise-free ODE step)
    with torch.no_grad():
        assert torch.allclose(xs[-1], xs[-2] + h * field(cond, xs[-2], torch.full((b,), 1 - h, dtype=torch.float64)))
    a_term = torch.func.vmap(torch.func.grad(lambda a: -beta * q_nonlinear(a)))(xs[-1])
    g_all = discrete_adjoint(field, cond, xs, a_term)
    assert g_all.shape == (steps + 1, b, d) and torch.equal(g_all[-1], a_term)
    for k in range(steps):
        x = xs[k].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(-beta * q_nonlinear(chain(x, k)[-1]).sum(), x)
        assert torch.allclose(g_all[k], g, rtol=1e-9, atol=1e-12)


# ---- 1-D toy ---------------------------------------------------------------------------------------------------

MODES, STD = (-1.0, 1.0), 0.15


def mixture(n: int, g: torch.Generator) -> torch.Tensor:
    m = torch.tensor(MODES)[torch.randint(0, 2, (n,), generator=g)]
    return (m + STD * torch.randn(n, generator=g)).unsqueeze(-1)


def right_mass_and_mean(field, n=4000, steps=10, seed=123):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 1, generator=g)
    a = sample_euler(field, noise.new_zeros(n, 0), 1, steps, noise=noise)
    return float((a > 0).float().mean()), float(a.mean())


@pytest.fixture(scope="module")
def toy_base():
    torch.manual_seed(0)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    base = VelocityMLP(0, 1, (64, 64))
    opt = torch.optim.Adam(base.parameters(), lr=3e-3)
    iters = 1200
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iters)
    for _ in range(iters):
        x1 = mixture(256, g)
        loss = flow_matching_loss(base, x1.new_zeros(256, 0), x1, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    torch.set_num_threads(n)
    return base


def run_toy(base, beta, iters, batch=256, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = QAMConfig(beta=beta, lr=kw.pop("lr", 1e-3), **kw)
    qam = QAM(copy.deepcopy(base), copy.deepcopy(base), lambda s, a: a[:, 0], cfg, act_dim=1)
    qam.generator = torch.Generator().manual_seed(seed + 1)
    g = torch.Generator().manual_seed(seed + 2)
    stats = {}
    for _ in range(iters):
        stats = qam.update(torch.zeros(batch, 0), mixture(batch, g))
    return qam, stats


def test_toy_base_is_the_mixture(toy_base):
    m, mu = right_mass_and_mean(toy_base)
    assert abs(m - 0.5) < 0.06 and abs(mu) < 0.1


def test_beta_zero_leaves_actor_exactly_unchanged(toy_base):
    torch.manual_seed(0)
    actor = copy.deepcopy(toy_base)
    before = [p.detach().clone() for p in actor.parameters()]
    qam = QAM(copy.deepcopy(toy_base), actor, lambda s, a: a[:, 0], QAMConfig(beta=0.0, bc_weight=0.0), act_dim=1)
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        st = qam.update(torch.zeros(64, 0), mixture(64, g))
    assert st["adj_loss"] == 0.0
    for p0, p in zip(before, actor.parameters(), strict=True):
        assert torch.equal(p0, p)
    # and a non-zero beta does move it (the check can fail)
    qam.cfg.beta = 1.0
    qam.update(torch.zeros(64, 0), mixture(64, g))
    assert any(not torch.equal(p0, p) for p0, p in zip(before, actor.parameters(), strict=True))


@pytest.mark.parametrize("scheme", ["mission", "next"])
def test_toy_tilts_right_for_positive_beta(toy_base, scheme):
    qam, stats = run_toy(toy_base, beta=1.0, iters=250, adjoint_scheme=scheme)
    m, mu = right_mass_and_mean(qam.v_theta)
    assert m > 0.70 and mu > 0.3, (m, mu, stats)
    assert "bc_loss" in stats and math.isfinite(stats["adj_loss"])


@pytest.mark.parametrize("scheme", ["mission", "next"])
def test_toy_flipped_adjoint_sign_tilts_left(toy_base, scheme):
    qam, _ = run_toy(toy_base, beta=-1.0, iters=250, adjoint_scheme=scheme)  # a_K = +grad Q: the flipped sign
    m, mu = right_mass_and_mean(qam.v_theta)
    assert m < 0.30 and mu < -0.3, (m, mu)


def test_residual_variant_starts_at_base_and_sample_api(toy_base):
    torch.manual_seed(0)
    actor = VelocityMLP(0, 1, (16,), zero_init=True)
    qam = QAM(copy.deepcopy(toy_base), actor, lambda s, a: a[:, 0], QAMConfig(residual=True), act_dim=1)
    noise = torch.randn(32, 1)
    a0 = qam.sample(torch.zeros(32, 0), noise=noise)
    assert torch.allclose(a0, sample_euler(toy_base, torch.zeros(32, 0), 1, 10, noise=noise))
    assert a0.abs().max() <= 1.0
    st = qam.update(torch.zeros(32, 0), torch.rand(32, 1) * 2 - 1)
    assert math.isfinite(st["adj_loss"]) and st["adj_loss"] > 0
    best = qam.sample_best_of_n(torch.zeros(4, 0), n=8)
    assert best.shape == (4, 1)


def test_trajectory_last_step_is_base_ode_step(toy_base):
    """x_K = x_{K-1} + h v_base(x_{K-1}, t_{K-1}), whatever the actor."""
    g = torch.Generator().manual_seed(0)
    actor = VelocityMLP(0, 1, (8,))
    xs = memoryless_trajectory(actor, toy_base, torch.zeros(16, 0), 1, 10, generator=g)
    assert xs.shape == (11, 16, 1)
    with torch.no_grad():
        expect = xs[-2] + 0.1 * toy_base(torch.zeros(16, 0), xs[-2], torch.full((16,), 0.9))
    assert torch.allclose(xs[-1], expect)


@pytest.mark.skipif(os.environ.get("LWD_SLOW") != "1", reason="slow tilt-accuracy check: set LWD_SLOW=1")
@pytest.mark.parametrize("beta", [1.0, 2.0])
@pytest.mark.parametrize("scheme", ["mission", "next"])
def test_slow_tilt_accuracy(toy_base, beta, scheme):
    import numpy as np

    a = np.linspace(-3, 3, 200001)
    p = sum(np.exp(-0.5 * ((a - m) / STD) ** 2) for m in MODES) * np.exp(beta * a)
    exact = float(p[a > 0].sum() / p.sum())
    qam, _ = run_toy(toy_base, beta=beta, iters=800, batch=512, lr=3e-4, adjoint_scheme=scheme)
    m, _ = right_mass_and_mean(qam.v_theta, n=20000)
    print(f"beta={beta} {scheme}: right-mode mass {m:.3f} vs exact {exact:.3f}")
    # measured gaps (see qam.py): "mission" ~0.09 / ~0.15, "next" ~0.04 / ~0.05 at beta = 1 / 2
    assert m > exact - (0.2 if scheme == "mission" else 0.08), (m, exact)


@pytest.mark.parametrize("scheme,moves_right", [("next", True), ("mission", False)])
def test_qam_tilts_an_x1_output_expert_toward_higher_q(scheme, moves_right):
    # "mission" is kept as a characterization: if it ever tilts right on x1 experts, FleetRLConfig's default may move
    """The deployed experts predict the clean chunk (v = (x1_hat - x) / (1 - t)). Their Jacobian in x is ~ -1/(1-t),
    so the continuous lean adjoint with the MISSION time shift (base at t_k + h, up to t = 1) flips sign and tilts
    *away* from high Q; the exact discrete adjoint ("next") tilts toward it. Measured on v0: joint-0 shift -0.11 vs
    +0.13 toward a +0.3 target (scripts/exp/qam_x1_check.py)."""
    from lwd.policy.model import ActionExpert

    torch.manual_seed(0)
    cond_dim, act_dim, b = 8, 6, 64
    base = ActionExpert(cond_dim, act_dim, 32, output="x1")
    actor = copy.deepcopy(base)
    obs = torch.randn(b, cond_dim)
    with torch.no_grad():
        a0 = sample_euler(base, obs, act_dim, 10, noise=torch.zeros(b, act_dim))
    target = (a0 + 0.3).clamp(-1, 1)

    def q_fn(o, a):
        return -((a - target) ** 2).sum(-1)

    qam = QAM(base, actor, q_fn, QAMConfig(beta=10.0, steps=10, lr=3e-4, bc_weight=0.0, adjoint_scheme=scheme),
              act_dim=act_dim)
    qam.generator = torch.Generator().manual_seed(0)
    for _ in range(150):
        qam.update(obs, a0)
    with torch.no_grad():
        a1 = sample_euler(actor, obs, act_dim, 10, noise=torch.zeros(b, act_dim))
    gained = float(q_fn(obs, a1).mean() - q_fn(obs, a0).mean())
    assert (gained > 0.05) if moves_right else (gained < 0.0)
