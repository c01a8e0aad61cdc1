"""EXP: pretrain a v0 with given PretrainConfig overrides (reusing a store's demos), then evaluate it autonomously on
held-out seeds at deployment conditions. Usage:
  python scripts/exp/pretrain_eval.py OUT [--demos-from STORE] [--eval N] [key=value ...]
"""
import json
import shutil
import sys
import time
from pathlib import Path

from lwd.app.demo import evaluate_versions
from lwd.rl.pretrain import PretrainConfig, pretrain


def main():
    args = sys.argv[1:]
    out = Path(args.pop(0))
    demos_from, n_eval, tasks = None, 50, ["pick_place", "restock3"]
    kw = {}
    while args:
        a = args.pop(0)
        if a == "--demos-from":
            demos_from = Path(args.pop(0))
        elif a == "--tasks":
            tasks = args.pop(0).split(",")
        elif a == "--eval":
            n_eval = int(args.pop(0))
        else:
            k, v = a.split("=")
            kw[k] = type(getattr(PretrainConfig, k))(v) if not isinstance(getattr(PretrainConfig, k), bool) else v == "1"
    if not (out / "policies" / "v0").exists():
        if demos_from is not None and not (out / "episodes" / "demo").exists():
            shutil.copytree(demos_from / "episodes" / "demo", out / "episodes" / "demo")
        t = time.time()
        pretrain(out, PretrainConfig(**kw), progress=False)
        print(f"pretrained in {time.time() - t:.0f} s", flush=True)
    t = time.time()
    res = evaluate_versions(out, [0], tasks, n_eval, workers=2)
    print(f"evaluated in {time.time() - t:.0f} s", flush=True)
    print(json.dumps(res, indent=1))
    (out / "v0_eval.json").write_text(json.dumps({"config": kw, "eval": res}, indent=1))


if __name__ == "__main__":
    main()
