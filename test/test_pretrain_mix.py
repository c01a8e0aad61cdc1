"""The pretraining mix (lwd.sim.mix): demos balanced across goals and item identities for every registered task."""

from __future__ import annotations

import dataclasses
import shutil
from collections import Counter

import numpy as np
import pytest

from lwd.sim import mix
from lwd.sim.tasks import ITEM_NAMES, get_task, task_names
from lwd.sim.world import SimWorld, scene_goals


def test_scene_goals_match_reset():
    """The MuJoCo-free goal draw the mix counts with is exactly what SimWorld.reset draws."""
    with SimWorld(render=False) as world:
        for task in task_names():
            for seed in (3, 900_001):
                for target in (None, *get_task(task).targets[-1:]):
                    world.reset(task, seed, 0.6, target=target)
                    assert (world.goals, world.instruction) == scene_goals(task, seed, target), (task, seed, target)


@pytest.mark.parametrize("task", task_names())
def test_demo_jobs_are_balanced(task: str):
    k = mix.goal_count(task)
    jobs = mix.demo_jobs(task, 3 * k, 0)
    keys = Counter(mix.goal_key(task, scene_goals(task, seed, target)[0]) for seed, target in jobs)
    assert set(keys) == set(mix.goal_values(task)) and len(keys) == k  # every goal the task can draw ...
    assert set(keys.values()) == {3}  # ... equally often
    targets = get_task(task).targets
    by_scene: dict[int, list] = {}
    for seed, target in jobs:
        by_scene.setdefault(seed, []).append(target)
    assert all(sorted(v, key=str) == sorted(targets or (None,)) for v in by_scene.values())  # each target per scene
    assert all(0 <= seed < 100_000 for seed in by_scene)  # inside the demo seed range
    if targets:  # item identities: each target as often as the others
        assert set(Counter(t for _, t in jobs).values()) == {3 * k // len(targets)}
    assert len(mix.demo_jobs(task, k + 1, 5)) == k + 1


def test_goal_counts():
    counts = {t: mix.goal_count(t) for t in task_names()}
    assert counts == {"pick_place": 3, "restock3": 1, "place_slot": 9, "sort_colour": 12, "unstock": 3,
                      "handover": 4, "drawer": 3, "stack": 12, "semantic": 6}


@pytest.mark.parametrize("n, seed0", [(40, 0), (7, 100_000), (1, 5)])
def test_default_tasks_keep_their_demos(n: int, seed0: int):
    """pick_place and restock3 (v0's demos): the same (seed, target) jobs, hence the same episode ids, as before."""
    assert mix.demo_jobs("pick_place", n, seed0) == [(seed0 + i // 3, ITEM_NAMES[(i + i // 3) % 3]) for i in range(n)]
    assert mix.demo_jobs("restock3", n, seed0) == [(seed0 + i, None) for i in range(n)]


def test_semantic_target_is_a_category():
    spec = get_task("semantic")
    assert spec.targets == ("drink", "fruit", "snack")
    for cat in spec.targets:
        goals, text = scene_goals("semantic", 11, cat)
        assert {spec.accepts(cat, g.item) for g in goals} == {True}
        assert goals[0].region == scene_goals("semantic", 11)[0][0].region  # the destination stays the seed's
    with pytest.raises(ValueError):
        scene_goals("semantic", 11, "can")
    with pytest.raises(ValueError):
        scene_goals("handover", 11, "spaghetti")


def test_pretrain_uses_the_balanced_mix():
    from lwd.rl.pretrain import demo_jobs

    assert all(demo_jobs(t, 24, 0) == mix.demo_jobs(t, 24, 0) for t in task_names())


def test_parallel_demo_collection_writes_the_serial_demos(tmp_path, monkeypatch):
    """Demo workers write the same episodes (ids, outcomes, steps) as the serial collection; a wall-clock budget
    sizes the training steps and the manifest records them."""
    import json

    from lwd.data.store import ExperienceStore
    from lwd.rl.pretrain import PretrainConfig, collect_demos, pretrain

    cfg = PretrainConfig(tasks=("pick_place",), demos_per_task=2, image_size=32, steps=2, batch_size=8,
                         vision_channels=4, cond_dim=32, hidden=32)
    serial, parallel = ExperienceStore(tmp_path / "s"), ExperienceStore(tmp_path / "p")
    assert collect_demos(serial, cfg, progress=False) == collect_demos(
        parallel, dataclasses.replace(cfg, workers=2), progress=False)
    a, b = sorted(serial.episodes(source="demo"), key=str), sorted(parallel.episodes(source="demo"), key=str)
    assert len(a) == 2 and [serial.load(r).meta.episode_id for r in a] == [parallel.load(r).meta.episode_id for r in b]
    for ra, rb in zip(a, b, strict=True):
        ea, eb = serial.load(ra), parallel.load(rb)
        assert ea.success == eb.success and np.array_equal(ea.actions, eb.actions)
    import lwd.rl.pretrain as pt

    monkeypatch.setattr(pt, "_step_seconds", lambda *a, **k: 0.1)
    path = pretrain(tmp_path / "p", dataclasses.replace(cfg, time_budget_s=0.5), progress=False)
    assert json.loads((path / "manifest.json").read_text())["steps"] == 5
    # a probe far faster than the real steps: the run re-times itself and stops at the budget, then saves
    monkeypatch.setattr(pt, "_step_seconds", lambda *a, **k: 1e-5)
    shutil.rmtree(path)
    path = pretrain(tmp_path / "p", dataclasses.replace(cfg, time_budget_s=0.3), progress=False)
    assert 0 < json.loads((path / "manifest.json").read_text())["steps"] < 30000


def test_cosine_factor_decays_to_its_floor_and_follows_a_shortened_run():
    from lwd.rl.pretrain import cosine_factor

    assert cosine_factor(0, 100) == 1.0 and abs(cosine_factor(100, 100) - 0.1) < 1e-12
    assert abs(cosine_factor(50, 100) - 0.55) < 1e-12
    assert cosine_factor(60, 50) == cosine_factor(50, 50)  # past the end: the floor
    xs = [cosine_factor(k, 40) for k in range(41)]
    assert all(a >= b for a, b in zip(xs, xs[1:], strict=False))
