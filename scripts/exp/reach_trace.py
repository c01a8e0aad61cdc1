"""EXP: trace the acting arm's tool-to-item distance (xy cm / z cm / gripper cm) every 5 steps, expert vs v0.
Usage: reach_trace.py STORE SEED[,SEED..] [EXEC_STEPS]"""
import sys

import numpy as np
import torch

from lwd.policy.checkpoint import load_checkpoint
from lwd.policy.inference import VLAPolicy
from lwd.sim.expert import ScriptedExpert
from lwd.sim.rollout import obs
from lwd.sim.world import SimWorld

torch.set_num_threads(1)
model = load_checkpoint(sys.argv[1] + "/policies/v0").model
pol = VLAPolicy(model, 0, seed=0, exec_steps=int(sys.argv[3]) if len(sys.argv) > 3 else 5)
with SimWorld() as w:
    for seed in [int(s) for s in sys.argv[2].split(",")]:
        for who in ("expert", "policy"):
            w.reset("pick_place", seed, 0.6)
            g = w.goals[0]; ex = ScriptedExpert(w); ex.reset(); arm = ex.arm_for(g)
            actor = ex if who == "expert" else pol
            actor.reset(); chunk = []; line = []
            for step in range(80):
                if not chunk:
                    chunk = list(np.asarray(actor.act(obs(w))).reshape(-1, 14))
                w.apply(np.clip(chunk.pop(0), w.joint_low, w.joint_high))
                if step % 5 == 4:
                    d = w.tcp_pos(arm) - w.item_pos(g.item)
                    line.append(f"{np.linalg.norm(d[:2])*100:4.1f}/{d[2]*100:4.1f}/{w.gripper(arm)*100:3.1f}")
            print(f"{seed} {g.item} {arm} {who:6s} " + " ".join(line[:14]), flush=True)
