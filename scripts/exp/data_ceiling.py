"""Is lwd's pick_place plateau the 64 px policy's limit or its data's? Fine-tune a fleet-trained version on perfect
deployment data and evaluate it on the benchmark's held-out seeds.

    data_ceiling.py POLICY DEMO_STORE N STEPS [EVAL_N] [TASK]

POLICY (e.g. runs/fork_off/lwd/store/policies/v10) is first evaluated as the benchmark does (noise 0, 5 steps per
chunk, seeds EVAL_SEED0 ..), then trained as a round of image BC trains it (whole VLA, lr 1e-3 cosine to 1e-4,
batch 64) on DEMO_STORE's demos plus N scripted-expert episodes at deployment variation (seeds 2,000,000+, disjoint
from demo, gate, evaluation and fleet seeds), evaluated at STEPS/2 and STEPS.
"""
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lwd.data.store import ExperienceStore
from lwd.policy.checkpoint import load_checkpoint
from lwd.policy.inference import VLAPolicy
from lwd.rl.bc import BCConfig, ImageBC
from lwd.rl.dataset import ChunkBuffer
from lwd.rl.pretrain import rollout_to_steps
from lwd.sim.evaluate import EVAL_SEED0, evaluate, wilson
from lwd.sim.expert import DEFAULT_DEMO_NOISE
from lwd.sim.rollout import run_episode
from lwd.sim.world import SimWorld

torch.set_num_threads(1)
policy_dir, demo_root, n, steps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
eval_n = int(sys.argv[5]) if len(sys.argv) > 5 else 100
task = sys.argv[6] if len(sys.argv) > 6 else "pick_place"


def held_out(model, label: str, t0: float) -> None:
    pol = VLAPolicy(model.eval(), 0, seed=0, exec_steps=5)
    with SimWorld() as w:
        r = evaluate(w, pol, (task,), eval_n, seed0=EVAL_SEED0)[task]
    lo, hi = wilson(r.successes, r.episodes)
    print(f"{label}: held-out {task} {r.successes}/{r.episodes} = {r.successes / r.episodes:.0%} "
          f"[{lo:.0%}, {hi:.0%}] ({time.time() - t0:.0f}s)", flush=True)


t = time.time()
model = load_checkpoint(policy_dir).model
held_out(model, f"start {policy_dir}", t)
store = ExperienceStore(demo_root)
demos = [store.load(r) for r in store.episodes(source="demo")]
extra = []
with SimWorld() as w:
    for i in range(n):
        ro = run_episode(w, task, 2_000_000 + i, expert_noise=DEFAULT_DEMO_NOISE, variation=1.0)
        extra.append(rollout_to_steps(ro, "oracle", f"o{i}", 0))
print(f"{len(demos)} demos + {n} expert episodes at deployment ({sum(e.meta.success for e in extra)} succeeded), "
      f"{time.time() - t:.0f}s", flush=True)
buf = ChunkBuffer(model.cfg)
for e in demos + extra:
    buf.add_episode(e)
mask = buf.filtered_bc_mask()
algo = ImageBC(model, BCConfig(lr=1e-3))
algo.begin_schedule(steps)
rng = np.random.default_rng(0)
for i in range(1, steps + 1):
    st = algo.update(buf.gather(buf.sample_indices(64, rng, mask)))
    if i == steps // 2 or i == steps:
        held_out(model, f"step {i} loss {st['loss/actor']:.4f}", t)  # ImageBC.update sets train mode itself
