"""The fleet learner: ``ros2 launch lwd learner.launch.py store:=~/lwd_store algo:=bc``."""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

ARGS = {
    "store": ("lwd_store", "experience store root"),
    "algo": ("", "update rule (default from the config file)"),
    "min_new_episodes": ("", "fleet episodes per update round (default from the config file)"),
    "updates_per_round": ("", "gradient steps per round (default from the config file)"),
    "offline_updates": ("", "offline-phase steps on the demos before the first round (default from the config file)"),
    "gate": ("", "promotion gate: sim (rollouts of candidate vs deployed) | none (default from LearnerConfig)"),
    "gate_episodes": ("", "gate rollouts per task and policy (default from LearnerConfig)"),
    "select_episodes": ("", "rollouts per task and policy choosing between the tilted policy and its reference "
                            "(default from LearnerConfig; 0 = off)"),
    "background_updates": ("", "updates per poll while waiting for episodes (default from LearnerConfig)"),
    "tasks": ("", "tasks the gate evaluates, comma list (default from LearnerConfig)"),
    "algo_overrides": ("", 'algorithm hyper-parameters as JSON, e.g. {"tilt_steps": 100} (default from the config '
                           "file)"),
    "seed": ("0", "learner seed"),
    "config": ("", "parameter file (default: the package's config/learner.yaml)"),
    "respawn": ("true", "restart the learner if it dies"),
    "respawn_delay": ("2.0", "seconds before a dead learner is restarted"),
}


def _nodes(context):
    a = {k: LaunchConfiguration(k).perform(context) for k in ARGS}
    config = a["config"] or os.path.join(get_package_share_directory("lwd"), "config", "learner.yaml")
    overrides = {"store": os.path.expanduser(a["store"]), "seed": int(a["seed"])}
    if a["algo"]:
        overrides["algo"] = a["algo"]
    for key in ("min_new_episodes", "updates_per_round", "offline_updates", "gate_episodes", "select_episodes",
                "background_updates"):
        if a[key]:
            overrides[key] = int(a[key])
    for key in ("gate", "tasks", "algo_overrides"):
        if a[key]:
            overrides[key] = a[key]
    return [Node(package="lwd", executable="learner", name="learner", output="screen",
                 parameters=[config, overrides], respawn=a["respawn"].lower() == "true",
                 respawn_delay=float(a["respawn_delay"]))]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(k, default_value=v, description=d) for k, (v, d) in ARGS.items()]
        + [OpaqueFunction(function=_nodes)]
    )
