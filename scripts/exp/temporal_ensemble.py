"""Temporal ensembling (ACT): re-plan every step, average all chunks' predictions for the current step."""
import sys

import numpy as np
import torch

from lwd.policy.checkpoint import load_checkpoint
from lwd.policy.inference import VLAPolicy
from lwd.sim.rollout import run_episode
from lwd.sim.world import SimWorld

torch.set_num_threads(1)

class Ens:
    def __init__(self, pol, m, every=1):
        self.pol, self.m, self.every = pol, m, every
    def reset(self):
        self.pol.reset(); self.buf = []; self.t = 0
    def act(self, obs):
        if self.t % self.every == 0 or not self.buf:
            self.buf.append((self.t, np.asarray(self.pol.act_full(obs))))
        self.buf = [(t0, c) for t0, c in self.buf if self.t - t0 < len(c)]
        preds = np.array([c[self.t - t0] for t0, c in self.buf])
        ages = np.array([self.t - t0 for t0, _ in self.buf])
        w = np.exp(-self.m * ages); a = (w[:, None] * preds).sum(0) / w.sum()
        self.t += 1
        return a[None]

root, m, every = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
model = load_checkpoint(root + "/policies/v0").model
pol = VLAPolicy(model, 0, seed=0, exec_steps=10)
pol.act_full = pol.act
actor = Ens(pol, m, every) if m >= 0 else VLAPolicy(model, 0, seed=0, exec_steps=5)
with SimWorld() as w:
    k = sum(run_episode(w, "pick_place", 900000 + i, actor=actor, variation=1.0).success for i in range(30))
    k6 = sum(run_episode(w, "pick_place", 900000 + i, actor=actor, variation=0.6).success for i in range(20))
print(f"{root} m={m} every={every}: pick_place@1.0 {k}/30 @0.6 {k6}/20", flush=True)
