"""Arm backends behind the arm driver's mux (ROS-free): the MuJoCo sim arm and the ros2_control arm."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lwd.control.arm_backend import RealArmBackend, SimArmBackend
from lwd.control.health import Rejected
from lwd.control.mux import CommandMux, Source
from lwd.robot import JOINT_NAMES, N_JOINTS

SRC = str(Path(__file__).resolve().parents[1] / "src")
LOW, HIGH = np.full(N_JOINTS, -1.0), np.full(N_JOINTS, 1.0)


class FakeWorld:
    """What SimArmBackend uses of SimWorld, without MuJoCo."""

    def __init__(self) -> None:
        self.joint_low, self.joint_high = LOW.copy(), HIGH.copy()
        self.q = np.zeros(N_JOINTS)
        self.resets: list[tuple[str, int]] = []
        self.solved = False
        self.closed = False
        self.placed = 0

    def reset(self, task: str, seed: int) -> None:
        if task not in ("pick_place", "restock3"):
            raise KeyError(task)
        self.resets.append((task, seed))
        self.q = np.full(N_JOINTS, 0.01 * seed)

    def apply(self, target, duration) -> None:
        t = np.asarray(target, dtype=np.float64)
        if t.shape != (N_JOINTS,) or not np.isfinite(t).all():
            raise ValueError("bad target")
        self.q = t.copy()

    def qpos14(self):
        return self.q.copy()

    def qvel14(self):
        return np.zeros(N_JOINTS)

    def get_state(self):
        return np.concatenate([[0.0], self.q])

    def success(self) -> bool:
        return self.solved

    def progress(self) -> int:
        return self.placed

    def close(self) -> None:
        self.closed = True


# -- sim backend ---------------------------------------------------------------------------------------------------
def test_sim_backend_interface_on_a_fake_world():
    world = FakeWorld()
    arm = SimArmBackend(world=world)
    assert arm.ready and world.resets == [("pick_place", 0)] and arm.state() is not None
    arm.reset({"event": "start", "task": "restock3", "seed": "7", "episode_id": "e"})
    assert world.resets[-1] == ("restock3", 7) and np.allclose(arm.measured()[0], 0.07)
    for bad in ({"event": "start"}, {"task": "pick_place", "seed": "x"}, {"task": "nope", "seed": 1}):
        with pytest.raises(Rejected) as e:
            arm.reset(bad)
        assert e.value.reason == "bad_event", bad
    assert np.allclose(arm.measured()[0], 0.07)  # a refused event leaves the world as it was
    arm.apply(np.full(N_JOINTS, 0.5), 0.02)
    pos, vel = arm.measured()
    assert np.allclose(pos, 0.5) and vel.shape == (N_JOINTS,)
    pos[:] = 9.0  # measured() hands out copies
    assert np.allclose(arm.measured()[0], 0.5)
    with pytest.raises(ValueError):
        arm.apply(np.full(N_JOINTS, np.nan), 0.02)
    assert not arm.success()
    world.solved = True
    assert arm.success()
    arm.apply(np.full(N_JOINTS, 1.25), 0.02)  # the fake world does not clip: the excess is recorded
    assert arm.max_limit_excess == pytest.approx(0.25)
    arm.close()
    assert not world.closed  # a world handed in belongs to the caller


def test_sim_backend_reports_each_subgoal_once_per_episode():
    world = FakeWorld()
    arm = SimArmBackend(world=world)
    assert arm.new_subgoals() == []
    world.placed = 2  # two items placed within one tick
    assert arm.new_subgoals() == [1, 2] and arm.new_subgoals() == []
    world.placed = 1  # one knocked off again, then placed again: not new
    assert arm.new_subgoals() == []
    world.placed = 3
    assert arm.new_subgoals() == [3]
    world.placed = 1  # a scene that starts with an item in place: that one is not the episode's
    arm.reset({"event": "start", "task": "restock3", "seed": 1})
    assert arm.new_subgoals() == []
    world.placed = 2
    assert arm.new_subgoals() == [2]
    assert RealArmBackend(LOW, HIGH, lambda *a: None).new_subgoals() == []


def test_sim_backend_drives_the_mujoco_world_like_the_driver_did():
    from lwd.sim.world import SimWorld

    arm = SimArmBackend()
    ref = SimWorld(render=False)
    try:
        arm.reset({"event": "start", "task": "restock3", "seed": 5})
        ref.reset("restock3", 5)
        assert np.array_equal(arm.state(), ref.get_state()) and np.array_equal(arm.measured()[0], ref.qpos14())
        assert np.array_equal(arm.low, ref.joint_low) and np.array_equal(arm.high, ref.joint_high)
        # Hostile commands through the mux at 50 Hz (as the driver ticks it): joints stay within their limits.
        mux = CommandMux(N_JOINTS, arm.low, arm.high, 3.0)
        mux.reset(arm.measured()[0])
        rng = np.random.default_rng(0)
        for k in range(150):
            if k % 3 == 0:
                mux.submit(Source.POLICY, rng.choice([-1e6, 1e6], size=(1, N_JOINTS)), [0.1], "policy/v0", k * 0.02)
            target = mux.tick(k * 0.02, arm.measured()[0], 0.02)
            arm.apply(target, 0.02)
            ref.apply(target, 0.02)
        assert np.array_equal(arm.measured()[0], ref.qpos14()) and np.array_equal(arm.measured()[1], ref.qvel14())
        assert 0.0 <= arm.max_limit_excess < 0.01
        assert arm.success() == ref.success()
    finally:
        arm.close()
        ref.close()


def test_backends_import_without_rclpy():
    code = ("import sys; from lwd.control.arm_backend import RealArmBackend, SimArmBackend; "
            "a = SimArmBackend(); a.apply(a.measured()[0], 0.02); a.close(); "
            "assert not any(m.split('.')[0] in ('rclpy', 'launch', 'launch_ros') for m in sys.modules), 'ROS imported'")
    r = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": SRC, "MUJOCO_GL": "egl", "PATH": "/usr/bin"},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


# -- real backend --------------------------------------------------------------------------------------------------
def test_real_backend_sends_only_after_a_valid_hardware_state():
    sent = []
    arm = RealArmBackend(LOW, HIGH, lambda target, dt: sent.append((target.copy(), dt)))
    assert not arm.ready
    arm.apply(np.zeros(N_JOINTS), 0.02)
    assert sent == []  # nothing goes to the controller before the arm's position is known
    assert arm.state() is None and not arm.success()

    names = [*reversed(JOINT_NAMES), "head_pan"]  # any order, extra joints ignored
    q = np.linspace(-0.5, 0.5, N_JOINTS)
    assert arm.update(names, [*q[::-1], 3.0], [*(2 * q[::-1]), 0.0]) is True
    assert arm.ready and np.allclose(arm.measured()[0], q) and np.allclose(arm.measured()[1], 2 * q)
    assert arm.update(names, [*q[::-1], 3.0]) is False  # no velocities: zero
    assert np.allclose(arm.measured()[1], 0.0)

    bad = [
        ((names[:-2], list(q[::-1][:-1])), "bad_joint_names"),  # a joint missing
        ((list(JOINT_NAMES), [np.nan] * N_JOINTS), "nan_state"),
        ((list(JOINT_NAMES), list(q), [np.inf] * N_JOINTS), "nan_velocity"),
        ((list(JOINT_NAMES), list(q[:-1])), "bad_shape"),
    ]
    for args, reason in bad:
        with pytest.raises(Rejected) as e:
            arm.update(*args)
        assert e.value.reason == reason, args
        assert np.allclose(arm.measured()[0], q)  # a refused reading never becomes the hold position

    arm.apply(np.full(N_JOINTS, 0.25), 0.02)
    assert len(sent) == 1 and np.allclose(sent[0][0], 0.25) and sent[0][1] == 0.02
    arm.update(list(JOINT_NAMES), [1.5] + [0.0] * (N_JOINTS - 1))
    assert arm.max_limit_excess == pytest.approx(0.5)
    arm.reset({"event": "start", "task": "pick_place", "seed": 0})  # hardware is not reset by an episode


def test_backend_limits_are_checked():
    with pytest.raises(ValueError):
        RealArmBackend(LOW[:3], HIGH[:3], lambda t, dt: None)
    with pytest.raises(ValueError):
        RealArmBackend(HIGH, LOW, lambda t, dt: None)


# -- the node on top, in-process (callbacks called directly, no DDS traffic needed) ----------------------------------
@pytest.mark.ros
@pytest.mark.parametrize("backend", ["sim", "real"])
def test_arm_driver_node_translates_topics_to_the_backend(backend):
    rclpy = pytest.importorskip("rclpy")
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import JointState
    from std_msgs.msg import String

    from lwd.nodes.arm_driver import ArmDriver
    from lwd.nodes.common import numpy_to_trajectory

    rclpy.init(args=["--ros-args", "-p", f"backend:={backend}"])
    node = None
    try:
        node = ArmDriver()
        assert isinstance(node.arm, SimArmBackend if backend == "sim" else RealArmBackend)
        sent = []
        if backend == "real":
            node.controller_pub.publish = sent.append
            node._tick()
            assert sent == []  # no hardware state yet: nothing to the controller
            q = np.linspace(-0.3, 0.3, N_JOINTS)
            node._on_hw_state(JointState(name=list(reversed(JOINT_NAMES)), position=list(q[::-1])))
            node._on_hw_state(JointState(name=list(JOINT_NAMES), position=[float("nan")] * N_JOINTS))
            assert node.diag.rejected_counts() == {"nan_state": 1} and np.allclose(node.arm.measured()[0], q)
        node._on_event(String(data='{"event": "start", "task": "pick_place", "seed": 3}'))
        assert node.episode_active
        node._on_event(String(data='{"event": "start", "task": "no_such_task", "seed": 3}'))
        assert node.diag.rejected_counts().get("bad_event", 0) == (1 if backend == "sim" else 0)
        goal = np.clip(node.arm.measured()[0] + 0.05, node.arm.low, node.arm.high)
        node._on_cmd(numpy_to_trajectory(goal[None], 1.0, JOINT_NAMES, "teleop", Time()), Source.TELEOP)
        ticks = node.ticks
        for _ in range(10):
            node._tick()
        assert node.mux.source == Source.TELEOP and node.ticks == ticks + 10
        if backend == "real":
            assert len(sent) == 10 and np.allclose(sent[-1].points[0].positions, goal)
        else:
            assert np.abs(node.arm.measured()[0] - goal).max() < 0.025  # the sim arm moved toward the goal
            events = []
            node.event_pub.publish = events.append
            node.arm.world.progress = lambda: 1  # the item is in place: one subgoal event, once
            node._tick()
            node._tick()
            assert [json.loads(e.data) for e in events] == [{"event": "subgoal", "progress": 1}]
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()
