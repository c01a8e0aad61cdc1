"""The in-process rollout (one target per 0.1 s control step) and the arm driver's path (CommandMux at 50 Hz with
rate limits, chunks on their observation time base) must give the same outcomes, so that in-process benchmarks
say something about the ROS fleet."""

import numpy as np

from lwd.control.mux import CommandMux, Source
from lwd.robot import CONTROL_DT, N_JOINTS
from lwd.sim.expert import ScriptedExpert
from lwd.sim.rollout import run_episode
from lwd.sim.world import SimWorld

TICK = 0.02  # the arm driver's 50 Hz


def _mux_episode(world: SimWorld, task: str, seed: int, horizon_s: float) -> bool:
    """The expert's targets sent as one-point chunks every control step through the mux, physics at 50 Hz."""
    world.reset(task, seed)
    expert = ScriptedExpert(world, noise=0.0, seed=seed)
    vmax = np.array(([3.0] * 6 + [10.0]) * 2)  # config/robot.yaml max_velocity_arm / _gripper
    mux = CommandMux(N_JOINTS, world.joint_low, world.joint_high, vmax)
    mux.reset(world.qpos14())
    ticks_per_step = round(CONTROL_DT / TICK)
    for step in range(round(horizon_s / CONTROL_DT)):
        now = step * CONTROL_DT
        mux.submit(Source.POLICY, expert.act()[None], [CONTROL_DT], "policy/v0", now=now, start=now)
        for k in range(ticks_per_step):
            world.apply(mux.tick(now + k * TICK, world.qpos14(), TICK), duration=TICK)
        if world.success():
            return True
    return False


def test_in_process_rollout_and_command_mux_agree_for_the_expert():
    with SimWorld(render=False) as world:
        for task, seeds, horizon in (("pick_place", range(900_000, 900_003), 15.0), ("restock3", [900_000], 45.0)):
            for seed in seeds:
                direct = run_episode(_Blind(world), task, seed)
                assert direct.success == _mux_episode(world, task, seed, horizon), (task, seed)
                assert direct.success


class _Blind:
    """run_episode needs a rendering world for observations; the expert needs none: skip rendering."""

    def __init__(self, world):
        self._world = world

    def __getattr__(self, name):
        return getattr(self._world, name)

    def render(self):
        return np.zeros((self._world.image_size, self._world.image_size, 3), np.uint8)
