"""DIVL / IQL critics on small MDPs with known answers (tabular one-hot observations and actions).

Chain MDP (N = 4 states, gamma = 0.9 per chunk): action 0 advances (the last advance succeeds: r = 1, done),
action 1 fails (r = 0, done). The dataset mixes both actions with a different behaviour probability in every state
(mixed-quality data from several "policy versions"). For an expectile tau the exact tabular fixed point is
    Q(s, a) = r + gamma (1 - done) V(s'),   V(s) = expectile_tau over the *empirical* dataset actions at s of Q(s, .),
computed below by value iteration; tau -> 1 gives the in-support optimum gamma^(N-1-s), tau = 0.5 the behaviour value.
Tolerances (absolute, returns in [0, 1]): 0.05 for the learned V and Q against the exact fixed point, 0.05 between
DIVL's categorical mean and the scalar IQL critic.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lwd.rl.divl import DIVL, DIVLConfig, expectile_loss, hl_gauss_probs
from lwd.rl.iql import IQL, IQLConfig

N, GAMMA = 4, 0.9
P_ADVANCE = (0.3, 0.5, 0.7, 0.4)
TOL = 0.05


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def expectile_discrete(vals: np.ndarray, probs: np.ndarray, tau: float) -> float:
    v = float(np.dot(vals, probs))
    for _ in range(200):
        w = np.where(vals >= v, tau, 1 - tau) * probs
        v = float(np.dot(w, vals) / w.sum())
    return v


def chain_dataset(n: int = 1024, seed: int = 0):
    g = np.random.default_rng(seed)
    s = g.integers(0, N, n)
    a = (g.random(n) > np.array(P_ADVANCE)[s]).astype(int)
    rew = ((a == 0) & (s == N - 1)).astype(np.float32)
    done = ((a == 1) | (s == N - 1)).astype(np.float32)
    s2 = np.where(done > 0, 0, s + 1)
    eye, ea = np.eye(N, dtype=np.float32), np.eye(2, dtype=np.float32)
    batch = {
        "obs": torch.tensor(eye[s]), "act": torch.tensor(ea[a]), "rew": torch.tensor(rew),
        "next_obs": torch.tensor(eye[s2]), "done": torch.tensor(done), "discount": torch.full((n,), GAMMA),
    }
    behaviour = np.array([[np.mean(a[s == i] == 0), np.mean(a[s == i] == 1)] for i in range(N)])
    return batch, behaviour


def exact_chain(behaviour: np.ndarray, tau: float):
    v = np.zeros(N + 1)
    q = np.zeros((N, 2))
    for _ in range(100):
        for s in range(N):
            q[s, 0] = 1.0 if s == N - 1 else GAMMA * v[s + 1]
            q[s, 1] = 0.0
        v[:N] = [expectile_discrete(q[s], behaviour[s], tau) for s in range(N)]
    return q, v[:N]


def train(model, batch, steps=800, bs=256, seed=0):
    n = batch["obs"].shape[0]
    g = torch.Generator().manual_seed(seed)
    stats = {}
    for _ in range(steps):
        idx = torch.randint(0, n, (bs,), generator=g)
        stats = model.update({k: v[idx] for k, v in batch.items()})
    return stats


def fast_cfg(cls, tau):
    return cls(expectile=tau, hidden=(32, 32), lr=2e-3, target_ema=0.05, ensemble_size=2, value_rho=0.0)


def tabular_values(model):
    eye = torch.eye(N)
    with torch.no_grad():
        v = model.v(eye).numpy()
        q = np.stack([model.q(eye, torch.eye(2)[[a] * N]).mean(0).numpy() for a in range(2)], axis=1)
    return q, v


_cache: dict = {}


def trained(kind: str, tau: float):
    key = (kind, tau)
    if key not in _cache:
        torch.manual_seed(0)
        batch, _ = chain_dataset()
        model = DIVL(N, 2, fast_cfg(DIVLConfig, tau)) if kind == "divl" else IQL(N, 2, fast_cfg(IQLConfig, tau))
        stats = train(model, batch)
        _cache[key] = (model, stats)
    return _cache[key]


# ---------------------------------------------------------------------------------------------------------------


def test_hl_gauss_projection_is_normalised_and_mean_preserving():
    cfg = DIVLConfig()
    edges = torch.linspace(cfg.v_min, cfg.v_max, cfg.num_bins + 1)
    centers = 0.5 * (edges[1:] + edges[:-1])
    sigma = cfg.sigma_ratio * (cfg.v_max - cfg.v_min) / cfg.num_bins
    y = torch.tensor([0.0, 0.123, 0.5, 0.9, 1.0])
    p = hl_gauss_probs(y, edges, sigma)
    assert torch.allclose(p.sum(-1), torch.ones(5), atol=1e-6)
    assert torch.all(p >= 0)
    # returns of 0/1 success (and the ends 0 and 1 themselves) are represented without truncation bias
    assert torch.allclose(p @ centers, y, atol=1e-3)


def test_expectile_loss_asymmetry():
    u = torch.tensor([1.0, -1.0])
    assert expectile_loss(u[:1], 0.9).item() == pytest.approx(0.9)
    assert expectile_loss(u[1:], 0.9).item() == pytest.approx(0.1)


def test_divl_chain_converges_to_exact_fixed_point():
    _, behaviour = chain_dataset()
    q_true, v_true = exact_chain(behaviour, 0.9)
    model, stats = trained("divl", 0.9)
    q, v = tabular_values(model)
    assert np.abs(v - v_true).max() < TOL, (v, v_true)
    assert np.abs(q - q_true).max() < TOL, (q, q_true)
    for key in ("critic_loss", "value_loss", "q_mean", "q_std", "v_mean"):
        assert np.isfinite(stats[key])
    # mixed-quality data: V sits well above the behaviour value (tau = 0.5) in every state
    _, v_beh = exact_chain(behaviour, 0.5)
    assert np.all(v > v_beh + 0.05)


def test_divl_mean_matches_scalar_iql():
    qd, vd = tabular_values(trained("divl", 0.9)[0])
    qi, vi = tabular_values(trained("iql", 0.9)[0])
    assert np.abs(vd - vi).max() < TOL, (vd, vi)
    assert np.abs(qd - qi).max() < TOL, (qd, qi)


def test_expectile_tau_limits():
    """tau -> 1 approaches the in-support optimum, tau = 0.5 gives the behaviour value."""
    _, behaviour = chain_dataset()
    optimum = GAMMA ** (N - 1 - np.arange(N))  # best in-support action everywhere
    _, v_exact_99 = exact_chain(behaviour, 0.99)
    assert np.abs(v_exact_99 - optimum).max() < 0.04  # the exact expectile fixed point is already close at 0.99
    gaps = []
    for tau in (0.5, 0.9, 0.99):
        _, v = tabular_values(trained("divl", tau)[0])
        gaps.append(np.abs(optimum - v).max())
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 0.04 + TOL
    _, v_hi = tabular_values(trained("divl", 0.99)[0])
    assert np.abs(v_hi - v_exact_99).max() < TOL, (v_hi, v_exact_99)
    _, v_beh = exact_chain(behaviour, 0.5)
    _, v_half = tabular_values(trained("divl", 0.5)[0])
    assert np.abs(v_half - v_beh).max() < TOL, (v_half, v_beh)


def test_stochastic_bandit_value_is_not_optimistic_about_luck():
    """Action 0 succeeds with prob 0.5, action 1 gives 0.4 surely: the in-support max is 0.5, not 1.

    The expectile is taken over the critic's mean, so tau -> 1 maximises over actions, not over lucky outcomes;
    the categorical critic still learns the bimodal return distribution of action 0.
    """
    torch.manual_seed(0)
    g = np.random.default_rng(1)
    n = 1024
    a = g.integers(0, 2, n)
    rew = np.where(a == 0, (g.random(n) < 0.5).astype(np.float32), 0.4).astype(np.float32)
    batch = {
        "obs": torch.ones(n, 1), "act": torch.tensor(np.eye(2, dtype=np.float32)[a]), "rew": torch.tensor(rew),
        "next_obs": torch.ones(n, 1), "done": torch.ones(n), "discount": torch.full((n,), GAMMA),
    }
    model = DIVL(1, 2, fast_cfg(DIVLConfig, 0.99))
    train(model, batch, steps=400)
    with torch.no_grad():
        v = model.v(torch.ones(1, 1)).item()
        q0 = model.q(torch.ones(1, 1), torch.tensor([[1.0, 0.0]])).mean().item()
        dist = model.q_dist(torch.ones(1, 1), torch.tensor([[1.0, 0.0]])).mean(0)[0]
    p_rew_mean = float(np.mean(rew[a == 0]))
    assert abs(q0 - p_rew_mean) < TOL
    assert abs(v - max(p_rew_mean, 0.4)) < TOL, v
    # bimodal: most of the mass near 0 and near 1, little in between
    c = model.centers
    assert dist[(c > 0.2) & (c < 0.8)].sum() < 0.1
    assert dist[c < 0.2].sum() > 0.3 and dist[c > 0.8].sum() > 0.3


def test_update_only_queries_dataset_actions():
    """No out-of-distribution action queries: every critic input during update is a (obs, act) pair of the batch."""
    torch.manual_seed(0)
    batch, _ = chain_dataset(n=64)
    for model in (DIVL(N, 2, fast_cfg(DIVLConfig, 0.9)), IQL(N, 2, fast_cfg(IQLConfig, 0.9))):
        seen = []
        hooks = [m.register_forward_pre_hook(lambda mod, args, seen=seen: seen.append(args[0].detach().clone()))
                 for m in (model.critic, model.target_critic)]
        model.update(batch)
        for h in hooks:
            h.remove()
        expected = torch.cat([batch["obs"], batch["act"]], dim=-1)
        assert len(seen) >= 2
        for x in seen:
            assert torch.equal(x, expected)


def test_weights_and_done_mask():
    """Zero-weight transitions are ignored, and done=1 removes the bootstrap (V(s') never enters)."""
    torch.manual_seed(0)
    batch, _ = chain_dataset(n=64)
    model = DIVL(N, 2, fast_cfg(DIVLConfig, 0.9))
    b2 = dict(batch)
    b2["weight"] = torch.zeros(64)
    b2["weight"][:32] = 1.0
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(1)
    s1 = model.update(b2)
    model.load_state_dict(before)
    model.q_opt.state.clear(), model.v_opt.state.clear()
    b3 = {k: v[:32] for k, v in batch.items()}
    torch.manual_seed(1)
    s2 = model.update(b3)
    assert s1["critic_loss"] == pytest.approx(s2["critic_loss"], rel=1e-5)
    assert s1["value_loss"] == pytest.approx(s2["value_loss"], rel=1e-5)
    # done = 1 everywhere: the TD target is the reward alone; done = 0: it bootstraps from V(s') * discount
    b4 = {k: v.clone() for k, v in batch.items()}
    b4["done"] = torch.ones(64)
    assert model.update(b4)["td_target_mean"] == pytest.approx(float(batch["rew"].mean()), abs=1e-6)
    b4["done"] = torch.zeros(64)
    with torch.no_grad():
        expect = float((batch["rew"] + GAMMA * model.v(batch["next_obs"])).mean())
    assert model.update(b4)["td_target_mean"] == pytest.approx(expect, abs=1e-5)


def test_pessimism_and_state_dict_roundtrip():
    model, _ = trained("divl", 0.9)
    obs, act = torch.eye(N), torch.eye(2)[[0] * N]
    with torch.no_grad():
        qm = model.q(obs, act)
        assert qm.shape == (2, N)
        qp = model.q_pessimistic(obs, act)
        assert torch.allclose(qp, qm.mean(0) - model.cfg.rho * qm.std(0, unbiased=False), atol=1e-6)
        assert model.advantage(obs, act).shape == (N,)
    clone = DIVL(N, 2, fast_cfg(DIVLConfig, 0.9))
    clone.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(clone.q(obs, act), model.q(obs, act))
        assert torch.equal(clone.v(obs), model.v(obs))
