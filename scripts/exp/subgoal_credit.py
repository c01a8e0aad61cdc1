"""EXP: how much of the fleet's policy data filtered BC keeps, per task, judged per episode (as before) or per
subgoal segment (``ChunkBuffer(subgoal_credit=True)``). Runs POLICY with the benchmark's scripted operator on N fleet
episodes per task (the bench's round-0 fleet seeds), through bags, and counts the cloned policy steps.
Usage: subgoal_credit.py POLICY_DIR TASKS(comma) N OUT_DIR > out.json"""
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from lwd.app.bench import deploy_episode
from lwd.data.reader import read_episode
from lwd.data.schema import SOURCE_POLICY, SOURCE_TELEOP
from lwd.data.steps_bag import write_steps_bag
from lwd.policy.checkpoint import load_checkpoint
from lwd.policy.inference import VLAPolicy
from lwd.rl.dataset import ChunkBuffer
from lwd.rl.pretrain import rollout_to_steps
from lwd.sim.evaluate import FLEET_SEED0
from lwd.sim.expert import ScriptedExpert
from lwd.sim.operator import ScriptedOperator
from lwd.sim.world import SimWorld

if __name__ == "__main__":
    torch.set_num_threads(1)
    path, tasks, n = Path(sys.argv[1]), sys.argv[2].split(","), int(sys.argv[3])
    out_dir = Path(sys.argv[4]) if len(sys.argv) > 4 else Path(tempfile.mkdtemp())
    model = load_checkpoint(path).model.eval()
    bufs = {c: ChunkBuffer(model.cfg, subgoal_credit=c) for c in (False, True)}
    stats: dict = {}
    with SimWorld(image_size=model.cfg.image_size, cameras=model.cfg.cameras) as world:
        policy = VLAPolicy(model, 0, seed=1, exec_steps=5)
        operator = ScriptedOperator(world, ScriptedExpert(world, noise=0.0, seed=0))
        for task in tasks:
            a = stats.setdefault(task, {"episodes": 0, "successes": 0, "subgoals": 0, "policy_steps": 0,
                                        "teleop_steps": 0, "kept_episode": 0, "kept_subgoal": 0})
            for i in range(n):
                ro = deploy_episode(world, policy, task, FLEET_SEED0 + i, operator)
                eid = f"{task}-{i:03d}"
                write_steps_bag(out_dir / eid, rollout_to_steps(ro, "bench", eid, 10**18 + i * 10**11,
                                                                source="fleet", version=0))
                steps = read_episode(out_dir / eid)
                assert len(steps.meta.subgoal_ns) == len(ro.subgoal_steps), (steps.meta.subgoal_ns, ro.subgoal_steps)
                lo = len(bufs[False]) if bufs[False]._parts else 0
                for b in bufs.values():
                    b.add_episode(steps)
                pol = np.asarray(steps.source) == SOURCE_POLICY
                a["episodes"] += 1
                a["successes"] += int(ro.success)
                a["subgoals"] += len(ro.subgoal_steps)
                a["policy_steps"] += int(pol.sum())
                a["teleop_steps"] += int((np.asarray(steps.source) == SOURCE_TELEOP).sum())
                for c, key in ((False, "kept_episode"), (True, "kept_subgoal")):
                    m = bufs[c].filtered_bc_mask()[lo:lo + len(pol)]
                    a[key] += int((m & pol).sum())
            print(task, a, file=sys.stderr, flush=True)
    print(json.dumps(stats, indent=1))
