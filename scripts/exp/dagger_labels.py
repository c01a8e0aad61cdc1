"""Would labels on the policy's own states beat the operator's takeovers, for the same robot time?

    dagger_labels.py POLICY FLEET_STORE ROUND STEPS [EVAL_N] [MODE]

Replays one round of the benchmark's pick_place fleet (FLEET_STORE's ``bench-r{ROUND}`` episodes, collected by
POLICY with the scripted operator correcting) differently: POLICY acts alone on the same fleet seeds, and the
scripted expert labels every step it visits (DAgger, beta = 0; the labels are recorded as teleop, so the filtered-BC
mask keeps them all). POLICY is then trained as a round of image BC trains it (whole VLA, lr 1e-3 cosine to 1e-4,
batch 64, STEPS updates) on the store's demos, the earlier rounds' fleet episodes and the relabelled round, and
evaluated on the benchmark's held-out seeds. The comparison is the version the benchmark trained from the same
policy on the same seeds with the operator's episodes instead (e.g. v11 of runs/fork_off for ROUND 10).

MODE ``dagger`` (default) labels every step; ``failed`` keeps only the episodes the policy failed alone, labelled,
and the successes as they were (policy actions, unlabelled), which is what a human relabelling afterwards could do.
``operator`` is the control on the same code path: the round's recorded operator-corrected episodes, unchanged.
"""
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lwd.data.schema import SOURCE_TELEOP
from lwd.data.store import ExperienceStore
from lwd.policy.checkpoint import load_checkpoint
from lwd.policy.inference import VLAPolicy
from lwd.rl.bc import BCConfig, ImageBC
from lwd.rl.dataset import ChunkBuffer
from lwd.rl.pretrain import rollout_to_steps
from lwd.sim.evaluate import EVAL_SEED0, evaluate, wilson
from lwd.sim.expert import ScriptedExpert
from lwd.sim.rollout import run_episode
from lwd.sim.world import CONTROL_DT, SimWorld

torch.set_num_threads(1)
policy_dir, store_root, rnd, steps = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
eval_n = int(sys.argv[5]) if len(sys.argv) > 5 else 100
mode = sys.argv[6] if len(sys.argv) > 6 else "dagger"
if mode not in ("dagger", "failed", "operator"):
    raise SystemExit(f"MODE must be dagger, failed or operator, got {mode!r}")
TASK = "pick_place"


class Labelled:
    """Acts by the policy's chunks one step at a time and asks the expert what it would do at every step."""

    def __init__(self, world: SimWorld, policy: VLAPolicy) -> None:
        self.world, self.policy = world, policy
        self.labels: list[np.ndarray] = []
        self._chunk: list[np.ndarray] = []

    def reset(self) -> None:
        self.policy.reset()
        self.expert = ScriptedExpert(self.world, noise=0.0, seed=0)
        self.labels, self._chunk = [], []

    def act(self, o: dict) -> np.ndarray:
        self.labels.append(self.expert.act().astype(np.float32))  # the state before this step's action
        if not self._chunk:
            self._chunk = list(np.asarray(self.policy.act(o), dtype=np.float64).reshape(-1, 14))
        return self._chunk.pop(0)[None]


t = time.time()
store = ExperienceStore(store_root)
fleet = [r for r in store.episodes() if r.robot == "bench"]
earlier = [r for r in fleet if int(r.episode_id.split("-")[1][1:]) < rnd]
this = sorted((r for r in fleet if r.episode_id.startswith(f"bench-r{rnd}-")), key=lambda r: r.episode_id)
this = this[:int(os.environ.get("LIMIT", len(this)))]  # LIMIT: a smoke test
if not this:
    raise SystemExit(f"no bench-r{rnd}-* episodes in {store_root}")
model = load_checkpoint(policy_dir).model
relabelled, alone, robot_s = [], 0, 0.0
with SimWorld() as w:
    actor = Labelled(w, VLAPolicy(model.eval(), 0, seed=0, exec_steps=5))
    for r in this if mode != "operator" else []:
        ro = run_episode(w, TASK, r.seed, actor=actor, variation=1.0)
        robot_s += len(ro) * CONTROL_DT
        alone += ro.success
        if mode == "dagger" or not ro.success:
            ro.actions = np.stack(actor.labels)
            ro.source = np.full(len(ro), SOURCE_TELEOP, dtype=np.int8)
        relabelled.append(rollout_to_steps(ro, "dagger", f"d{r.seed}", 0, source="fleet"))
op_s = sum((r.end_ns - r.start_ns) / 1e9 for r in this)
print(f"round {rnd}: {len(this)} seeds; {mode}: policy alone {alone}/{len(this)}, {robot_s / 3600:.2f} robot-h "
      f"(operator round: {sum(r.success for r in this)}/{len(this)} with help, {op_s / 3600:.2f} robot-h); "
      f"{len(earlier)} earlier fleet episodes; {time.time() - t:.0f}s", flush=True)
buf = ChunkBuffer(model.cfg)
for r in store.episodes(source="demo") + earlier:
    buf.add_episode(store.load(r))
for e in relabelled if mode != "operator" else [store.load(r) for r in this]:
    buf.add_episode(e)
mask = buf.filtered_bc_mask()
algo = ImageBC(model, BCConfig(lr=1e-3))
algo.begin_schedule(steps)
rng = np.random.default_rng(0)
for _ in range(steps):
    st = algo.update(buf.gather(buf.sample_indices(64, rng, mask)))
pol = VLAPolicy(model.eval(), 0, seed=0, exec_steps=5)
with SimWorld() as w:
    res = evaluate(w, pol, (TASK,), eval_n, seed0=EVAL_SEED0)[TASK]
lo, hi = wilson(res.successes, res.episodes)
print(f"{mode}, {steps} updates (loss {st['loss/actor']:.4f}): held-out {TASK} {res.successes}/{res.episodes} = "
      f"{res.successes / res.episodes:.0%} [{lo:.0%}, {hi:.0%}] ({time.time() - t:.0f}s)", flush=True)
