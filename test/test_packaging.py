"""The package builds the ROS 2 way (colcon, ament_python) and the venv install has what launch_ros needs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NODES = {"arm_driver", "camera_driver", "vla_policy", "teleop", "episode_recorder", "learner"}


def test_venv_install_layout_for_launch_ros():
    prefix = Path(sys.prefix)
    if not (prefix / "share/ament_index/resource_index/packages/lwd").exists():
        pytest.skip("lwd is not installed into this interpreter's prefix (run `make package`)")
    lib = prefix / "lib" / "lwd"
    assert {p.name for p in lib.iterdir()} >= NODES
    assert all(os.access(lib / n, os.X_OK) for n in NODES)
    assert (prefix / "share/lwd/launch/fleet_sim.launch.py").exists()
    assert (prefix / "share/lwd/config/robot.yaml").exists()


@pytest.mark.skipif(shutil.which("colcon") is None, reason="colcon not installed")
def test_colcon_build_installs_ament_python_package(tmp_path):
    src = tmp_path / "src" / "lwd"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "install", "log", "runs"))
    listed = subprocess.run(["colcon", "list"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert "(ros.ament_python)" in listed, listed  # an invalid package.xml silently degrades to plain Python
    subprocess.run(["colcon", "build", "--packages-select", "lwd"], cwd=tmp_path, capture_output=True, check=True,
                   timeout=300)
    install = tmp_path / "install" / "lwd"
    assert {p.name for p in (install / "lib" / "lwd").iterdir()} >= NODES
    assert (install / "share/ament_index/resource_index/packages/lwd").exists()
    assert (install / "share/lwd/launch/robot.launch.py").exists()


def test_package_xml_declares_the_ros_packages_the_code_imports():
    """Every ROS package imported by src/ and launch/ is an <exec_depend> (rosdep installs what package.xml says)."""
    import ast
    import xml.etree.ElementTree as ET

    declared = {e.text for e in ET.parse(ROOT / "package.xml").getroot() if e.tag in ("depend", "exec_depend")}
    ros_like = ("rclpy", "launch", "launch_ros", "ament_index_python", "rosidl_runtime_py")
    imported: dict[str, str] = {}
    for path in [*ROOT.glob("src/**/*.py"), *ROOT.glob("launch/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            for name in names:
                top = name.split(".")[0]
                if top in ros_like or top.endswith(("_msgs", "_srvs", "_interfaces")):
                    imported.setdefault(top, str(path.relative_to(ROOT)))
    missing = {pkg: where for pkg, where in imported.items() if pkg not in declared}
    assert not missing, f"imported but not declared in package.xml: {missing}"
