"""EXP: does a misaligned descent give warning before a policy knocks its item over? Per pick_place gate seed and
control step, with the named item free: is a tool low beside it (tool centre below the item's top + 1 cm, within 6 cm
in x-y) without the item between its fingers; and when does the item first tilt past 10 degrees unheld.
Usage: knock_watch.py EPISODES POLICY_DIR > out.json
(EXEC_STEPS=k: execute k steps of each chunk, default 5 as deployed)"""
import json
import math
import os
import sys

import numpy as np
import torch

from lwd.policy.checkpoint import load_checkpoint
from lwd.policy.inference import VLAPolicy
from lwd.sim.evaluate import GATE_SEED0
from lwd.sim.expert import ScriptedExpert
from lwd.sim.operator import ScriptedOperator
from lwd.sim.rollout import run_episode
from lwd.sim.tasks import CATALOGUE
from lwd.sim.world import ARMS, SimWorld

sys.path.insert(0, "scripts/exp")
from failure_modes import Spy, mode  # noqa: E402


class Watch(ScriptedOperator):
    def reset(self):
        super().reset()
        self.first_bad = self.first_tip = None
        self.bad_steps = 0

    def step(self, t):
        w = self.world
        g = w.goals[0]
        it = CATALOGUE[g.item]
        if w.held_by(g.item) is None:
            c = w.item_pos(g.item)
            top = c[2] + it.half_height
            tilt = math.degrees(math.acos(float(np.clip(w.item_mat(g.item)[2, 2], -1, 1))))
            if tilt > 10 and self.first_tip is None:
                self.first_tip = t
            for a in ARMS:
                p = w.tcp_pos(a)
                if p[2] < top + 0.01 and np.linalg.norm(p[:2] - c[:2]) < 0.06:
                    rel = w.tcp_mat(a).T @ (c - p)
                    if not (abs(rel[0]) < 0.025 and abs(rel[1]) < it.grasp_half_width + 0.012):
                        self.bad_steps += 1
                        if self.first_bad is None:
                            self.first_bad = t
        return super().step(t)


if __name__ == "__main__":
    torch.set_num_threads(1)
    n, path = int(sys.argv[1]), sys.argv[2]
    model = load_checkpoint(path).model.eval()
    rows = []
    with SimWorld(image_size=model.cfg.image_size, cameras=model.cfg.cameras) as world:
        spy = Spy(VLAPolicy(model, 0, seed=0, exec_steps=int(os.environ.get("EXEC_STEPS", 5))), world)
        watch = Watch(world, ScriptedExpert(world), max_interventions=0)
        for i in range(n):
            ro = run_episode(world, "pick_place", GATE_SEED0 + i, actor=spy, operator=watch)
            r = {"seed": GATE_SEED0 + i, "mode": mode(world, ro, spy.held)[0], "first_bad": watch.first_bad,
                 "bad_steps": watch.bad_steps, "first_tip": watch.first_tip}
            rows.append(r)
            print(r, file=sys.stderr, flush=True)
    print(json.dumps({"policy": path, "episodes": n, "rows": rows}, indent=1))
