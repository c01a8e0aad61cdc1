"""EXP: does the lwd critic pick better chunks than the flow's mode? (IDQL-style value-guided sampling)

At each re-plan, N candidate chunks from the published VLA: the deterministic one (noise 0, as deployed) plus N-1
flows from noise of scale SIGMA; the critic (learner.safetensors "critic.", trained on this VLA's own features)
scores each, the best is executed. Paired with the plain policy on the same held-out seeds.

Usage: value_select.py POLICY_DIR EPISODES "N:SIGMA[:MODE],..." [TASKS] [WORKERS] [FIRST_SEED_OFFSET]
MODE: q (pessimistic Q, default), mean (ensemble mean), rand (the same candidates picked at random: the control),
bias (no critic: the candidate furthest along BIAS, the left shoulder / elbow / wrist-angle direction both probed
critics preferred in docs/learning.md row 54).
"""
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from lwd.policy.checkpoint import load_checkpoint
from lwd.policy.inference import VLAPolicy
from lwd.policy.model import denormalize_chunk
from lwd.rl.divl import DIVL, DIVLConfig
from lwd.rl.fleet_rl import FleetRLConfig
from lwd.sim.evaluate import EVAL_SEED0, evaluate
from lwd.sim.world import SimWorld

BIAS = torch.zeros(14)
BIAS[1], BIAS[2], BIAS[4] = -1.0, -1.0, 1.0  # left_shoulder -, left_elbow -, left_wrist_angle +


def load_critic(d: Path, obs_dim: int, act_dim: int) -> DIVL:
    c = FleetRLConfig()
    critic = DIVL(obs_dim, act_dim, DIVLConfig(num_bins=c.num_bins, expectile=c.expectile, rho=c.rho))
    st = load_file(str(d / "learner.safetensors"))
    critic.load_state_dict({k[7:]: v for k, v in st.items() if k.startswith("critic.")})
    return critic.eval()


class SelectPolicy(VLAPolicy):
    def __init__(self, model, critic, n, sigma, mode="q", seed=0, exec_steps=5):
        super().__init__(model, 1, seed=seed, exec_steps=exec_steps)
        self.critic, self.n, self.sigma, self.mode = critic, n, sigma, mode
        self.picked_mode = 0
        self.calls = 0

    @torch.no_grad()
    def infer(self, obs, prefix=None):
        image = np.asarray(obs["image"], dtype=np.uint8)
        qpos = np.asarray(obs["qpos"], dtype=np.float32)
        cond = self.model.encode(torch.from_numpy(image[None]), torch.from_numpy(qpos[None]),
                                 torch.from_numpy(self._tokens(obs["instruction"])[None]))
        d = self.cfg.action_dim
        noise = torch.randn(self.n, d, generator=self._gen) * self.sigma
        noise[0] = 0.0
        c = cond.expand(self.n, -1)
        x = self.model.sample(c, noise=noise)
        if self.mode == "rand":  # control: the same candidates, picked at random
            q = torch.rand(self.n, generator=self._gen)
        elif self.mode == "bias":  # no critic: the fixed joint direction the critics prefer (docs/learning.md row 54)
            q = x.reshape(self.n, -1, self.cfg.n_joints).mean(1) @ BIAS
        elif self.mode == "mean":
            q = self.critic.q(c, x).mean(0)
        else:
            q = self.critic.q_pessimistic(c, x)
        i = int(torch.argmax(q))
        self.calls += 1
        self.picked_mode += int(i == 0)
        return denormalize_chunk(x[i].numpy(), qpos, self._scale, self.cfg.n_joints)


def run(args):
    d, n_ep, spec, tasks, start, count = args
    torch.set_num_threads(1)
    ck = load_checkpoint(Path(d))
    model = ck.model.eval()
    with SimWorld() as w:
        if spec == "plain":
            pol = VLAPolicy(model, 1, seed=0, exec_steps=5)
        else:
            parts = spec.split(":")
            critic = load_critic(Path(d), model.cfg.cond_dim, model.cfg.action_dim)
            pol = SelectPolicy(model, critic, int(parts[0]), float(parts[1]), parts[2] if len(parts) > 2 else "q")
        seq: list[int] = []
        r = evaluate(w, pol, tasks, count, seed0=EVAL_SEED0 + start, on_episode=lambda t, i, ok: seq.append(int(ok)))
    out = {t: r[t].to_dict() for t in tasks}
    out["_outcomes"] = seq
    if spec != "plain":
        out["_picked_mode"] = [pol.picked_mode, pol.calls]
    return spec, out


if __name__ == "__main__":
    d, n_ep = sys.argv[1], int(sys.argv[2])
    specs = ["plain"] + sys.argv[3].split(",")
    tasks = sys.argv[4].split(",") if len(sys.argv) > 4 else ["pick_place"]
    workers = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    start = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    block = 25  # seed blocks, so that few specs still use every worker
    jobs = [(d, n_ep, s, tasks, b, min(block, start + n_ep - b))
            for s in specs for b in range(start, start + n_ep, block)]
    res: dict = {}
    with ProcessPoolExecutor(workers) as ex:
        for spec, out in ex.map(run, jobs):
            acc = res.setdefault(spec, {})
            for k, v in out.items():
                if k == "_outcomes":
                    acc[k] = acc.get(k, []) + v
                elif k == "_picked_mode":
                    acc[k] = [a + b for a, b in zip(acc.get(k, [0, 0]), v, strict=True)]
                else:
                    t = acc.setdefault(k, {"successes": 0, "episodes": 0})
                    t["successes"] += v["successes"]
                    t["episodes"] += v["episodes"]
    for spec, acc in res.items():
        print(spec, json.dumps({k: v for k, v in acc.items() if k != "_outcomes"}), flush=True)
    base = res["plain"]["_outcomes"]
    for spec, acc in res.items():  # paired: seeds only this spec solved vs only the plain policy solved
        o = acc["_outcomes"]
        print(f"paired {spec} vs plain: +{sum(a and not b for a, b in zip(o, base, strict=True))} "
              f"-{sum(b and not a for a, b in zip(o, base, strict=True))}", flush=True)
    print(json.dumps({"policy": d, "seeds": [start, start + n_ep], "results": res}))
