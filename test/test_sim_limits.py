"""Physical safety in sim: hostile commands through the arm's mux never drive a joint past its limit."""

from __future__ import annotations

import numpy as np

from lwd.control.mux import CommandMux, Source
from lwd.robot import JOINT_NAMES
from lwd.sim.world import SimWorld

GRIPPERS = np.array([n.endswith("gripper") for n in JOINT_NAMES])


def _worst_excess(world: SimWorld, commands, ticks: int, dt: float = 0.02) -> np.ndarray:
    """Largest distance beyond [joint_low, joint_high] per joint while the mux (as in arm_driver) follows
    ``commands(k)`` (a [1, 14] target or None) at 50 Hz."""
    mux = CommandMux(14, world.joint_low, world.joint_high, np.where(GRIPPERS, 10.0, 3.0))
    mux.reset(world.qpos14())
    worst = np.zeros(14)
    for k in range(ticks):
        t = k * dt
        cmd = commands(k)
        if cmd is not None:
            mux.submit(Source.POLICY, cmd, np.array([0.1]), "policy/v0", t)
        world.apply(mux.tick(t, world.qpos14(), dt), dt)
        q = world.qpos14()
        worst = np.maximum(worst, np.maximum(q - world.joint_high, world.joint_low - q))
    return worst


def test_huge_commands_keep_joints_within_limits():
    world = SimWorld(render=False)
    try:
        world.reset("pick_place", 0)
        rng = np.random.default_rng(0)
        # Random +-1e6 per joint every 3 ticks: every joint is slammed into both limits, arms hit the table and
        # each other. With MuJoCo's default soft limits the elbow overshot by 0.12 rad and a finger by 0.26 m.
        worst = _worst_excess(world, lambda k: rng.choice([-1e6, 1e6], size=(1, 14)) if k % 3 == 0 else None, 1500)
        assert worst[~GRIPPERS].max() < 0.01, dict(zip(JOINT_NAMES, worst.round(4), strict=True))
        assert worst[GRIPPERS].max() < 0.005, dict(zip(JOINT_NAMES, worst.round(4), strict=True))
        # Every joint to its upper, then lower limit and held there (the overshoot of a servo stopping at a limit).
        world.reset("pick_place", 1)
        worst = _worst_excess(world, lambda k: np.full((1, 14), 1e6 if (k // 50) % 2 == 0 else -1e6), 400)
        assert worst[~GRIPPERS].max() < 0.01 and worst[GRIPPERS].max() < 0.005, worst.round(4)
    finally:
        world.close()
