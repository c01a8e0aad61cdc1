"""EXP: which critic, trained offline on a run's fleet data, ranks a state's candidate chunks best?

Builds the learner's ChunkBuffer (gamma 0.998, RLIF takeover-terminal reward) from every episode of STORE, encodes it
with POLICY_DIR's VLA (the features its published critic reads), trains critic variants on those features and scores
them on a q_oracle.py probe of the same policy: for states where the K candidates' ground-truth outcomes differ,
how often the critic ranks a succeeding chunk above a failing one, and the outcome of the chunk it picks.

Variants (comma-separated; key=value after a colon, joined by '+'):
  td      DIVL as the learner trains it (TD toward V(s'), expectile tau)    e.g. td:n=20000+tau=0.5
  mc      the same categorical critic regressed on Monte-Carlo returns: gamma^(steps to the end) if the episode
          succeeds and no later takeover overrules the step, else 0 (no bootstrapping)
  fleet=1 (any variant) train on fleet episodes only (no demos)
  act=    (any variant) what of the chunk the critic reads: full (10 steps), exec (the executed 5), end (step 5)
Usage: critic_offline.py STORE POLICY_DIR PROBE.npz VARIANTS [SEEDS]
"""
import sys
import time
from pathlib import Path

import numpy as np
import torch
from q_oracle import pairwise  # a sibling script (run from scripts/exp or with it on sys.path)

from lwd.data.schema import SOURCE_EXPERT
from lwd.data.store import ExperienceStore
from lwd.policy.checkpoint import load_checkpoint
from lwd.rl.dataset import ChunkBuffer
from lwd.rl.divl import DIVL, DIVLConfig

GAMMA = 0.998
J, EXEC = 14, 5
# what of the normalized 10-step chunk the critic reads: all of it, the executed 5 steps, or where they end
ACT_VIEWS = {"full": lambda a: a, "exec": lambda a: a[:, : EXEC * J], "end": lambda a: a[:, (EXEC - 1) * J: EXEC * J]}


def build(store: str, pdir: str, cache: Path) -> ChunkBuffer:
    model = load_checkpoint(Path(pdir)).model.eval()
    buf = ChunkBuffer(model.cfg, gamma=GAMMA, takeover_terminal=True)
    st = ExperienceStore(Path(store))
    for rec in st.episodes():
        steps = st.load(rec)
        if len(steps) >= 2:
            buf.add_episode(steps)
    if cache.exists():
        buf._build()
        buf._feat = np.load(cache)
    else:
        buf.encode_features(model.encode)
        np.save(cache, buf._feat)
    return buf


def mc_returns(buf: ChunkBuffer) -> np.ndarray:
    buf._build()
    idx = np.arange(len(buf._episode))
    left = buf._ep_end - idx  # steps to the episode's end, this one included
    ok = buf._success & ~buf._overruled
    return np.where(ok, GAMMA ** np.maximum(0, left - 1), 0.0).astype(np.float32)


def train(buf: ChunkBuffer, spec: str, seed: int):
    kind, _, rest = spec.partition(":")
    opts = dict(kv.split("=") for kv in rest.split("+") if kv)
    n = int(opts.pop("n", 5000))
    fleet_only = opts.pop("fleet", "0") == "1"
    view = ACT_VIEWS[opts.pop("act", "full")]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cfg = DIVLConfig(expectile=float(opts.pop("tau", 0.8)), ensemble_size=int(opts.pop("e", 2)),
                     lr=float(opts.pop("lr", 3e-4)))
    if opts:
        raise ValueError(f"unknown options {opts}")
    critic = DIVL(buf._feat.shape[1], view(torch.zeros(1, buf.cfg.horizon * buf.cfg.n_joints)).shape[1], cfg)
    mask = (buf._source != SOURCE_EXPERT) if fleet_only else None
    mc = torch.from_numpy(mc_returns(buf)) if kind == "mc" else None
    for _ in range(n):
        idx = buf.sample_indices(128, rng, mask)
        b = buf.gather_features(idx)
        b.act = view(b.act)
        if kind == "mc":
            loss, _ = critic._critic_loss(b.obs, b.act, mc[idx], None)
            critic.q_opt.zero_grad(set_to_none=True)
            loss.backward()
            critic.q_opt.step()
        else:
            critic.update({"obs": b.obs, "act": b.act, "rew": b.rew, "next_obs": b.next_obs, "done": b.done,
                           "discount": b.discount})
    return critic.eval(), view


def score(q: np.ndarray, y: np.ndarray) -> tuple[float, float, int]:
    acc, pick, mixed, _ = pairwise(q, y)
    return acc, pick, mixed


if __name__ == "__main__":
    store, pdir, probe = sys.argv[1], sys.argv[2], np.load(sys.argv[3])
    specs = sys.argv[4].split(",")
    seeds = [int(s) for s in sys.argv[5].split(",")] if len(sys.argv) > 5 else [0]
    torch.set_num_threads(1)
    buf = build(store, pdir, Path(sys.argv[3]).with_suffix(".feat.npy"))
    print(f"buffer: {buf.num_episodes} episodes, {len(buf)} steps", flush=True)
    cond = torch.from_numpy(probe["cond"]).float()
    x = torch.from_numpy(probe["x"]).float()
    y = probe["y"].astype(float)
    s, k = x.shape[:2]
    acc, pick, m = score(probe["q"], y)
    print(f"published critic: pairwise {acc:.3f}, pick {pick:.3f} (plain {y[:, 0].mean():.3f}, random {y.mean():.3f}, "
          f"oracle {y.max(1).mean():.3f}, mixed {m}/{s})", flush=True)
    for spec in specs:
        for seed in seeds:
            t0 = time.time()
            critic, view = train(buf, spec, seed)
            with torch.no_grad():
                c = cond[:, None].expand(s, k, -1).reshape(s * k, -1)
                xa = view(x.reshape(s * k, -1))
                qp = critic.q_pessimistic(c, xa).reshape(s, k).numpy()
                qm = critic.q(c, xa).mean(0).reshape(s, k).numpy()
            a1, p1, _ = score(qp, y)
            a2, p2, _ = score(qm, y)
            print(f"{spec} seed {seed}: pairwise {a1:.3f} (mean-Q {a2:.3f}), pick {p1:.3f} ({p2:.3f}) "
                  f"[{time.time() - t0:.0f}s]", flush=True)
