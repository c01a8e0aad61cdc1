"""EXP: pool bench/results/pick_place/ema/ (docs/learning.md row 72): Wilson intervals per policy and exact
McNemar tests on the seeds both policies saw. Usage: PYTHONPATH=src ema_stats.py [DIR]"""
import json
import sys
from math import comb
from pathlib import Path

from lwd.sim.evaluate import wilson


def mcnemar(b: int, c: int) -> float:
    """Two-sided exact McNemar p of b vs c discordant pairs."""
    n = b + c
    return min(1.0, 2 * sum(comb(n, i) for i in range(min(b, c) + 1)) / 2**n) if n else 1.0


def outcomes(d: Path) -> dict[str, dict[int, int]]:
    """policy -> {seed: success} over result.json and every more*_<policy>.json of one directory (a file saved
    without per-seed outcomes adds its count under ``"<policy>#counts"``: [successes, episodes])."""
    out: dict = {}
    r = json.loads((d / "result.json").read_text())
    for k, v in r.items():
        if isinstance(v, dict) and "outcomes" in v:
            out.setdefault(k, {}).update({r["seed0"] + i: x for i, x in enumerate(v["outcomes"])})
    for f in sorted(d.glob("more*_*.json")):
        m = json.loads(f.read_text())
        k = f.stem.split("_", 1)[1]
        if "outcomes" in m:
            out.setdefault(k, {}).update({m["seed0"] + i: x for i, x in enumerate(m["outcomes"]["pick_place"])})
        else:
            r = m["success"]["pick_place"]
            c = out.setdefault(f"{k}#counts", [0, 0])
            c[0], c[1] = c[0] + r["successes"], c[1] + r["episodes"]
    return out


def report(name: str, per: list[dict[str, dict[int, int]]]) -> None:
    keys = sorted({k for p in per for k in p if "#" not in k})
    for k in keys:
        xs = [x for p in per for x in p.get(k, {}).values()]
        ok = sum(xs) + sum(p.get(f"{k}#counts", [0, 0])[0] for p in per)
        n = len(xs) + sum(p.get(f"{k}#counts", [0, 0])[1] for p in per)
        lo, hi = wilson(ok, n)
        print(f"{name} {k}: {ok}/{n} = {ok / n:.1%} [{lo:.1%}, {hi:.1%}]")
    for k in keys:
        if k == "raw":
            continue
        b = c = 0
        for p in per:
            for s in p.get("raw", {}).keys() & p.get(k, {}).keys():
                b += p[k][s] > p["raw"][s]
                c += p["raw"][s] > p[k][s]
        print(f"{name} {k} vs raw, paired: {b} / {c}, exact McNemar p = {mcnemar(b, c):.3f}")


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/pick_place/ema")
    report("v1", [outcomes(d) for d in sorted(root.glob("s*"))])
    report("v0", [outcomes(root / "v0")])
