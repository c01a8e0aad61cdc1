"""EXP: a stronger eight-task v0 where a GPU is lent (docs/learning.md row 41).

Collects the scripted demos once on ``workers`` processes, then pretrains one v0 per batch size side by side on
``device`` (each given ``budget`` seconds of training), and copies each into ``out/b<batch>``.

    python scripts/exp/gpu_pretrain.py OUT DEMOS_PER_TASK BUDGET_S DEVICE WORKERS BATCHES(comma, e.g. 128,256)
"""

import dataclasses
import json
import logging
import multiprocessing as mp
import shutil
import sys
import time
from pathlib import Path

from lwd.data.store import ExperienceStore
from lwd.rl.pretrain import PretrainConfig, collect_demos, pretrain

TASKS = ("pick_place", "place_slot", "handover", "drawer", "sort_colour", "stack", "restock3", "semantic")


def train(job):
    root, cfg = job
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    t = time.time()
    path = pretrain(root, cfg, progress=False)
    manifest = json.loads((path / "manifest.json").read_text())
    return {"store": str(root), "batch": cfg.batch_size, "steps": manifest["steps"],
            "loss": manifest["final_loss"], "wall_s": round(time.time() - t, 1)}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    out, demos, budget, device, workers = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], \
        int(sys.argv[5])
    batches = [int(b) for b in sys.argv[6].split(",")]
    base = PretrainConfig(tasks=TASKS, demos_per_task=demos, device=device, workers=workers, time_budget_s=budget)
    stores = [out / f"store_b{b}" for b in batches]
    t = time.time()
    ok = collect_demos(ExperienceStore(stores[0]), base, progress=False)
    print(f"demos: {ok}/{demos * len(TASKS)} succeeded in {time.time() - t:.0f} s", flush=True)
    for s in stores[1:]:
        shutil.copytree(stores[0], s)
    jobs = [(s, dataclasses.replace(base, batch_size=b)) for s, b in zip(stores, batches, strict=True)]
    if len(jobs) == 1:
        print(json.dumps(train(jobs[0])), flush=True)
    else:
        with mp.get_context("spawn").Pool(len(jobs)) as pool:
            for r in pool.imap_unordered(train, jobs):
                print(json.dumps(r), flush=True)
    for s, b in zip(stores, batches, strict=True):
        shutil.copytree(s / "policies" / "v0", out / f"b{b}")
