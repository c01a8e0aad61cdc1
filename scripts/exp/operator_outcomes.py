"""EXP: where the scripted operator's corrections end. A policy runs pick_place gate seeds with the operator; per
episode: the reasons it took over, and the outcome (success / failure mode of failure_modes.py) with and without it.
Usage: operator_outcomes.py EPISODES POLICY_DIR > out.json
(MISALIGNED_S=s: the operator's misaligned_s, default 0; EXEC_STEPS=k: execute k steps of each chunk, default 5)"""
import collections
import json
import os
import sys

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


class Logged(ScriptedOperator):
    def reset(self):
        super().reset()
        self.reasons = []

    def step(self, t):
        d = super().step(t)
        if d.event == "takeover":
            self.reasons.append(d.reason)
        return d


if __name__ == "__main__":
    torch.set_num_threads(1)
    n, path = int(sys.argv[1]), sys.argv[2]
    model = load_checkpoint(path).model.eval()
    rows, table = [], collections.Counter()
    with SimWorld(image_size=model.cfg.image_size, cameras=model.cfg.cameras) as world:
        spy = Spy(VLAPolicy(model, 0, seed=0, exec_steps=int(os.environ.get("EXEC_STEPS", 5))), world)
        op = Logged(world, ScriptedExpert(world), misaligned_s=float(os.environ.get("MISALIGNED_S", 0)))
        for i in range(n):
            seed = GATE_SEED0 + i
            alone = mode(world, run_episode(world, "pick_place", seed, actor=spy), spy.held)[0]
            helped = mode(world, run_episode(world, "pick_place", seed, actor=spy, operator=op), spy.held)[0]
            rows.append({"seed": seed, "alone": alone, "helped": helped, "reasons": op.reasons})
            table[f"{alone} -> {helped} | {','.join(op.reasons) or '-'}"] += 1
            print(rows[-1], file=sys.stderr, flush=True)
    print(json.dumps({"policy": path, "misaligned_s": op.misaligned_s, "episodes": n,
                      "table": dict(table.most_common()), "rows": rows}, indent=1))
