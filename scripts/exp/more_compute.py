"""EXP: one more lwd round's learner compute on the data a store already holds, no new fleet episodes (is a plateau
the learner under-fitting?). Run it on a copy of a bench algorithm's store; it publishes the next version there.
Usage: more_compute.py STORE [UPDATES [TASKS]]  (defaults: 5000 updates, pick_place; the bench's learner settings)"""
import sys
import time

import torch

from lwd.rl.fleet_rl import FleetRLConfig
from lwd.rl.learner import Learner, LearnerConfig

if __name__ == "__main__":
    torch.set_num_threads(1)
    t0 = time.time()
    learner = Learner(sys.argv[1], LearnerConfig(
        algo="lwd", min_new_episodes=1, updates_per_round=int(sys.argv[2]) if len(sys.argv) > 2 else 5000,
        offline_updates=300, background_updates=0, gate="none",
        tasks=tuple(sys.argv[3].split(",")) if len(sys.argv) > 3 else ("pick_place",), exec_steps=5, seed=0,
        algo_overrides={"images": True, "critic_features": FleetRLConfig.critic_features}))
    print(f"loaded v{learner.version} in {time.time() - t0:.0f} s", flush=True)
    print(f"published v{learner.update_round()} at {time.time() - t0:.0f} s", flush=True)
