"""lwd.sim: ROS-free MuJoCo dual-arm world, tasks, scripted expert / operator and episode rollouts."""

from lwd.sim.expert import DEFAULT_DEMO_NOISE, ScriptedExpert
from lwd.sim.operator import OperatorDecision, ScriptedOperator
from lwd.sim.rollout import EpisodeRollout, collect_demos, obs, run_episode
from lwd.sim.tasks import TASKS, Goal, TaskSpec, task_names
from lwd.sim.world import CONTROL_DT, JOINT_NAMES, N_JOINTS, SimWorld

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
    "obs",
    "run_episode",
    "task_names",
]
