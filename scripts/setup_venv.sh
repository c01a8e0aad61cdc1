#!/usr/bin/env bash
# Creates the lwd venv. With a sourced ROS 2 distro the venv sees the distro's rclpy/launch (system site-packages);
# otherwise the PyPI ROS wheels plus the launch stack from the wheelhouse are installed, as its README says.
set -euo pipefail
VENV="${VENV:-.venv}"
WHEELHOUSE="${WHEELHOUSE:-../shared/wheels}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3

if [ -n "${ROS_DISTRO:-}" ] && "$PYTHON" -c "import rclpy, launch_ros" 2>/dev/null; then
  echo "setup: using the sourced ROS 2 $ROS_DISTRO (rclpy, launch) via system site-packages"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv --system-site-packages "$VENV"
  PIP=("$VENV/bin/python" -m pip install -q)
else
  [ -d "$WHEELHOUSE" ] || { echo "setup: wheelhouse '$WHEELHOUSE' not found (set LWD_WHEELHOUSE)" >&2; exit 1; }
  echo "setup: no ROS 2 distro sourced; installing PyPI ROS 2 wheels + launch stack from $WHEELHOUSE"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  PIP=("$VENV/bin/python" -m pip install -q)
  "${PIP[@]}" --find-links "$WHEELHOUSE" \
    ros-rclpy ros-std-msgs ros-sensor-msgs ros-geometry-msgs ros-trajectory-msgs ros-std-srvs ros-diagnostic-msgs \
    ros-builtin-interfaces ros-rmw-fastrtps-cpp ros-ament-index-python \
    ros-rcl-interfaces ros-lifecycle-msgs ros-composition-interfaces==2.2.0 \
    launch==3.7.1 launch_xml==3.7.1 launch_yaml==3.7.1 launch_testing==3.7.1 \
    launch_pytest==3.7.1 launch_testing_ros==0.28.0 \
    osrf-pycommon packaging pyyaml lark-parser pytest==8.3.5
  "${PIP[@]}" --no-deps --find-links "$WHEELHOUSE" launch_ros==0.28.0
  "${PIP[@]}" --find-links "$WHEELHOUSE" \
    ros2cli==0.36.1 ros2launch==0.28.0 ros2topic==0.36.1 ros2node==0.36.1 \
    ros2param==0.36.1 ros2pkg==0.36.1 rosidl_runtime_py==0.14.0 psutil catkin-pkg
fi
"${PIP[@]}" torch==2.13.0
"${PIP[@]}" mujoco rosbags mcap mcap-ros2-support safetensors numpy pyyaml tqdm matplotlib \
  opencv-python-headless tensorboard setuptools wheel psutil colcon-common-extensions pytest==8.3.5 ruff
echo "setup: venv ready at $VENV"
