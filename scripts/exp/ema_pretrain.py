"""EXP: does an exponential moving average (EMA) of the weights make a better v0? Runs `lwd pretrain`'s recipe
(PretrainConfig defaults) on an existing store's demos while keeping EMA copies of the VLA, writes the raw v0 to
OUT/store/policies and each EMA v0 to OUT/ema<decay>/v0, and evaluates all on the same held-out seeds.
Usage: ema_pretrain.py DEMO_STORE OUT DECAYS(comma) [EVAL_EPISODES [SEED0_OFFSET [STEPS]]]"""
import shutil
import sys
import time
from pathlib import Path

from ema_round import evaluate_all  # scripts/exp/, on the path when run as a script
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import lwd.rl.pretrain as pre
from lwd.policy.checkpoint import load_checkpoint, save_checkpoint
from lwd.sim.evaluate import EVAL_SEED0

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
    evaluate_all(policies, {"store": str(src), "steps": steps, "seed0": seed0, "episodes": n_eval},
                 out / "result.json")
