"""EXP: does an exponential moving average (EMA) of the weights make a better v0? Runs `lwd pretrain`'s recipe
(PretrainConfig defaults) on an existing store's demos while keeping EMA copies of the VLA, writes the raw v0 to
OUT/store/policies and each EMA v0 to OUT/ema<decay>/v0, and evaluates all on the same held-out seeds.
Usage: ema_pretrain.py DEMO_STORE OUT DECAYS(comma) [EVAL_EPISODES [SEED0_OFFSET [STEPS]]]"""
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import lwd.rl.pretrain as pre
from lwd.policy.checkpoint import load_checkpoint, save_checkpoint
from lwd.policy.inference import VLAPolicy
from lwd.sim.evaluate import EVAL_SEED0, evaluate
from lwd.sim.world import SimWorld

if __name__ == "__main__":
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    decays = [float(d) for d in sys.argv[3].split(",")]
    n_eval = int(sys.argv[4]) if len(sys.argv) > 4 else 300
    seed0 = EVAL_SEED0 + (int(sys.argv[5]) if len(sys.argv) > 5 else 100)
    steps = int(sys.argv[6]) if len(sys.argv) > 6 else pre.PretrainConfig.steps
    t0 = time.time()
    store = out / "store"
    shutil.copytree(src / "episodes" / "demo", store / "episodes" / "demo")
    emas: dict[float, AveragedModel] = {}

    class TrackedBC(pre.ImageBC):
        def update(self, batch):
            stats = super().update(batch)
            for d in decays:
                if d not in emas:
                    emas[d] = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(d), use_buffers=True)
                emas[d].update_parameters(self.model)
            return stats

    pre.ImageBC = TrackedBC
    path = pre.pretrain(store, pre.PretrainConfig(steps=steps), progress=False)
    print(f"pretrained raw v0 at {time.time() - t0:.0f} s", flush=True)
    policies = {"raw": path}
    for d, e in emas.items():
        m = load_checkpoint(path).model
        m.load_state_dict(e.module.state_dict())
        policies[f"ema{d}"] = save_checkpoint(out / f"ema{d}", m.eval(), 0, extra={"ema_decay": d})
    res = {"store": str(src), "steps": steps, "seed0": seed0, "episodes": n_eval,
           "sha256": {k: json.loads((p / "manifest.json").read_text())["sha256"] for k, p in policies.items()}}
    torch.set_num_threads(1)
    with SimWorld(image_size=load_checkpoint(path).model.cfg.image_size) as world:
        for k, p in policies.items():
            policy = VLAPolicy(load_checkpoint(p).model.eval(), 0, seed=0, exec_steps=5)
            outcomes: list[int] = []
            r = evaluate(world, policy, ["pick_place"], n_eval, seed0=seed0,
                         on_episode=lambda _t, _i, ok: outcomes.append(int(ok)))["pick_place"].to_dict()
            res[k] = {**r, "outcomes": outcomes}
            print(f"{k}: {r['successes']}/{r['episodes']} = {r['success']:.0%} [{r['ci_low']:.0%}, {r['ci_high']:.0%}]"
                  f" at {time.time() - t0:.0f} s", flush=True)
            (out / "result.json").write_text(json.dumps(res, indent=1))
