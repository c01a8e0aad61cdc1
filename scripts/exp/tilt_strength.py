"""EXP: from a finished image-mode lwd store (critic + reference VLA of its last round), redo the round-end tilt with
another beta / number of tilt steps and evaluate the tilted policy on held-out pick_place seeds.
Usage: tilt_strength.py STORE BETA TILT_STEPS EPISODES  (works on a copy of STORE)"""
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from lwd.policy.inference import VLAPolicy
from lwd.rl.learner import Learner, LearnerConfig
from lwd.sim.evaluate import evaluate
from lwd.sim.world import SimWorld

if __name__ == "__main__":
    torch.set_num_threads(1)
    src, beta, steps, n = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        shutil.copytree(src, root)
        learner = Learner(root, LearnerConfig(algo="lwd", gate="none", offline_updates=0, background_updates=0,
                                              takeover_terminal=True, algo_overrides={
                                                  "images": True, "critic_features": "reference", "beta": beta,
                                                  "tilt_steps": steps, "tilt_guard": False}))
        algo = learner.algo
        algo.extractor.cfg.beta = beta
        stats = algo.on_round_end(learner.buffer, np.random.default_rng(0))
        print({k: round(v, 4) for k, v in stats.items() if k.startswith("actor/tilt")}, flush=True)
        with SimWorld() as w:
            r = evaluate(w, VLAPolicy(learner.model, 99, seed=0, exec_steps=5), ["pick_place"], n)["pick_place"]
        print(f"beta {beta} tilt_steps {steps}: pick_place {r.successes}/{r.episodes} "
              f"[{r.to_dict()['ci_low']:.0%}, {r.to_dict()['ci_high']:.0%}]", flush=True)
