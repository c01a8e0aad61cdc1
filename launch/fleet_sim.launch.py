"""A simulated fleet: N robots (robot0 … robotN-1, each in its namespace) + one learner.

    ros2 launch lwd fleet_sim.launch.py robots:=2 store:=/tmp/lwd_store episodes_per_round:=2 rounds:=3
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

from lwd.sim.tasks import default_tasks

ARGS = {
    "robots": ("2", "number of simulated robots"),
    "store": ("lwd_store", "experience store shared by the fleet and the learner"),
    "tasks": (",".join(default_tasks()), "task cycle per robot (default: the registry's default curriculum)"),
    "episodes_per_round": ("2", "episodes per robot per round"),
    "rounds": ("0", "rounds per robot (0 = run until stopped)"),
    "sync_rounds": ("true", "robots wait for the learner at each round's end (false: they keep working and hot-swap "
                            "each version the learner publishes; the learner still closes a round every "
                            "robots x episodes_per_round new episodes)"),
    "seed": ("0", "base seed"),
    "cameras": ("", "cameras each robot's camera driver publishes (robot.launch.py; default: the overview)"),
    "time_limit_scale": ("1.0", "multiplies each task's time limit"),
    "intervene": ("true", "let the scripted operators take over"),
    "algo": ("", "learner update rule (default from config/learner.yaml)"),
    "updates_per_round": ("", "learner gradient steps per round"),
    "offline_updates": ("", "learner offline-phase steps on the demos"),
    "gate": ("", "learner promotion gate: sim | none (default from LearnerConfig)"),
    "gate_episodes": ("", "learner gate rollouts per task and policy"),
    "select_episodes": ("", "learner rollouts per task and policy choosing between the tilt and its reference"),
    "background_updates": ("", "learner updates per poll while waiting for episodes (default from LearnerConfig)"),
    "algo_overrides": ("", "learner algorithm hyper-parameters as JSON (default from config/learner.yaml)"),
    "learner": ("true", "start the learner"),
    "respawn": ("true", "restart robot nodes and the learner when they die"),
}


def _fleet(context):
    a = {k: LaunchConfiguration(k).perform(context) for k in ARGS}
    share = os.path.join(get_package_share_directory("lwd"), "launch")
    n = int(a["robots"])
    if n < 1:
        raise ValueError("robots must be >= 1")
    actions = []
    for i in range(n):
        actions.append(IncludeLaunchDescription(
            PythonLaunchDescriptionSource(os.path.join(share, "robot.launch.py")),
            launch_arguments={
                "robot": f"robot{i}", "backend": "sim", "store": a["store"], "tasks": a["tasks"],
                "episodes_per_round": a["episodes_per_round"], "rounds": a["rounds"],
                "sync_rounds": a["sync_rounds"], "seed": str(int(a["seed"]) * 1000 + i),
                "time_limit_scale": a["time_limit_scale"],
                "intervene": a["intervene"], "respawn": a["respawn"], "cameras": a["cameras"],
            }.items()))
    if a["learner"].lower() == "true":
        actions.append(IncludeLaunchDescription(
            PythonLaunchDescriptionSource(os.path.join(share, "learner.launch.py")),
            launch_arguments={
                "store": a["store"], "algo": a["algo"], "seed": a["seed"],
                "min_new_episodes": str(n * max(1, int(a["episodes_per_round"]))),
                "updates_per_round": a["updates_per_round"], "offline_updates": a["offline_updates"],
                "gate": a["gate"], "gate_episodes": a["gate_episodes"], "select_episodes": a["select_episodes"],
                "tasks": a["tasks"],
                "background_updates": a["background_updates"], "algo_overrides": a["algo_overrides"],
                "respawn": a["respawn"],
            }.items()))
    return actions


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(k, default_value=v, description=d) for k, (v, d) in ARGS.items()]
        + [OpaqueFunction(function=_fleet)]
    )
