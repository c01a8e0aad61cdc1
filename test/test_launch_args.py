"""robot.launch.py's argument defaults, evaluated from its launch description without starting any node."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("launch_ros")
from launch import LaunchContext  # noqa: E402
from launch.actions import DeclareLaunchArgument, OpaqueFunction  # noqa: E402
from launch_ros.actions import Node  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "config" / "robot.yaml")


def _robot_launch():
    spec = importlib.util.spec_from_file_location("robot_launch", ROOT / "launch" / "robot.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _evaluate(**given: str):
    """(launch argument values, node specs, Node actions) as ``ros2 launch lwd robot.launch.py k:=v ...`` would
    build them: given arguments first, then the declared defaults, then the OpaqueFunction's nodes."""
    module = _robot_launch()
    ctx = LaunchContext()
    ctx.launch_configurations.update({"config": CONFIG, **given})
    nodes = []
    for entity in module.generate_launch_description().entities:
        if isinstance(entity, DeclareLaunchArgument):
            entity.execute(ctx)  # sets the default unless the argument was given
        elif isinstance(entity, OpaqueFunction):
            nodes = entity.execute(ctx)
    args = module.launch_args(ctx)
    return args, {s["executable"]: s for s in module.node_specs(args)}, nodes


def _teleop_backend(specs) -> str:
    return specs["teleop"]["parameters"][1]["backend"]


def test_real_backend_defaults_to_no_teleop_station():
    # launch gives nodes no TTY: a keyboard station launched with the robot would be a dead node
    args, specs, nodes = _evaluate(backend="real")
    assert args["teleop"] == "" and _teleop_backend(specs) == "none"
    assert specs["arm_driver"]["parameters"][1] == {"backend": "real"}
    assert specs["camera_driver"]["parameters"][1] == {"backend": "v4l"}
    assert sorted(n.node_executable for n in nodes) == sorted(specs) and all(isinstance(n, Node) for n in nodes)


def test_sim_backend_defaults_to_the_scripted_operator():
    args, specs, _ = _evaluate()
    assert args["backend"] == "sim" and _teleop_backend(specs) == "scripted"
    assert specs["arm_driver"]["parameters"][1] == {"backend": "sim"}


def test_explicit_teleop_wins_and_supervision():
    _, specs, _ = _evaluate(backend="real", teleop="keyboard")
    assert _teleop_backend(specs) == "keyboard"
    # drivers, policy and recorder are respawned; teleop holds the episode plan and is not
    assert all(specs[n]["respawn"] for n in ("arm_driver", "camera_driver", "vla_policy", "episode_recorder"))
    assert "respawn" not in specs["teleop"]
    _, specs, _ = _evaluate(respawn="false")
    assert not specs["arm_driver"]["respawn"]


def test_rounds_are_synchronous_unless_asked():
    _, specs, _ = _evaluate()
    assert specs["teleop"]["parameters"][1]["sync_rounds"] is True
    _, specs, _ = _evaluate(sync_rounds="false")
    assert specs["teleop"]["parameters"][1]["sync_rounds"] is False


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend"):
        _evaluate(backend="gazebo")


def test_cameras_argument_reaches_the_camera_driver():
    _, specs, _ = _evaluate()
    assert "cameras" not in specs["camera_driver"]["parameters"][1]  # config/robot.yaml's (the overview)
    _, specs, _ = _evaluate(cameras="overview, left_wrist,right_wrist,")
    assert specs["camera_driver"]["parameters"][1]["cameras"] == ["overview", "left_wrist", "right_wrist"]
