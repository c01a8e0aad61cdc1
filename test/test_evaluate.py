"""Evaluation statistics, the instruction probe and scene variation (ROS-free)."""

import numpy as np
import pytest

from lwd.rl.learner import roc_auc
from lwd.sim.evaluate import EVAL_SEED0, FLEET_SEED0, GATE_SEED0, evaluate, instruction_probe, wilson
from lwd.sim.tasks import ITEMS
from lwd.sim.world import ITEM_SPREAD, SimWorld


def test_wilson_interval_matches_known_values():
    lo, hi = wilson(7, 60)
    assert abs(lo - 0.0577) < 2e-3 and abs(hi - 0.2222) < 2e-3  # 12% (6-22%), as in the diagnosis
    assert wilson(0, 0) == (0.0, 1.0)
    lo, hi = wilson(50, 50)
    assert hi == 1.0 and 0.92 < lo < 0.94


def test_roc_auc():
    assert roc_auc(np.array([0.9, 0.8, 0.1, 0.2]), np.array([1, 1, 0, 0])) == 1.0
    assert roc_auc(np.array([0.1, 0.2, 0.9, 0.8]), np.array([1, 1, 0, 0])) == 0.0
    assert roc_auc(np.array([0.5, 0.5]), np.array([1, 0])) == 0.5
    assert roc_auc(np.array([0.5, 0.6]), np.array([1, 1])) is None


def test_seed_ranges_are_disjoint():
    assert 100_000 <= GATE_SEED0 < EVAL_SEED0 < FLEET_SEED0  # demos use seed * 100_000 + i with seed 0


class _Expertish:
    """Actor that drives the scripted expert (privileged; only to test the probe's bookkeeping)."""

    def __init__(self, world):
        from lwd.sim.expert import ScriptedExpert

        self.expert = ScriptedExpert(world, noise=0.0)

    def reset(self):
        self.expert.reset()

    def act(self, obs):
        return self.expert.act()[None]


def test_instruction_probe_scores_an_instruction_follower():
    with SimWorld() as world:
        out = instruction_probe(world, _Expertish(world), scenes=2)
    assert out["trials"] == 6 and out["followed"] == 6 and out["no_grasp"] == 0


def test_evaluate_counts_successes_and_robot_time():
    with SimWorld() as world:
        res = evaluate(world, _Expertish(world), ("pick_place",), episodes=2)
    r = res["pick_place"].to_dict()
    assert r["episodes"] == 2 and r["successes"] == 2 and r["ci_low"] > 0.1 and r["robot_s"] > 1.0


def test_variation_scales_item_poses():
    with SimWorld(render=False) as world:
        spreads = {}
        for var in (0.25, 1.0):
            xs = []
            for s in range(40):
                world.reset("pick_place", EVAL_SEED0 + s, var)
                xs.append([world.item_pos(n)[1] for n in ITEMS])
            spreads[var] = np.ptp(np.array(xs))
        assert spreads[0.25] < 0.5 * ITEM_SPREAD[1] < spreads[1.0]
        with pytest.raises(ValueError):
            world.reset("pick_place", 0, variation=-1.0)


def test_pretraining_mix_is_balanced_and_contrastive():
    """Every item is the target equally often, and each scene is shown with every target (only the instruction
    tells those demos apart)."""
    from collections import Counter

    from lwd.rl.pretrain import demo_jobs

    jobs = demo_jobs("pick_place", 42, 0)
    assert Counter(t for _, t in jobs) == {"can": 14, "box": 14, "bottle": 14}
    by_scene: dict[int, set] = {}
    for seed, target in jobs:
        by_scene.setdefault(seed, set()).add(target)
    assert all(v == set(ITEMS) for v in by_scene.values())
    with SimWorld(render=False) as world:
        poses = []
        for item in ITEMS:
            world.reset("pick_place", 7, 0.6, target=item)
            assert world.goals[0].item == item and ITEMS[item].label in world.instruction
            poses.append(np.concatenate([world.item_pos(n) for n in ITEMS]))
        assert np.allclose(poses[0], poses[1]) and np.allclose(poses[0], poses[2])  # the same scene
    assert demo_jobs("restock3", 3, 5) == [(5, None), (6, None), (7, None)]
