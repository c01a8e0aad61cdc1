"""The pretraining mix: demo scenes balanced across goals and item identities, for every registered task (MuJoCo-free).

A task's goals come from its seed, except for the part an instruction can single out (``TaskSpec.targets``: the item of
a single-item task, the fruit of ``drawer``, the top item of ``stack``, the category of ``semantic``). ``demo_jobs``
shows each scene with every target in turn (only the instruction tells those demos apart, so a policy must read it)
and picks the scenes' seeds so that the seed-drawn rest of the goal cycles through its values too (the slot of
``place_slot``, the base of ``stack``, the destination of ``semantic``, the ordered pair and direction of
``sort_colour``, the pack and giver of ``handover``). With ``n`` a multiple of ``goal_count(task)`` every goal
(``goal_key``) is demonstrated equally often.

``pick_place`` and ``restock3`` (the default curriculum, v0's demos) come out exactly as before: their goals have no
seed-drawn part to balance, so the scenes are consecutive seeds ``seed0, seed0 + 1, ...``.
"""

from __future__ import annotations

from functools import cache

from lwd.sim.tasks import CATALOGUE, Goal, get_task

__all__ = ["goal_key", "goal_values", "goal_count", "scene_key", "demo_jobs"]

_ENUM_SEEDS = 400  # seeds scanned to list the values of a task's seed-drawn goal part (each has p >= 1/12)
_MAX_SCAN = 50_000  # seeds demo_jobs may skip looking for the next scene (the demo seed range is 100_000 wide)


def goal_key(task: str, goals: tuple[Goal, ...]) -> tuple:
    """What balance counts: the goals as (item, region) pairs in order; for ``semantic`` (category, destination),
    the order of the three items being the expert's business."""
    if get_task(task).items == "semantic":
        return (CATALOGUE[goals[0].item].category, goals[0].region)
    return tuple((g.item, g.region) for g in goals)


def _targets(task: str) -> tuple[str | None, ...]:
    return get_task(task).targets or (None,)


def scene_key(task: str, seed: int) -> tuple:
    """The goal keys of one scene shown with each target in turn: what the seed decides."""
    from lwd.sim.world import scene_goals

    return tuple(goal_key(task, scene_goals(task, seed, t)[0]) for t in _targets(task))


@cache
def _scene_values(task: str) -> tuple[tuple, ...]:
    return tuple(sorted({scene_key(task, s) for s in range(_ENUM_SEEDS)}))


def goal_values(task: str) -> tuple[tuple, ...]:
    """Every goal key the task can draw, sorted."""
    return tuple(sorted({k for v in _scene_values(task) for k in v}))


def goal_count(task: str) -> int:
    """Number of distinct goals: ``demo_jobs(task, n)`` is balanced when ``n`` is a multiple of it."""
    return len(_targets(task)) * len(_scene_values(task))


def demo_jobs(task: str, n: int, seed0: int) -> list[tuple[int, str | None]]:
    """``n`` (seed, target) demo scenes, balanced across goals.

    Scene ``j`` is the first seed after scene ``j - 1``'s whose seed-drawn goal part is the ``j mod m``-th of its
    ``m`` values; job ``i`` shows scene ``i // k`` with target ``(i + i // k) mod k`` of the task's ``k`` targets
    (rotated so a partial last scene does not always favour the first target). Tasks without targets get one job per
    scene."""
    targets = _targets(task)
    values = _scene_values(task)
    k, m = len(targets), len(values)
    jobs: list[tuple[int, str | None]] = []
    seed = seed0 - 1
    for i in range(n):
        j = i // k
        if i % k == 0:  # a new scene
            seed += 1
            stop = seed + _MAX_SCAN
            while m > 1 and scene_key(task, seed) != values[j % m]:
                seed += 1
                if seed >= stop:
                    raise RuntimeError(f"{task}: no seed with goals {values[j % m]} in {_MAX_SCAN}")
        jobs.append((seed, targets[(i + j) % k]))
    return jobs
