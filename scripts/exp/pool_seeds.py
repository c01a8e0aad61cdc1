"""Pool `lwd bench learning` runs that differ only in the learner seed (`--seed`): per algorithm and round, the
held-out successes summed over seeds (Wilson interval on the pooled episodes) and the per-seed spread.

    python scripts/exp/pool_seeds.py OUT.json RUN1/bench_learning.json [ALGO:LABEL=]RUN2/bench_learning.json ...

``ALGO:LABEL=`` renames an algorithm of that run (e.g. the same algorithm at another commit).

Runs must share tasks, fleet episodes, updates and evaluation episodes (checked). The Wilson interval on
pooled episodes covers evaluation noise only; the per-seed range shows the training noise the seeds add.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lwd.sim.evaluate import wilson

SAME = ("tasks", "episodes_per_round", "updates_per_round", "offline_updates", "eval_episodes", "images",
        "takeover_terminal", "critic_features", "gate")


def _load(arg: str) -> tuple[Path, dict]:
    rename = {}
    if "=" in arg:
        spec, arg = arg.split("=", 1)
        algo, label = spec.split(":", 1)
        rename[algo] = label
    run = json.loads(Path(arg).read_text())
    run["results"] = {rename.get(a, a): rows for a, rows in run["results"].items()}
    return Path(arg), run


def pool(args: list[str]) -> dict:
    loaded = [_load(a) for a in args]
    paths = [p for p, _ in loaded]
    runs = [r for _, r in loaded]
    ref = runs[0]["config"]
    for p, r in zip(paths, runs, strict=True):
        diff = {k: (ref.get(k), r["config"].get(k)) for k in SAME if r["config"].get(k) != ref.get(k)}
        if diff:
            raise SystemExit(f"{p}: differs from {paths[0]} in {diff}")
    cells: dict[tuple[str, int], list[tuple[int, dict]]] = {}
    for r in runs:
        for algo, rows in r["results"].items():
            for row in rows:
                cells.setdefault((algo, row["round"]), []).append((r["config"]["seed"], row))
    tasks = list(ref["tasks"])
    out = []
    for (algo, rnd), seeded in sorted(cells.items()):
        if rnd == 0:  # v0 is shared: the same policy on the same seeds, counted once
            seeded = seeded[:1]
        seeds = sorted({s for s, _ in seeded})
        if len(seeds) != len(seeded):
            raise SystemExit(f"{algo} round {rnd}: a seed appears twice")
        k = sum(row["eval"][t]["successes"] for _, row in seeded for t in tasks)
        n = sum(row["eval"][t]["episodes"] for _, row in seeded for t in tasks)
        lo, hi = wilson(k, n)
        per_seed = {s: row["eval_success"] for s, row in seeded}
        out.append({"algo": algo, "round": rnd, "seeds": seeds, "successes": k, "episodes": n, "success": k / n,
                    "ci_low": lo, "ci_high": hi, "per_seed": per_seed})
    return {"runs": [{"path": str(p), "commit": r["commit"], "seed": r["config"]["seed"],
                      "algos": list(r["results"])} for p, r in zip(paths, runs, strict=True)],
            "tasks": tasks, "pooled": out}


def table(pooled: dict) -> str:
    lines = ["| algo | round | seeds | pooled success | per seed |", "|---|---|---|---|---|"]
    for c in pooled["pooled"]:
        per = ", ".join(f"s{s}: {v:.0%}" for s, v in sorted(c["per_seed"].items()))
        lines.append(f"| {c['algo']} | {c['round']} | {len(c['seeds'])} | {c['successes']}/{c['episodes']} = "
                     f"{c['success']:.0%} [{c['ci_low']:.0%}, {c['ci_high']:.0%}] | {per} |")
    return "\n".join(lines)


if __name__ == "__main__":
    result = pool(sys.argv[2:])
    result["table"] = table(result)
    Path(sys.argv[1]).write_text(json.dumps(result, indent=1))
    print(result["table"])
