"""Scripted operator: takeover on stall, corrections make progress, chunked actors."""

from __future__ import annotations

import numpy as np
import pytest

from lwd.sim.expert import ScriptedExpert, arm_slice
from lwd.sim.operator import ScriptedOperator
from lwd.sim.rollout import SOURCE_OPERATOR, SOURCE_POLICY, run_episode
from lwd.sim.world import GRIPPER_OPEN, SimWorld


class HomeActor:
    """A stalled policy: always returns a chunk that holds the home pose."""

    def __init__(self, world: SimWorld) -> None:
        self.world = world
        self.calls = 0

    def reset(self) -> None:
        self.calls = 0

    def act(self, obs: dict[str, object]) -> np.ndarray:
        self.calls += 1
        return np.tile(self.world.home_qpos, (4, 1))


@pytest.fixture(scope="module")
def world() -> SimWorld:
    with SimWorld(image_size=16) as w:
        yield w


def test_operator_takes_over_stalled_policy(world: SimWorld) -> None:
    actor = HomeActor(world)
    op = ScriptedOperator(world, ScriptedExpert(world), stall_s=2.0)
    r = run_episode(world, "pick_place", 3, actor=actor, operator=op)
    assert r.interventions >= 1
    assert r.events[0][1] == "takeover"
    assert r.events[0][0] == pytest.approx(20, abs=2)  # stall_s / CONTROL_DT
    assert r.source[0] == SOURCE_POLICY and np.any(r.source == SOURCE_OPERATOR)
    assert r.success and r.progress == 1


def test_operator_corrections_progress_long_horizon(world: SimWorld) -> None:
    op = ScriptedOperator(world, ScriptedExpert(world), stall_s=2.0, max_interventions=2)
    r = run_episode(world, "restock3", 0, actor=HomeActor(world), operator=op)
    assert r.interventions == 2
    assert [e for _, e in r.events] == ["takeover", "release", "takeover", "release"]
    assert r.progress == 2 and not r.success


def test_operator_idle_when_policy_works(world: SimWorld) -> None:
    op = ScriptedOperator(world, ScriptedExpert(world))
    r = run_episode(world, "pick_place", 1, actor=ScriptedExpert(world), operator=op)
    assert r.success and r.interventions == 0


def test_operator_takes_over_on_misplaced_item(world: SimWorld) -> None:
    world.reset("pick_place", 2)
    item = world.goals[0].item
    adr = world.item_qadr[item]
    world.data.qpos[adr : adr + 3] = (0.4, -0.3, 0.05)  # knocked onto the table outside the bin
    state = world.get_state()
    op = ScriptedOperator(world, ScriptedExpert(world))
    world.set_state(state)
    world.apply(world.qpos14())
    world.apply(world.qpos14())
    d = op.step(world.time)
    assert d.engaged and d.event == "takeover" and d.reason == "misplaced" and d.action.shape == (14,)


def _tool_beside_item(world: SimWorld, dx: float) -> ScriptedOperator:
    """Reset pick_place and bring the expert's arm down beside its item (``dx`` metres off in x, across the fingers'
    closing axis), gripper open."""
    world.reset("pick_place", 4)
    expert = ScriptedExpert(world)
    g = world.goals[0]
    arm = expert.arm_for(g)
    c = world.item_pos(g.item)
    for z in (0.15, 0.06, 0.0):  # from above, then down to the item's centre height
        for _ in range(30):
            q = world.qpos14()
            q[arm_slice(arm)] = expert.solve_ik(arm, q, c + (dx, 0.0, z), np.pi / 2, iters=30)[arm_slice(arm)]
            q[[6, 13]] = GRIPPER_OPEN
            world.apply(q)
    p = world.tcp_pos(arm)
    assert np.linalg.norm(p[:2] - c[:2] - (dx, 0.0)) < 0.015 and p[2] < c[2] + 0.02
    return arm


def test_operator_takes_over_a_misaligned_approach(world: SimWorld) -> None:
    _tool_beside_item(world, 0.04)  # a finger would come down on the item
    state = world.get_state()
    for misaligned_s, expect in ((0.0, None), (0.2, "misaligned")):
        world.set_state(state)
        op = ScriptedOperator(world, ScriptedExpert(world), misaligned_s=misaligned_s)
        reasons = []
        for _ in range(4):
            d = op.step(world.time)
            reasons.append(d.reason if d.event == "takeover" else None)
            if d.engaged:
                break
            world.apply(world.qpos14())
        assert reasons[-1] == expect
        assert reasons[:-1] == [None] * (len(reasons) - 1)
        if expect:
            assert len(reasons) == 3  # t = 0, 0.1, 0.2 s: it waits misaligned_s before it takes over


def test_operator_leaves_an_aligned_grasp_alone(world: SimWorld) -> None:
    _tool_beside_item(world, 0.0)  # the item between the open fingers: about to grasp
    op = ScriptedOperator(world, ScriptedExpert(world), misaligned_s=0.2)
    for _ in range(5):
        assert not op.step(world.time).engaged
        world.apply(world.qpos14())
