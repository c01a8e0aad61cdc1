"""SimWorld: determinism, limits, state mirroring, rendering, success detection."""

from __future__ import annotations

import numpy as np
import pytest

from lwd.sim.tasks import TASKS, task_names
from lwd.sim.world import CONTROL_DT, JOINT_NAMES, N_JOINTS, SimWorld


@pytest.fixture(scope="module")
def world() -> SimWorld:
    with SimWorld(image_size=32) as w:
        yield w


def test_constants() -> None:
    assert N_JOINTS == 14 == len(JOINT_NAMES)
    assert JOINT_NAMES[6] == "left_gripper" and JOINT_NAMES[13] == "right_gripper"
    assert CONTROL_DT == pytest.approx(0.1)
    assert {"pick_place", "restock3"} <= set(task_names())
    assert TASKS["restock3"].long_horizon and not TASKS["pick_place"].long_horizon


def test_reset_deterministic_and_randomized(world: SimWorld) -> None:
    world.reset("pick_place", 7)
    s1, i1 = world.get_state(), world.instruction
    world.apply(world.home_qpos)
    world.reset("pick_place", 7)
    np.testing.assert_array_equal(world.get_state(), s1)
    assert world.instruction == i1
    states = set()
    instructions = set()
    for seed in range(6):
        world.reset("pick_place", seed)
        states.add(world.get_state().round(6).tobytes())
        instructions.add(world.instruction)
    assert len(states) == 6
    assert len(instructions) > 1
    assert world.qpos14().shape == (14,) and world.qvel14().shape == (14,)
    assert world.joint_low.shape == world.joint_high.shape == world.home_qpos.shape == (14,)


def test_apply_rejects_bad_targets_and_holds_pose(world: SimWorld) -> None:
    world.reset("pick_place", 0)
    bad = world.home_qpos.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError):
        world.apply(bad)
    with pytest.raises(ValueError):
        world.apply(np.full(14, np.inf))
    with pytest.raises(ValueError):
        world.apply(np.zeros(13))
    q0 = world.qpos14()
    t0 = world.time
    for _ in range(5):
        world.apply(world.qpos14())
    assert world.time == pytest.approx(t0 + 5 * CONTROL_DT)
    np.testing.assert_allclose(world.qpos14(), q0, atol=0.02)
    world.apply(np.full(14, 100.0))  # clipped, not an error
    assert np.all(world.data.ctrl[world.act_ids] <= world.joint_high + 1e-12)


def test_render_and_mirror(world: SimWorld) -> None:
    world.reset("restock3", 3)
    for _ in range(3):
        world.apply(world.home_qpos + 0.2)
    img = world.render()
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8 and img.std() > 5
    with SimWorld(image_size=32) as mirror:
        mirror.reset("restock3", 3)
        mirror.set_state(world.get_state())
        np.testing.assert_array_equal(mirror.render(), img)
        np.testing.assert_array_equal(mirror.qpos14(), world.qpos14())
        assert mirror.instruction == world.instruction
        with pytest.raises(ValueError):
            mirror.set_state(np.zeros(3))
    headless = SimWorld(render=False)
    with pytest.raises(RuntimeError):
        headless.render()


def test_success_false_at_reset(world: SimWorld) -> None:
    for task in ("pick_place", "restock3"):
        for seed in range(3):
            world.reset(task, seed)
            assert not world.success()
            assert world.progress() == 0
            assert world.num_subgoals == TASKS[task].num_subgoals


def test_unstable_physics_marks_the_episode_failed(world: SimWorld, monkeypatch) -> None:
    """MuJoCo resets the state when it meets NaN/huge values: such an episode is no evidence, never a success."""
    from lwd.sim.expert import ScriptedExpert
    from lwd.sim.rollout import run_episode

    expert = ScriptedExpert(world, noise=0.0, seed=0)
    assert run_episode(world, "pick_place", 3, actor=expert).success and not world.unstable
    apply, calls = world.apply, []

    def blow_up(target, *a, **k):
        calls.append(1)
        if len(calls) == 5:
            world.data.qvel[:] = 1e30
        apply(target, *a, **k)

    monkeypatch.setattr(world, "apply", blow_up)
    ro = run_episode(world, "pick_place", 3, actor=expert)
    assert world.unstable and not ro.success
    monkeypatch.undo()
    world.reset("pick_place", 3)
    assert not world.unstable
