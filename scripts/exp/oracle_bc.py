"""Head-only BC on N scripted-expert episodes at deployment variation (frozen encoder): the data-scaling ceiling."""
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lwd.data.store import ExperienceStore
from lwd.policy.checkpoint import load_checkpoint
from lwd.policy.inference import VLAPolicy
from lwd.rl.bc import BCConfig, FilteredBC
from lwd.rl.dataset import ChunkBuffer
from lwd.rl.pretrain import rollout_to_steps
from lwd.sim.expert import DEFAULT_DEMO_NOISE
from lwd.sim.rollout import run_episode
from lwd.sim.world import SimWorld

FULL = os.environ.get("FULL") == "1"
CHECK = int(os.environ.get("CHECK", "1000000"))
LR = float(os.environ.get("LR", "3e-4"))
torch.set_num_threads(int(os.environ.get("THREADS", "1")))
root, ns, steps = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], int(sys.argv[3])
task = sys.argv[4] if len(sys.argv) > 4 else "pick_place"
store = ExperienceStore(Path(root))
demos = [store.load(r) for r in store.episodes(source="demo")]
t = time.time()
with SimWorld() as w:
    extra = []
    for i in range(max(ns)):
        ro = run_episode(w, task, 2_000_000 + i, expert_noise=DEFAULT_DEMO_NOISE, variation=1.0)
        extra.append(rollout_to_steps(ro, "oracle", f"o{i}", 0))
print(f"{len(extra)} expert episodes ({sum(e.success for e in extra)} ok) in {time.time()-t:.0f}s", flush=True)
for n in ns:
    model = load_checkpoint(Path(root) / "policies/v0").model.eval()
    buf = ChunkBuffer(model.cfg)
    for e in demos + extra[:n]:
        buf.add_episode(e)
    rng = np.random.default_rng(0); t = time.time()
    if FULL:
        from lwd.rl.bc import ImageBC
        algo = ImageBC(model, BCConfig(lr=LR))
        mask = buf.filtered_bc_mask()
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(algo.opt, T_max=steps, eta_min=LR * 0.1)
        for i in range(1, steps + 1):
            st = algo.update(buf.gather(buf.sample_indices(64, rng, mask)))
            sched.step()
            if i % CHECK == 0 and i < steps:
                pol = VLAPolicy(model, 0, seed=0, exec_steps=5)
                with SimWorld() as w:
                    k = sum(run_episode(w, task, 900000 + j, actor=pol, variation=1.0).success for j in range(30))
                print(f"  step {i} loss {st['loss/actor']:.4f} {time.time()-t:.0f}s: held-out {task}@1.0 {k}/30", flush=True)
    else:
        buf.encode_features(model.encode)
        algo = FilteredBC(model.expert, model.cfg.cond_dim, model.cfg.action_dim, BCConfig(lr=3e-4))
        for i in range(steps):
            algo.update(buf, rng)
    pol = VLAPolicy(model, 0, seed=0, exec_steps=5)
    with SimWorld() as w:
        k = sum(run_episode(w, task, 900000 + i, actor=pol, variation=1.0).success for i in range(30))
    print(f"n={n} steps={steps} train {time.time()-t:.0f}s: held-out {task}@1.0 {k}/30", flush=True)
