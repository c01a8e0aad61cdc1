#!/bin/bash
set -e
source "/opt/ros/${ROS_DISTRO:-kilted}/setup.bash"
source /ws/install/setup.bash
exec "$@"
