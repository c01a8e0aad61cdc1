"""EXP: autonomous held-out success of one policy on each task (deployment variation 1.0), plus the per-family
instruction probe. Usage: eval_tasks.py POLICY_DIR TASKS(comma) EPISODES [PROBE_SCENES [SEED0]] > out.json
SEED0 defaults to the evaluation seeds; ``gate`` takes the gate's (for choosing between candidates without
touching the seeds that report results); a number N starts N seeds into the evaluation seeds."""
import json
import sys
from pathlib import Path

import torch

from lwd.policy.checkpoint import load_checkpoint
from lwd.policy.inference import VLAPolicy
from lwd.sim.evaluate import EVAL_SEED0, GATE_SEED0, evaluate, family_probe
from lwd.sim.world import SimWorld

if __name__ == "__main__":
    torch.set_num_threads(1)
    path, tasks, n = Path(sys.argv[1]), sys.argv[2].split(","), int(sys.argv[3])
    scenes = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    arg = sys.argv[5] if len(sys.argv) > 5 else "eval"
    seed0 = {"gate": GATE_SEED0, "eval": EVAL_SEED0}.get(arg) or EVAL_SEED0 + int(arg)
    model = load_checkpoint(path).model.eval()
    out = {"policy": str(path), "episodes": n, "seed0": seed0}
    with SimWorld(image_size=model.cfg.image_size, cameras=model.cfg.cameras) as world:
        policy = VLAPolicy(model, 0, seed=0, exec_steps=5)
        for t in tasks:
            outcomes: list[int] = []
            r = evaluate(world, policy, [t], n, seed0=seed0,
                         on_episode=lambda _t, _i, ok: outcomes.append(int(ok)))[t].to_dict()
            out.setdefault("success", {})[t] = r
            out.setdefault("outcomes", {})[t] = outcomes
            print(f"{t}: {r['successes']}/{r['episodes']} = {r['success']:.0%} [{r['ci_low']:.0%}, {r['ci_high']:.0%}]"
                  f" progress {r['progress']:.2f}", file=sys.stderr, flush=True)
        if scenes:
            out["probe"] = family_probe(world, policy, tasks, scenes, seed0=seed0)
            for t, p in out["probe"].items():
                print(f"probe {t}: {p}", file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))
