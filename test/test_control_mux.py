"""The command mux: takeover wins on the next tick, bad commands never reach the arm."""

import numpy as np
import pytest

from lwd.control.mux import CommandError, CommandMux, Source

J = 14


def _mux():
    m = CommandMux(J, np.full(J, -1.0), np.full(J, 1.0), max_velocity=100.0)
    m.reset(np.zeros(J))
    return m


def test_policy_chunk_is_followed_then_held():
    m = _mux()
    pts = np.stack([np.full(J, 0.1 * (i + 1)) for i in range(3)])
    assert m.submit(Source.POLICY, pts, [0.1, 0.2, 0.3], "policy/v1", now=0.0)
    assert np.allclose(m.tick(0.05, np.zeros(J), 0.02), 0.1)
    assert np.allclose(m.tick(0.15, np.zeros(J), 0.02), 0.2)
    assert m.source == Source.POLICY
    assert np.allclose(m.tick(5.0, np.zeros(J), 0.02), 0.3)  # stale: hold the last point


def test_takeover_wins_on_next_tick_and_drops_policy_chunk():
    m = _mux()
    m.submit(Source.POLICY, np.full((5, J), 0.5), np.arange(1, 6) * 0.1, "policy/v1", now=0.0)
    m.tick(0.01, np.zeros(J), 0.02)
    m.set_teleop_engaged(True)
    assert m.active is None  # the policy chunk is gone at once
    assert not m.submit(Source.POLICY, np.full((1, J), 0.9), [0.1], "policy/v1", now=0.02)  # ignored while engaged
    assert m.submit(Source.TELEOP, np.full((1, J), -0.3), [0.1], "teleop", now=0.03)
    assert np.allclose(m.tick(0.04, np.zeros(J), 0.02), -0.3) and m.source == Source.TELEOP
    m.set_teleop_engaged(False)
    m.tick(0.06, np.zeros(J), 0.02)
    assert m.source == Source.HOLD  # hand-back: hold until the policy sends a chunk
    assert m.submit(Source.POLICY, np.full((1, J), 0.2), [0.1], "policy/v1", now=0.07)


def test_teleop_command_without_flag_is_a_takeover():
    m = _mux()
    m.submit(Source.TELEOP, np.zeros((1, J)), [0.1], "teleop", now=0.0)
    assert m.teleop_engaged
    assert not m.submit(Source.POLICY, np.zeros((1, J)), [0.1], "policy/v0", now=0.01)


@pytest.mark.parametrize("pos,times", [
    (np.full((1, J), np.nan), [0.1]),
    (np.zeros((1, J - 1)), [0.1]),
    (np.zeros((0, J)), []),
    (np.zeros((2, J)), [0.2, 0.1]),
    (np.zeros((1, J)), [np.inf]),
])
def test_malformed_commands_rejected(pos, times):
    m = _mux()
    with pytest.raises(CommandError):
        m.submit(Source.POLICY, pos, times, "policy/v0", now=0.0)
    assert m.active is None and np.allclose(m.tick(0.1, np.zeros(J), 0.02), 0.0)


def test_limits_and_rate_limit():
    m = CommandMux(J, np.full(J, -1.0), np.full(J, 1.0), max_velocity=1.0)
    m.reset(np.zeros(J))
    m.submit(Source.POLICY, np.full((1, J), 5.0), [1.0], "policy/v0", now=0.0)
    assert np.allclose(m.tick(0.0, np.zeros(J), 0.1), 0.1)  # 1 rad/s over 0.1 s
    for k in range(30):
        out = m.tick(0.1 * k, np.zeros(J), 0.1)
    assert np.allclose(out, 1.0)  # clipped to the joint limit


def test_policy_chunk_runs_on_its_observation_time_base():
    m = _mux()
    pts = np.stack([np.full(J, 0.1 * (i + 1)) for i in range(4)])
    # computed from an observation at t=1.0, arriving 0.25 s later: points 0 and 1 have passed and are skipped
    assert m.submit(Source.POLICY, pts, [0.1, 0.2, 0.3, 0.4], "policy/v1", now=1.25, start=1.0)
    assert np.allclose(m.tick(1.25, np.zeros(J), 0.02), 0.3)
    assert np.allclose(m.tick(1.35, np.zeros(J), 0.02), 0.4)


def test_policy_chunk_arriving_after_its_end_is_not_accepted():
    m = _mux()
    m.submit(Source.POLICY, np.full((2, J), 0.2), [0.1, 0.2], "policy/v1", now=0.0)
    assert not m.submit(Source.POLICY, np.full((2, J), 0.9), [0.1, 0.2], "policy/v1", now=1.0, start=0.5)
    assert m.stale == 1 and np.allclose(m.tick(1.0, np.zeros(J), 0.02), 0.2)  # the earlier command still holds


def test_arm_driver_records_what_is_left_of_a_late_chunk():
    pytest.importorskip("rclpy")
    from builtin_interfaces.msg import Time

    from lwd.nodes.arm_driver import _drop_elapsed
    from lwd.nodes.common import numpy_to_trajectory, trajectory_to_numpy
    from lwd.robot import JOINT_NAMES

    msg = numpy_to_trajectory(np.arange(5)[:, None] * np.ones((5, 14)), 0.1, JOINT_NAMES, "policy/v1", Time())
    _drop_elapsed(msg, 0.25)  # arrived 250 ms after its observation: points 0, 1 ended, point 2 is half done
    pos, times = trajectory_to_numpy(msg, JOINT_NAMES)
    assert np.allclose(pos[:, 0], [2, 3, 4]) and np.allclose(times, [0.05, 0.15, 0.25])


def test_trajectory_to_numpy_reorders_by_name_and_refuses_unnamed_or_unknown_joints():
    pytest.importorskip("rclpy")
    from builtin_interfaces.msg import Time

    from lwd.control.health import Rejected
    from lwd.nodes.common import numpy_to_trajectory, trajectory_to_numpy
    from lwd.robot import JOINT_NAMES

    q = np.arange(14.0)
    names = list(JOINT_NAMES)[::-1]
    pos, _ = trajectory_to_numpy(numpy_to_trajectory(q[::-1][None], 0.1, names, "teleop", Time()), JOINT_NAMES)
    assert np.array_equal(pos[0], q)
    for bad in ([], [*names[:-1], "head_pan"], [*names, "head_pan"], [*names[:-1], names[0]]):
        msg = numpy_to_trajectory(q[None], 0.1, JOINT_NAMES, "teleop", Time())
        msg.joint_names = bad
        with pytest.raises(Rejected) as e:
            trajectory_to_numpy(msg, JOINT_NAMES)
        assert e.value.reason == "bad_joint_names", bad
