"""EXP: is the long task the short task's per-item skill, chained? Items placed per episode, autonomous.

For each policy spec, every held-out seed's episode: success and how many items it placed (the subgoals it
reached, ``EpisodeRollout.subgoal_steps``). Reports P(>= k items) and P(item k+1 | item k) with 95% Wilson
intervals, so a chained task's success can be set against the per-item rates that make it.

Usage: item_chain.py TASK EPISODES SPEC,SPEC,... [WORKERS] [FIRST_SEED_OFFSET] > out.json
SPEC: POLICY_DIR (plain, as deployed) or POLICY_DIR@N:SIGMA[:MODE] (value-guided selection among N chunks with
the version's published critic, ``value_select.py``'s SelectPolicy; MODE q or rand).
"""
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from value_select import SelectPolicy, load_critic  # noqa: E402

from lwd.policy.checkpoint import load_checkpoint  # noqa: E402
from lwd.policy.inference import VLAPolicy  # noqa: E402
from lwd.sim.evaluate import EVAL_SEED0, wilson  # noqa: E402
from lwd.sim.rollout import run_episode  # noqa: E402
from lwd.sim.world import CONTROL_DT, SimWorld  # noqa: E402


def run(args):
    spec, task, start, count = args
    torch.set_num_threads(1)
    d, _, sel = spec.partition("@")
    model = load_checkpoint(Path(d)).model.eval()
    if sel:
        n, sigma, *mode = sel.split(":")
        critic = load_critic(Path(d), model.cfg.cond_dim, model.cfg.action_dim)
        pol = SelectPolicy(model, critic, int(n), float(sigma), mode[0] if mode else "q")
    else:
        pol = VLAPolicy(model, 0, seed=0, exec_steps=5)
    rows = []
    with SimWorld(image_size=model.cfg.image_size, cameras=model.cfg.cameras) as w:
        for i in range(start, start + count):
            ro = run_episode(w, task, EVAL_SEED0 + i, actor=pol, variation=1.0)
            rows.append((int(ro.success), len(ro.subgoal_steps), [g.item for g in w.goals],
                         [round(t * CONTROL_DT, 2) for t in ro.subgoal_steps], round(len(ro) * CONTROL_DT, 2)))
        items = max(1, w.num_subgoals)
    return spec, start, rows, items


def summary(rows: list[tuple], items: int) -> dict:
    n = len(rows)
    out = {"episodes": n, "successes": sum(r[0] for r in rows),
           "mean_items": round(sum(r[1] for r in rows) / max(1, n), 3)}
    lo, hi = wilson(out["successes"], n)
    out["success"], out["ci"] = round(out["successes"] / max(1, n), 4), [round(lo, 4), round(hi, 4)]
    reached = [sum(r[1] >= j for r in rows) for j in range(items + 1)]
    out["reached"] = reached  # reached[j]: episodes that placed at least j items
    cond = []
    for j in range(items):
        a, b = reached[j + 1], reached[j]
        lo, hi = wilson(a, b) if b else (0.0, 1.0)
        cond.append({"item": j + 1, "placed": a, "of": b, "rate": round(a / b, 4) if b else None,
                     "ci": [round(lo, 4), round(hi, 4)]})
    out["per_item"] = cond
    by_name: dict[str, list[int]] = {}  # item name -> [placed, attempted] (attempted: every earlier one placed)
    for r in rows:
        for j, name in enumerate(r[2][: r[1] + 1]):
            acc = by_name.setdefault(name, [0, 0])
            acc[0] += int(j < r[1])
            acc[1] += 1
    out["per_item_name"] = {k: {"placed": a, "of": b, "rate": round(a / b, 4)} for k, (a, b) in by_name.items()}
    return out


if __name__ == "__main__":
    task, n_ep, specs = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
    workers = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    start = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    block = 25
    jobs = [(s, task, b, min(block, start + n_ep - b)) for s in specs for b in range(start, start + n_ep, block)]
    res: dict[str, list] = {s: [] for s in specs}
    found = {1}
    with ProcessPoolExecutor(workers) as ex:
        for spec, _start, rows, n_items in sorted(ex.map(run, jobs), key=lambda r: (specs.index(r[0]), r[1])):
            res[spec] += rows
            found.add(n_items)
    items = max(found)
    out = {"task": task, "seeds": [EVAL_SEED0 + start, EVAL_SEED0 + start + n_ep], "items": items, "results": {}}
    for spec, rows in res.items():
        s = summary(rows, items)
        out["results"][spec] = {**s, "outcomes": [r[0] for r in rows], "placed": [r[1] for r in rows],
                                "items_order": [r[2] for r in rows], "subgoal_s": [r[3] for r in rows],
                                "episode_s": [r[4] for r in rows]}
        chain = " ".join(f"{c['placed']}/{c['of']}" for c in s["per_item"])
        print(f"{spec}: {s['successes']}/{s['episodes']} = {s['success']:.1%} [{s['ci'][0]:.1%}, {s['ci'][1]:.1%}]"
              f" items {s['mean_items']:.2f}; per item {chain}; by name "
              + " ".join(f"{k} {v['placed']}/{v['of']}" for k, v in s["per_item_name"].items()),
              file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))
