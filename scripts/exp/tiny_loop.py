"""EXP: can one learner round on recorded fleet bags raise held-out success, fast, for a small policy in an easy
setting? (the issue's learning regression test; lwd.app.learning_check runs it). Pretrains a small v0, measures it,
records a round of operator-corrected fleet episodes as bags, runs one Learner round, measures again.
Usage: tiny_loop.py OUT [key=value ...]   (keys: CFG below, or any lwd.app.learning_check.CheckConfig field)

Rows 38 and 40 of docs/learning.md ran this script's defaults at dd058f8 (target drawn per seed, whole-VLA learner);
row 47 runs lwd.app.learning_check's defaults (CheckConfig: defect=1 target=can images=0 updates=10000 ...)."""
import dataclasses
import json
import sys

from lwd.app.learning_check import CheckConfig, run_check

ALIAS = dict(steps="pretrain_steps", image="image_size", channels="vision_channels", cond="cond_dim",
             fleet="fleet_episodes", evals="eval_episodes", warmup="image_warmup", pseed="pretrain_seed")
# dd058f8's defaults (rows 38, 40); `check=1` starts from CheckConfig's instead
CFG = dict(demos=6, variation=0.0, pretrain_steps=1500, image_size=32, vision_channels=8, hidden=128, cond_dim=128,
           fleet_episodes=30, updates=1500, algo="bc", eval_episodes=40, seed=0, task="pick_place", images=True,
           lr=1e-3, defect=False, image_warmup=0, target=None, pretrain_seed=-1)


def main():
    args = dict(a.split("=", 1) for a in sys.argv[2:])
    base = {} if args.pop("check", "0") == "1" else dict(CFG)
    types = {f.name: f.type for f in dataclasses.fields(CheckConfig)}
    for k, v in args.items():
        k = ALIAS.get(k, k)
        if k not in types:
            raise SystemExit(f"unknown key {k!r}")
        if k == "target":
            base[k] = v or None
        elif "bool" in str(types[k]):
            base[k] = bool(int(v))
        else:
            base[k] = type(getattr(CheckConfig(), k))(v)
    if base.get("pretrain_seed", 0) < 0:  # dd058f8: one seed for v0 and the learner
        base["pretrain_seed"] = base.get("seed", 0)
    res = run_check(sys.argv[1], CheckConfig(**base), log=lambda m: print(m, flush=True))
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
