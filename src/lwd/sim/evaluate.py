"""Autonomous evaluation on held-out seeds, with Wilson intervals, and the instruction-following probe (ROS-free).

Seed ranges are disjoint by construction, so no evaluation ever runs on a scene used for training or selection:
demonstrations use ``seed * 100_000 + i`` (i < 100_000), the promotion gate ``GATE_SEED0 + i``, evaluation
``EVAL_SEED0 + i`` and fleet/bench episodes ``FLEET_SEED0 + ...``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lwd.sim.rollout import Actor, obs, run_episode
from lwd.sim.tasks import ITEM_NAMES, get_task, task_names
from lwd.sim.world import ARMS, GRIPPER_OPEN, N_JOINTS, SimWorld

__all__ = ["EVAL_SEED0", "GATE_SEED0", "FLEET_SEED0", "wilson", "TaskResult", "evaluate", "instruction_probe",
           "family_probe"]

GATE_SEED0 = 800_000
EVAL_SEED0 = 900_000
FLEET_SEED0 = 1_000_000


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate k/n (``(0, 1)`` when n = 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


@dataclass
class TaskResult:
    task: str
    successes: int
    episodes: int
    robot_s: float
    """Simulated seconds spent (robot time)."""
    progress: float
    """Mean fraction of subgoals achieved."""

    @property
    def rate(self) -> float:
        return self.successes / max(1, self.episodes)

    def to_dict(self) -> dict:
        lo, hi = wilson(self.successes, self.episodes)
        return {"success": self.rate, "ci_low": lo, "ci_high": hi, "successes": self.successes,
                "episodes": self.episodes, "robot_s": round(self.robot_s, 1), "progress": round(self.progress, 3)}


def evaluate(world: SimWorld, actor: Actor, tasks: Sequence[str], episodes: int, seed0: int = EVAL_SEED0,
             variation: float = 1.0, on_episode: Callable[[str, int, bool], None] | None = None
             ) -> dict[str, TaskResult]:
    """Autonomous (no operator) success of ``actor`` on seeds ``seed0 .. seed0 + episodes - 1`` of every task."""
    out: dict[str, TaskResult] = {}
    for task in tasks:
        ok, robot_s, prog = 0, 0.0, 0.0
        for i in range(episodes):
            ro = run_episode(world, task, seed0 + i, actor=actor, variation=variation)
            ok += ro.success
            robot_s += world.time
            prog += ro.progress / max(1, world.num_subgoals)
            if on_episode is not None:
                on_episode(task, i, ro.success)
        out[task] = TaskResult(task, ok, episodes, robot_s, prog / max(1, episodes))
    return out


def _run_until(world: SimWorld, actor: Actor, max_steps: int, check: Callable[[], str | None]) -> str | None:
    """Step ``actor`` (chunk by chunk) until ``check()`` names an item, or None after ``max_steps``."""
    chunk: list[np.ndarray] = []
    actor.reset()
    for _ in range(max_steps):
        if not chunk:
            chunk = list(np.asarray(actor.act(obs(world)), dtype=np.float64).reshape(-1, N_JOINTS))
        world.apply(np.clip(chunk.pop(0), world.joint_low, world.joint_high))
        got = check()
        if got is not None:
            return got
    return None


def _first_approach(world: SimWorld, actor: Actor, max_steps: int) -> str | None:
    """Run ``actor`` until one gripper closes low over the table (or ``max_steps``); the item nearest that tool."""
    def check() -> str | None:
        for arm in ARMS:
            if world.gripper(arm) < 0.6 * GRIPPER_OPEN and world.tcp_pos(arm)[2] < 0.12:
                tcp = world.tcp_pos(arm)[:2]
                return min(ITEM_NAMES, key=lambda n: float(np.linalg.norm(world.item_pos(n)[:2] - tcp)))
        return None

    return _run_until(world, actor, max_steps, check)


def instruction_probe(world: SimWorld, actor: Actor, scenes: int, seed0: int = EVAL_SEED0, task: str = "pick_place",
                      max_steps: int = 60, variation: float = 1.0) -> dict:
    """Same scene, each instruction: does the policy head for the named item?

    For every scene (seed) and every item, the scene is reset identically, the instruction names that item, and the
    item under the first tool that closes its gripper near the table counts as the one the policy went for.
    Returns ``{"followed": k, "trials": n, "rate", "ci_low", "ci_high", "no_grasp": m, "chance": 1/3}``.
    """
    spec = get_task(task)
    if spec.num_subgoals != 1:
        raise ValueError(f"the instruction probe needs a single-item task, {task!r} has {spec.num_subgoals}")
    followed = trials = none = 0
    for s in range(scenes):
        for item in ITEM_NAMES:
            world.reset(task, seed0 + s, variation, target=item)
            got = _first_approach(world, actor, max_steps)
            trials += 1
            followed += got == item
            none += got is None
    lo, hi = wilson(followed, trials)
    return {"followed": followed, "trials": trials, "rate": followed / max(1, trials), "ci_low": lo, "ci_high": hi,
            "no_grasp": none, "chance": 1 / len(ITEM_NAMES)}


# Why the instruction probe does not apply to a task family (``TaskSpec.items`` without ``targets``).
PROBE_NOT_APPLICABLE = {
    "all": "every item, in a fixed order: the instruction names no choice",
    "pair": "two items and a direction drawn together: no single named item to go for first",
    "handover": "the pack is the only item in play: nothing to choose between",
}


def _first_item_closure(world: SimWorld, actor: Actor, max_steps: int, items: Sequence[str],
                        radius: float) -> str | None:
    """Run ``actor`` until a gripper is closed with its tool within ``radius`` of an item in play (closures
    elsewhere, e.g. on the drawer handle, do not count); that item, or None after ``max_steps``."""
    def check() -> str | None:
        for arm in ARMS:
            if world.gripper(arm) < 0.6 * GRIPPER_OPEN:
                tcp = world.tcp_pos(arm)
                dist = {n: float(np.linalg.norm(world.item_pos(n) - tcp)) for n in items}
                near = min(dist, key=dist.__getitem__)
                if dist[near] < radius:
                    return near
        return None

    return _run_until(world, actor, max_steps, check)


def family_probe(world: SimWorld, actor: Actor, tasks: Sequence[str] | None = None, scenes: int = 2,
                 seed0: int = EVAL_SEED0, max_steps: int = 150, variation: float = 1.0,
                 radius: float = 0.08) -> dict[str, dict]:
    """The instruction probe for every task family with a choosable target (``TaskSpec.targets``).

    For every scene (seed) and every target (an item; for ``semantic`` a category), the scene is reset with that
    target and the item under the first gripper that closes within ``radius`` of an item in play counts as the one
    the actor went for; it follows the instruction if that is the named item (``semantic``: any item of the named
    category). Per task: ``{"applicable": True, "followed", "trials", "rate", "ci_low", "ci_high", "no_grasp",
    "chance", "same_scene"}``, where ``chance`` is the mean share of items in play an instruction-blind pick of one
    of them would get right, and ``same_scene`` says whether every target of a seed showed the same items at the
    same poses (pick_place, place_slot: only the instruction differs; unstock starts the named item on its slot, and
    the store tasks bring the named item into the scene, so there the scene itself can give the target away).
    Tasks without targets (restock3, sort_colour, handover) are ``{"applicable": False, "why": ...}``.
    """
    out: dict[str, dict] = {}
    for task in tasks or task_names():
        spec = get_task(task)
        if not spec.targets:
            out[task] = {"applicable": False, "why": PROBE_NOT_APPLICABLE.get(spec.items, "no choosable target")}
            continue
        followed = trials = none = 0
        chance = 0.0
        same = True
        for s in range(scenes):
            first: dict[str, np.ndarray] | None = None
            for target in spec.targets:
                world.reset(task, seed0 + s, variation, target=target)
                items = world.present_items()
                poses = {n: world.item_pos(n) for n in items}
                if first is None:
                    first = poses
                elif set(first) != set(poses) or any(not np.allclose(first[n], poses[n]) for n in poses):
                    same = False
                chance += sum(spec.accepts(target, n) for n in items) / len(items)
                got = _first_item_closure(world, actor, max_steps, items, radius)
                trials += 1
                followed += got is not None and spec.accepts(target, got)
                none += got is None
        lo, hi = wilson(followed, trials)
        out[task] = {"applicable": True, "followed": followed, "trials": trials, "rate": followed / max(1, trials),
                     "ci_low": lo, "ci_high": hi, "no_grasp": none, "chance": chance / max(1, trials),
                     "same_scene": same}
    return out
