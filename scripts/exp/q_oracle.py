"""EXP: does the critic rank a state's candidate chunks by what they lead to? (ground-truth Q by branching rollouts)

For held-out seeds, the published VLA runs plainly (deterministic, as deployed). At every EVERY-th re-plan the scene
is rebuilt by replaying the executed targets (physics is deterministic), K candidate chunks are drawn as value-guided
selection draws them (index 0 = the plain chunk, the others from noise of scale 0.5), and each candidate's first
exec_steps targets are executed and the plain policy continues to the time limit: its outcome is that chunk's
ground-truth return under the deployed policy. Saved per state: the critic's features, the K normalized chunks,
the critic's scores and the K outcomes, so other critics on the same features can be scored offline.

With TWIN > 0 each candidate also gets a twin, the same chunk plus normal noise of std TWIN (normalized units),
whose outcome is saved as ``y_twin``: how often a barely different chunk flips the outcome says how much of the
candidates' spread a critic could learn at all, and how much is the chaos of contact-rich physics.

Usage: q_oracle.py POLICY_DIR SEEDS OUT.npz [K] [EVERY] [MAX_STATES] [WORKERS] [TASK] [TWIN]
"""
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from lwd.policy.checkpoint import load_checkpoint
from lwd.policy.inference import DEFAULT_CANDIDATE_NOISE, VLAPolicy
from lwd.policy.model import denormalize_chunk
from lwd.rl.selection import load_scorer
from lwd.sim.rollout import SETTLE_STEPS, obs, run_episode
from lwd.sim.tasks import get_task
from lwd.sim.world import CONTROL_DT, SimWorld

SEED0 = 5_000_000  # disjoint from fleet (1e6+), gate (8e5+) and evaluation (9e5+) seeds
EXEC = 5


def _continue(world, policy, first: np.ndarray, n_left: int) -> bool:
    """Execute ``first`` then the plain policy until ``n_left`` steps are used; True on success."""
    chunk = list(first)
    policy.reset()
    hit = None
    for step in range(n_left):
        if not chunk:
            chunk = list(policy.act(obs(world)))
        world.apply(np.clip(chunk.pop(0), world.joint_low, world.joint_high))
        if hit is None and world.success():
            hit = step
        if hit is not None and step >= hit + SETTLE_STEPS:
            break
    return hit is not None and not world.unstable


def probe(args):
    pdir, task, seed, k, every, max_states, twin = args
    torch.set_num_threads(1)
    model = load_checkpoint(Path(pdir)).model.eval()
    scorer = load_scorer(Path(pdir))
    gen = torch.Generator().manual_seed(seed)
    scale = np.asarray(model.cfg.action_scale, dtype=np.float32)
    n_steps = max(1, round(get_task(task).time_limit_s / CONTROL_DT))
    rows = []
    with SimWorld(image_size=model.cfg.image_size, cameras=model.cfg.cameras) as w:
        plain = VLAPolicy(model, seed=0, exec_steps=EXEC)
        ro = run_episode(w, task, seed, actor=plain)
        end = ro.steps_to_success if ro.success else len(ro.actions)
        for t in list(range(every * EXEC, end, every * EXEC))[:max_states]:
            w.reset(task, seed)
            for a in ro.actions[:t]:
                w.apply(a)
            o = obs(w)
            qpos = np.asarray(o["qpos"], dtype=np.float32)
            with torch.no_grad():
                image = torch.from_numpy(np.asarray(o["image"], np.uint8)[None])
                cond = model.encode(image, torch.from_numpy(qpos[None]),
                                    torch.from_numpy(plain._tokens(o["instruction"])[None]))
                noise = torch.randn(k, model.cfg.action_dim, generator=gen) * DEFAULT_CANDIDATE_NOISE
                noise[0] = 0.0
                c = cond.expand(k, -1)
                x = model.sample(c, noise=noise)
                q = scorer(c, x).numpy() if scorer is not None else np.zeros(k)
                xt = x + twin * torch.randn(x.shape, generator=gen)
            ys = []
            for i in range(2 * k if twin > 0 else k):
                w.reset(task, seed)
                for a in ro.actions[:t]:
                    w.apply(a)
                xi = x[i] if i < k else xt[i - k]
                first = denormalize_chunk(xi.numpy(), qpos, scale, model.cfg.n_joints)[:EXEC]
                ys.append(_continue(w, plain, first, n_steps - t))
            rows.append({"seed": seed, "t": t, "ep_success": ro.success, "cond": cond[0].numpy(), "x": x.numpy(),
                         "q": q, "y": np.asarray(ys[:k], dtype=np.int8), "y_twin": np.asarray(ys[k:], dtype=np.int8)})
    return rows


def pairwise(q: np.ndarray, y: np.ndarray) -> tuple[float, float, int, int]:
    """Scores q [S, K] against outcomes y [S, K]: on mixed states, how often a succeeding candidate outranks a failing
    one (ties count half); the success rate of each state's top-scored candidate; mixed states; pairs."""
    mixed = y.min(1) < y.max(1)
    pairs = agree = 0.0
    for yi, qi in zip(y[mixed], q[mixed], strict=True):
        d = qi[yi == 1][:, None] - qi[yi == 0][None, :]
        pairs += d.size
        agree += (d > 0).sum() + 0.5 * (d == 0).sum()
    pick = float(y[np.arange(len(y)), q.argmax(1)].mean())
    return agree / max(1, pairs), pick, int(mixed.sum()), int(pairs)


def summarize(rows) -> str:
    y = np.stack([r["y"] for r in rows]).astype(float)
    acc, pick, n_mixed, pairs = pairwise(np.stack([r["q"] for r in rows]), y)
    mixed = y.min(1) < y.max(1)
    twin = ""
    if len(rows[0]["y_twin"]):
        yt = np.stack([r["y_twin"] for r in rows]).astype(float)
        twin = (f"; twins flip {(yt != y).mean():.3f} of outcomes ({(yt != y)[mixed].mean():.3f} on mixed states), "
                f"candidates differ from the plain chunk on {(y[:, 1:] != y[:, :1]).mean():.3f}")
    return (f"{len(rows)} states from {len({r['seed'] for r in rows})} seeds; plain chunk {y[:, 0].mean():.3f}, "
            f"random candidate {y.mean():.3f}, critic's pick {pick:.3f}, oracle (any) {y.max(1).mean():.3f}; "
            f"mixed states {n_mixed}; critic pairwise accuracy on them {acc:.3f} "
            f"({pairs} pairs){twin}")


def save(out: str, rows) -> None:
    np.savez_compressed(out, **{key: np.stack([np.asarray(r[key]) for r in rows])
                                for key in ("seed", "t", "ep_success", "cond", "x", "q", "y", "y_twin")})


if __name__ == "__main__":
    pdir, n_seeds, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    k = int(sys.argv[4]) if len(sys.argv) > 4 else 8
    every = int(sys.argv[5]) if len(sys.argv) > 5 else 4
    max_states = int(sys.argv[6]) if len(sys.argv) > 6 else 6
    workers = int(sys.argv[7]) if len(sys.argv) > 7 else 2
    task = sys.argv[8] if len(sys.argv) > 8 else "pick_place"
    twin = float(sys.argv[9]) if len(sys.argv) > 9 else 0.0
    jobs = [(pdir, task, SEED0 + i, k, every, max_states, twin) for i in range(n_seeds)]
    rows = []
    with ProcessPoolExecutor(workers) as ex:
        for i, r in enumerate(ex.map(probe, jobs)):
            rows += r
            if (i + 1) % 10 == 0 and rows:
                save(out, rows)
                print(f"{i + 1}/{n_seeds} seeds: {summarize(rows)}", flush=True)
    save(out, rows)
    print(summarize(rows), flush=True)
