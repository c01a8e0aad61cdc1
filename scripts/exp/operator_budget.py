"""EXP: success *with* the scripted operator's help, per task, for a policy and a correction budget: does the
operator's default budget (3 takeovers of at most 5 s) finish the long store-scene tasks?
Usage: operator_budget.py POLICY_DIR TASKS(comma) EPISODES MAX_CORRECTION_S [MAX_INTERVENTIONS]"""
import sys
from pathlib import Path

import torch

from lwd.app.bench import deploy_episode
from lwd.policy.checkpoint import load_checkpoint
from lwd.policy.inference import VLAPolicy
from lwd.sim.evaluate import FLEET_SEED0
from lwd.sim.expert import ScriptedExpert
from lwd.sim.operator import ScriptedOperator
from lwd.sim.world import SimWorld

if __name__ == "__main__":
    torch.set_num_threads(1)
    path, tasks, n, corr = Path(sys.argv[1]), sys.argv[2].split(","), int(sys.argv[3]), float(sys.argv[4])
    k = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    model = load_checkpoint(path).model.eval()
    with SimWorld(image_size=model.cfg.image_size, cameras=model.cfg.cameras) as world:
        policy = VLAPolicy(model, 0, seed=0, exec_steps=5)
        op = ScriptedOperator(world, ScriptedExpert(world, noise=0.0), max_correction_s=corr, max_interventions=k)
        for t in tasks:
            ok = iv = 0
            for i in range(n):
                ro = deploy_episode(world, policy, t, FLEET_SEED0 + 500_000 + i, op)
                ok += bool(ro.success)
                iv += op.interventions
            print(f"{t}: {ok}/{n} with the operator (corrections <= {corr:g} s, <= {k}), "
                  f"{iv / n:.1f} interventions/episode", flush=True)
