"""EXP: how a policy fails on pick_place, per named item, on gate seeds (disjoint from the evaluation seeds): success;
held the named item but did not place it (with where it ended: on the shelf off its slot, tipped or dropped, still
held); held another item only; held nothing. Usage: failure_modes.py EPISODES POLICY_DIR [POLICY_DIR ..] > out.json
(EXEC_STEPS=k in the environment: execute k steps of each chunk, default 5 as deployed)."""
import collections
import json
import os
import sys

import torch

from lwd.policy.checkpoint import load_checkpoint
from lwd.policy.inference import VLAPolicy
from lwd.sim.evaluate import GATE_SEED0
from lwd.sim.rollout import run_episode
from lwd.sim.world import SHELF_TOP, SLOT_HALF, SLOTS, SimWorld


class Spy:
    """The policy, noting every item held at a re-plan."""

    def __init__(self, policy, world):
        self.policy, self.world, self.held = policy, world, set()

    def reset(self):
        self.held = set()
        self.policy.reset()

    def act(self, o):
        self.held.update(n for n in self.world.present_items() if self.world.held_by(n))
        return self.policy.act(o)


def mode(world, ro, held) -> tuple[str, float | None]:
    """(failure mode, the item's distance from its slot's centre in x and y, metres, when placed off it)."""
    g = world.goals[0]
    if ro.success:
        return "success", None
    if g.item not in held:
        return ("held another item only" if held else "held nothing"), None
    if world.held_by(g.item):
        return "still held at the time limit", None
    p = world.item_pos(g.item)
    if world.item_upright(g.item) and world.item_bottom(g.item) > SHELF_TOP - 0.015:
        sx, sy = SLOTS[g.region]
        return "on the shelf, off its slot", round(max(abs(p[0] - sx), abs(p[1] - sy)), 3)
    return "tipped or dropped", None


if __name__ == "__main__":
    torch.set_num_threads(1)
    n = int(sys.argv[1])
    exec_steps = int(os.environ.get("EXEC_STEPS", 5))
    out = {"episodes": n, "seed0": GATE_SEED0, "exec_steps": exec_steps, "slot_half_m": SLOT_HALF, "policies": {}}
    for path in sys.argv[2:]:
        model = load_checkpoint(path).model.eval()
        modes, off = collections.Counter(), []
        with SimWorld(image_size=model.cfg.image_size, cameras=model.cfg.cameras) as world:
            spy = Spy(VLAPolicy(model, 0, seed=0, exec_steps=exec_steps), world)
            for i in range(n):
                ro = run_episode(world, "pick_place", GATE_SEED0 + i, actor=spy)
                m, d = mode(world, ro, spy.held)
                modes[f"{world.goals[0].item}: {m}"] += 1
                modes[m] += 1
                if d is not None:
                    off.append(d)
        out["policies"][path] = {"modes": dict(sorted(modes.items())), "off_slot_m": sorted(off)}
        print(path, dict(sorted(modes.items())), "off by", sorted(off), file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1))
