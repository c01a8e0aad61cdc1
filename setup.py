"""ament_python package `lwd`: works with `colcon build` on a robot and with `pip install .` into a venv."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "lwd"
NODES = ["arm_driver", "camera_driver", "vla_policy", "teleop", "episode_recorder", "learner"]

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Learning While Deploying: fleet RL (DIVL + QAM) for a flow-matching VLA policy on ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    package_dir={"": "src"},
    packages=find_packages("src"),
    # Node executables live in lib/lwd/ and the package is registered in the ament index, so
    # launch_ros.actions.Node(package="lwd", executable=...) finds them under AMENT_PREFIX_PATH.
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"lib/{PACKAGE}", [f"scripts/nodes/{n}" for n in NODES]),
    ],
    install_requires=["numpy", "pyyaml", "safetensors", "rosbags", "mcap", "mujoco", "tqdm", "matplotlib"],
    zip_safe=True,
    entry_points={"console_scripts": ["lwd = lwd.cli:main"]},
)
