"""EXP: does fleet experience improve the *whole* VLA beyond the same compute without it?

v0 + one round of fleet episodes (v0 acting, scripted operator correcting) at deployment conditions; then the same
number of full-VLA flow-matching steps on images either on demos + fleet (filtered: demos, corrections, successful
non-overruled steps; the `bc` rule) or on the demos only (the `pretrain_more` control). Held-out autonomous success
at deployment every CHECK steps.
Usage: fleet_full_vla.py STORE FLEET_EPISODES STEPS ARM(bc|pretrain_more) [EVAL]
"""
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lwd.data.schema import SOURCE_EXPERT
from lwd.data.store import ExperienceStore
from lwd.policy.checkpoint import load_checkpoint
from lwd.policy.inference import VLAPolicy
from lwd.rl.bc import BCConfig, ImageBC
from lwd.rl.dataset import ChunkBuffer
from lwd.rl.pretrain import rollout_to_steps
from lwd.sim.evaluate import EVAL_SEED0, FLEET_SEED0, wilson
from lwd.sim.expert import ScriptedExpert
from lwd.sim.operator import ScriptedOperator
from lwd.sim.rollout import run_episode
from lwd.sim.world import SimWorld

torch.set_num_threads(1)
root, n_fleet, steps, arm = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
n_eval = int(sys.argv[5]) if len(sys.argv) > 5 else 50
check = int(os.environ.get("CHECK", steps // 2))
lr = float(os.environ.get("LR", "1e-3"))
store = ExperienceStore(root)
model = load_checkpoint(root / "policies/v0").model.eval()
demos = [store.load(r) for r in store.episodes(source="demo")]
t = time.time()
fleet = []
with SimWorld() as w:
    op = ScriptedOperator(w, ScriptedExpert(w, noise=0.0, seed=0))
    pol = VLAPolicy(model, 0, seed=1, exec_steps=5)
    for i in range(n_fleet):
        ro = run_episode(w, "pick_place", FLEET_SEED0 + i, actor=pol, operator=op)
        fleet.append(rollout_to_steps(ro, "robot0", f"fleet-{i}", 0, source="fleet", version=0))
ok = sum(e.success for e in fleet)
print(f"[{arm}] fleet {n_fleet} episodes, {ok} succeeded with the operator, "
      f"{sum(int((e.source == 1).any()) for e in fleet)} with interventions ({time.time() - t:.0f}s)", flush=True)
buf = ChunkBuffer(model.cfg)
for e in demos + fleet:
    buf.add_episode(e)
mask = buf.filtered_bc_mask() if arm == "bc" else buf.source == SOURCE_EXPERT
print(f"[{arm}] training chunks: {int(mask.sum())} of {len(buf)}", flush=True)
algo = ImageBC(model, BCConfig(lr=lr))
sched = torch.optim.lr_scheduler.CosineAnnealingLR(algo.opt, T_max=steps, eta_min=lr * 0.1)
rng = np.random.default_rng(0)
t = time.time()
for i in range(1, steps + 1):
    st = algo.update(buf.gather(buf.sample_indices(64, rng, mask)))
    sched.step()
    if i % check == 0:
        pol = VLAPolicy(model, 1, seed=0, exec_steps=5)
        with SimWorld() as w:
            k = sum(run_episode(w, "pick_place", EVAL_SEED0 + j, actor=pol).success for j in range(n_eval))
        lo, hi = wilson(k, n_eval)
        print(f"[{arm}] step {i} loss {st['loss/actor']:.4f} ({time.time() - t:.0f}s): held-out pick_place "
              f"{k}/{n_eval} = {k / n_eval:.0%} [{lo:.0%}, {hi:.0%}]", flush=True)
