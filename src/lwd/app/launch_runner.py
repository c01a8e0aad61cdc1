"""Run one of lwd's launch files with launch's LaunchService (what ``ros2 launch lwd <file> k:=v`` does).

    python -m lwd.app.launch_runner fleet_sim.launch.py robots:=2 store:=/tmp/s
"""

from __future__ import annotations

import os
import signal
import sys

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription, LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    # A process started in the background by a non-interactive shell inherits SIGINT as ignored; launch would then
    # miss Ctrl-C / the group's SIGINT while its nodes exit on it, and respawn them (respawn=True) forever.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    name, rest = argv[0], argv[1:]
    args = dict(a.split(":=", 1) for a in rest if ":=" in a)
    path = name if os.path.isfile(name) else os.path.join(get_package_share_directory("lwd"), "launch", name)
    ls = LaunchService(argv=rest)
    ls.include_launch_description(LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(path), launch_arguments=args.items())]))
    return ls.run()


if __name__ == "__main__":
    raise SystemExit(main())
