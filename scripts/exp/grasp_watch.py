"""EXP: can an operator see a drop coming? For a policy on pick_place gate seeds, track the named item while a
gripper holds it (tilt from upright, offset from the tool centre) and report, per outcome, the largest tilt and offset
while held, and for the items dropped or tipped how long before letting go each was visible.
Usage: grasp_watch.py EPISODES POLICY_DIR > out.json
(EXEC_STEPS=k: execute k steps of each chunk, default 5 as deployed)"""
import collections
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
from lwd.sim.world import SimWorld

sys.path.insert(0, "scripts/exp")
from failure_modes import Spy, mode  # noqa: E402


class Watch(ScriptedOperator):
    """Never takes over; records the named item every control step."""

    def reset(self):
        super().reset()
        self.trace = []

    def step(self, t):
        w = self.world
        g = w.goals[0]
        arm = w.held_by(g.item)
        if arm is not None:
            tilt = math.degrees(math.acos(float(np.clip(w.item_mat(g.item)[2, 2], -1, 1))))
            off = float(np.linalg.norm((w.item_pos(g.item) - w.tcp_pos(arm))[:2]))
            self.trace.append((t, tilt, off))
        else:
            self.trace.append((t, None, None))
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
            m, _ = mode(world, ro, spy.held)
            held = [(t, a, o) for t, a, o in watch.trace if a is not None]
            row = {"seed": GATE_SEED0 + i, "mode": m, "held_s": round(0.1 * len(held), 1)}
            if held:
                row["max_tilt"] = round(max(a for _, a, _ in held), 1)
                row["max_off"] = round(max(o for _, _, o in held), 3)
                row["last_held_t"] = round(held[-1][0], 1)
                for th in (10, 15, 20, 30):
                    first = next((t for t, a, _ in held if a > th), None)
                    row[f"lead_tilt{th}"] = None if first is None else round(held[-1][0] - first, 1)
            rows.append(row)
            print(row, file=sys.stderr, flush=True)
    by = collections.defaultdict(list)
    for r in rows:
        by[r["mode"]].append(r)
    summary = {}
    for m, rs in by.items():
        h = [r for r in rs if "max_tilt" in r]
        summary[m] = {"n": len(rs), "max_tilt_sorted": sorted(r["max_tilt"] for r in h),
                      "max_off_sorted": sorted(r["max_off"] for r in h)}
    print(json.dumps({"policy": path, "episodes": n, "seed0": GATE_SEED0, "summary": summary, "rows": rows}, indent=1))
