"""One robot: arm_driver (+ command mux), camera_driver, vla_policy, teleop, episode_recorder in ``/<robot>``.

    ros2 launch lwd robot.launch.py robot:=robot0 backend:=sim store:=~/lwd_store
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from lwd.sim.tasks import default_tasks

ARGS = {
    "robot": ("robot0", "robot name = namespace"),
    "backend": ("sim", "sim (MuJoCo) or real (ros2_control + a V4L camera)"),
    "store": ("lwd_store", "experience store root (bags, policies)"),
    "teleop": ("", "teleop backend: scripted | keyboard | none (default: scripted in sim, none on real: launch gives "
                   "nodes no TTY, run the keyboard station with `ros2 run` in a terminal)"),
    "tasks": (",".join(default_tasks()), "comma-separated task cycle for the operator (default: the registry's default "
                                         "curriculum, lwd.sim.tasks)"),
    "episodes_per_round": ("0", "sync rounds: wait for a newer policy after this many episodes (0 = never)"),
    "rounds": ("0", "stop starting episodes after this many rounds (0 = never)"),
    "sync_rounds": ("true", "wait for the learner at each round's end (false: keep working, hot-swap new versions)"),
    "seed": ("0", "base seed for episode resets"),
    "time_limit_scale": ("1.0", "multiplies each task's time limit"),
    "intervene": ("true", "let the scripted operator take over"),
    "cameras": ("", "comma list of the cameras the camera driver publishes, e.g. overview,left_wrist,right_wrist for a "
                    "policy pretrained with wrist cameras (default: config/robot.yaml's, the overview)"),
    "config": ("", "parameter file (default: the package's config/robot.yaml)"),
    "respawn": ("true", "respawn drivers, policy and recorder if they die"),
    "respawn_delay": ("2.0", "seconds before a dead node is restarted"),
}


def launch_args(context) -> dict[str, str]:
    """The launch arguments' values in ``context`` (a declared default where none was given)."""
    return {k: LaunchConfiguration(k).perform(context) for k in ARGS}


def node_specs(a: dict[str, str]) -> list[dict]:
    """Keyword arguments of each ``launch_ros.actions.Node`` for launch argument values ``a`` (plain data, so the
    defaults are testable without starting nodes)."""
    config = a["config"] or os.path.join(get_package_share_directory("lwd"), "config", "robot.yaml")
    sim = a["backend"] == "sim"
    if a["backend"] not in ("sim", "real"):
        raise ValueError(f"backend must be sim or real, got {a['backend']!r}")
    teleop = a["teleop"] or ("scripted" if sim else "none")
    ns, store = a["robot"], os.path.expanduser(a["store"])
    common = dict(package="lwd", namespace=ns, output="screen", emulate_tty=False)
    # Supervision: a node that dies is restarted after a delay. teleop is not respawned: it holds the episode plan,
    # and a restarted one would start the plan over (it waits for the recorder before every episode instead).
    supervised = dict(respawn=a["respawn"].lower() == "true", respawn_delay=float(a["respawn_delay"]))
    return [
        dict(executable="arm_driver", name="arm_driver", parameters=[config, {"backend": "sim" if sim else "real"}],
             **supervised, **common),
        dict(executable="camera_driver", name="camera_driver",
             parameters=[config, {"backend": "sim" if sim else "v4l",
                                  **({"cameras": cams} if (cams := [c.strip() for c in a["cameras"].split(",")
                                                                     if c.strip()]) else {})}],
             **supervised, **common),
        dict(executable="vla_policy", name="vla_policy", parameters=[config, {"store": store}], **supervised,
             **common),
        dict(executable="teleop", name="teleop", parameters=[config, {
            "robot": ns, "backend": teleop, "tasks": [t for t in a["tasks"].split(",") if t],
            "episodes_per_round": int(a["episodes_per_round"]), "rounds": int(a["rounds"]),
            "sync_rounds": a["sync_rounds"].lower() == "true", "seed": int(a["seed"]),
            "time_limit_scale": float(a["time_limit_scale"]), "intervene": a["intervene"].lower() == "true"}],
             **common),
        dict(executable="episode_recorder", name="episode_recorder",
             parameters=[config, {"robot": ns, "store": store}], **supervised, **common),
    ]


def _nodes(context):
    return [Node(**spec) for spec in node_specs(launch_args(context))]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(k, default_value=v, description=d) for k, (v, d) in ARGS.items()]
        + [OpaqueFunction(function=_nodes)]
    )
