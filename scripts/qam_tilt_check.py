"""Slow check of QAM's tilt accuracy on the 1-D toy of MISSION.md §5 (not part of the default test run).

Base = flow-matching fit of 0.5 N(-1, 0.15^2) + 0.5 N(+1, 0.15^2); Q(a) = a; target pi ∝ p_base exp(beta a).
Prints right-mode mass and mean of QAM samples against the exact numerically integrated tilt.

    PYTHONPATH=src .venv/bin/python scripts/qam_tilt_check.py [--betas 1 2] [--iters 800] [--variant ...]
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from lwd.policy.flow import flow_matching_loss, sample_euler
from lwd.rl.nets import VelocityMLP
from lwd.rl.qam import QAM, QAMConfig

MODES, STD = (-1.0, 1.0), 0.15


def mixture(n: int, g: torch.Generator) -> torch.Tensor:
    m = torch.tensor(MODES)[torch.randint(0, 2, (n,), generator=g)]
    return (m + STD * torch.randn(n, generator=g)).unsqueeze(-1)


def exact_tilt(beta: float) -> tuple[float, float]:
    """Right-mode mass and mean of pi ∝ p_base(a) exp(beta a), by quadrature (samples are clipped to [-1, 1])."""
    a = np.linspace(-3, 3, 200001)
    p = sum(np.exp(-0.5 * ((a - m) / STD) ** 2) for m in MODES) * np.exp(beta * a)
    p /= p.sum()
    return float(p[a > 0].sum()), float((np.clip(a, -1, 1) * p).sum())


def pretrain_base(hidden=(128, 128, 128), iters=2000, batch=512, lr=2e-3, seed=0) -> VelocityMLP:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    base = VelocityMLP(0, 1, hidden)
    opt = torch.optim.Adam(base.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iters)
    for _ in range(iters):
        x1 = mixture(batch, g)
        loss = flow_matching_loss(base, x1.new_zeros(batch, 0), x1, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return base


def stats(field, n=20000, steps=10, seed=123) -> tuple[float, float]:
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, 1, generator=g)
    a = sample_euler(field, noise.new_zeros(n, 0), 1, steps, noise=noise)
    return float((a > 0).float().mean()), float(a.mean())


def run_qam(base, beta, iters=800, batch=512, seed=0, log_every=0, **cfg_kw):
    torch.manual_seed(seed)
    cfg = QAMConfig(beta=beta, **cfg_kw)
    actor = copy.deepcopy(base)
    qam = QAM(copy.deepcopy(base), actor, lambda s, a: a[:, 0], cfg, act_dim=1)
    qam.generator = torch.Generator().manual_seed(seed + 1)
    g = torch.Generator().manual_seed(seed + 2)
    hist = []
    for i in range(iters):
        st = qam.update(torch.zeros(batch, 0), mixture(batch, g))
        if log_every and (i + 1) % log_every == 0:
            m, mu = stats(qam.v_theta, n=5000, steps=cfg.steps)
            hist.append((i + 1, m, mu, st["adj_abs_mean"], st["adj_std"]))
    return qam, hist


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--betas", type=float, nargs="+", default=[1.0, 2.0])
    ap.add_argument("--iters", type=int, default=800)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--ema", type=float, default=0.005)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--no-shift", action="store_true", help="lean adjoint with v_base at t_k (exact discrete adjoint)")
    ap.add_argument("--scheme", default="mission", choices=["mission", "next"])
    ap.add_argument("--adjoint-clip", type=float, default=None)
    ap.add_argument("--bc-weight", type=float, default=1.0)
    ap.add_argument("--grad-clip", type=float, default=10.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--log-every", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.time()
    base = pretrain_base()
    bm, bmu = stats(base)
    print(f"base: right-mass {bm:.3f} mean {bmu:+.3f} ({time.time() - t0:.1f}s)")
    for beta in args.betas:
        em, emu = exact_tilt(beta)
        for seed in args.seeds:
            t0 = time.time()
            qam, hist = run_qam(base, beta, args.iters, args.batch, seed, args.log_every, lr=args.lr, ema=args.ema,
                                steps=args.steps, adjoint_time_shift=not args.no_shift, adjoint_clip=args.adjoint_clip,
                                bc_weight=args.bc_weight, adjoint_scheme=args.scheme, grad_clip=args.grad_clip)
            m, mu = stats(qam.v_theta, steps=args.steps)
            print(f"beta={beta:g} seed={seed}: right-mass {m:.3f} (exact {em:.3f})  mean {mu:+.3f} (exact {emu:+.3f})"
                  f"  {time.time() - t0:.1f}s  history(it, mass, mean, |adj|, adj_std)="
                  + " ".join(f"({i},{a:.3f},{b:+.3f},{c:.2f},{d:.2f})" for i, a, b, c, d in hist))


if __name__ == "__main__":
    main()
