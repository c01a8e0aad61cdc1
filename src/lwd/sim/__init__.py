"""lwd.sim: ROS-free MuJoCo dual-arm world, tasks, scripted expert / operator and episode rollouts.

``MUJOCO_GL`` is chosen first (``lwd.sim.gl``: EGL headless, OSMesa as fallback), before anything imports MuJoCo.
The names below load their module on first use, so ``lwd.sim.tasks`` (the task registry) is importable by launch
files, configs and the learner without loading MuJoCo.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from lwd.sim.gl import configure_gl

configure_gl()

_EXPORTS = {
    "CONTROL_DT": "lwd.sim.world",
    "DEFAULT_DEMO_NOISE": "lwd.sim.expert",
    "JOINT_NAMES": "lwd.sim.world",
    "N_JOINTS": "lwd.sim.world",
    "TASKS": "lwd.sim.tasks",
    "EpisodeRollout": "lwd.sim.rollout",
    "Goal": "lwd.sim.tasks",
    "OperatorDecision": "lwd.sim.operator",
    "ScriptedExpert": "lwd.sim.expert",
    "ScriptedOperator": "lwd.sim.operator",
    "SimWorld": "lwd.sim.world",
    "TaskSpec": "lwd.sim.tasks",
    "collect_demos": "lwd.sim.rollout",
    "default_tasks": "lwd.sim.tasks",
    "obs": "lwd.sim.rollout",
    "run_episode": "lwd.sim.rollout",
    "task_names": "lwd.sim.tasks",
}
__all__ = [
    "CONTROL_DT",
    "DEFAULT_DEMO_NOISE",
    "JOINT_NAMES",
    "N_JOINTS",
    "TASKS",
    "EpisodeRollout",
    "Goal",
    "OperatorDecision",
    "ScriptedExpert",
    "ScriptedOperator",
    "SimWorld",
    "TaskSpec",
    "collect_demos",
    "default_tasks",
    "obs",
    "run_episode",
    "task_names",
]
assert sorted(__all__) == sorted(_EXPORTS)

if TYPE_CHECKING:
    from lwd.sim.expert import DEFAULT_DEMO_NOISE, ScriptedExpert
    from lwd.sim.operator import OperatorDecision, ScriptedOperator
    from lwd.sim.rollout import EpisodeRollout, collect_demos, obs, run_episode
    from lwd.sim.tasks import TASKS, Goal, TaskSpec, default_tasks, task_names
    from lwd.sim.world import CONTROL_DT, JOINT_NAMES, N_JOINTS, SimWorld


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lwd.sim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
