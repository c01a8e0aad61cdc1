"""EXP: can the bench's fine-tuning recipe raise a multi-task v0 given *perfect* deployment data?

Whole-VLA image BC (the bench's: lr 1e-3 cosine to 1e-4, batch 64) on the store's demos plus N scripted-expert
episodes per task at deployment variation (seeds 2_000_000 + ..., disjoint from every other range), from v0.
Usage: oracle_tasks.py STORE TASKS(comma) N_PER_TASK STEPS OUT [WORKERS]; writes OUT/policies/v1 (evaluate it with
eval_tasks.py). The same steps on the demos alone are the bench's pretrain_more control."""
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np
import torch


def _expert(args):
    from lwd.rl.pretrain import rollout_to_steps
    from lwd.sim.expert import DEFAULT_DEMO_NOISE
    from lwd.sim.rollout import run_episode
    from lwd.sim.world import SimWorld

    task, n, size = args
    out = []
    with SimWorld(image_size=size) as w:
        for i in range(n):
            ro = run_episode(w, task, 2_000_000 + i, expert_noise=DEFAULT_DEMO_NOISE, variation=1.0)
            out.append(rollout_to_steps(ro, "oracle", f"{task}-{i}", 0, source="fleet"))
    return out


if __name__ == "__main__":
    from lwd.data.store import ExperienceStore
    from lwd.policy.checkpoint import load_checkpoint, save_checkpoint
    from lwd.rl.bc import BCConfig, ImageBC
    from lwd.rl.dataset import ChunkBuffer

    torch.set_num_threads(1)
    root, tasks, n, steps, out = Path(sys.argv[1]), sys.argv[2].split(","), int(sys.argv[3]), int(sys.argv[4]), \
        Path(sys.argv[5])
    workers = int(sys.argv[6]) if len(sys.argv) > 6 else 2
    model = load_checkpoint(root / "policies" / "v0").model.eval()
    t = time.time()
    with mp.get_context("spawn").Pool(workers) as pool:
        extra = [e for part in pool.map(_expert, [(tk, n, model.cfg.image_size) for tk in tasks]) for e in part]
    print(f"{len(extra)} expert episodes at deployment ({sum(e.success for e in extra)} ok) in {time.time() - t:.0f}s",
          flush=True)
    store = ExperienceStore(root)
    buf = ChunkBuffer(model.cfg)
    for e in [store.load(r) for r in store.episodes(source="demo")] + extra:
        buf.add_episode(e)
    algo = ImageBC(model, BCConfig(lr=1e-3))
    algo.begin_schedule(steps)
    mask, rng, t = buf.filtered_bc_mask(), np.random.default_rng(0), time.time()
    for i in range(1, steps + 1):
        st = algo.update(buf.gather(buf.sample_indices(64, rng, mask)))
        if i % 1000 == 0:
            print(f"step {i} loss {st['loss/actor']:.4f} {time.time() - t:.0f}s", flush=True)
    path = save_checkpoint(out / "policies", model, 1, extra={"oracle_per_task": n, "steps": steps})
    print(f"wrote {path}", flush=True)
