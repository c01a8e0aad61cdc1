"""Multi-process integration: a robot with wrist cameras over real DDS on localhost.

fleet_sim.launch.py (one robot, no learner) with ``cameras:=overview,left_wrist,right_wrist`` on a store whose v0
sees the three cameras: the camera driver publishes each view on its own topic, vla_policy acts only once it has
all three (it builds its observation from them), and the recorder writes all three into the episode's bag.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from launch_util import assert_none_left, interrupt

rclpy = pytest.importorskip("rclpy")

from lwd.app.demo import ros_env  # noqa: E402
from lwd.data.schema import SOURCE_POLICY  # noqa: E402

pytestmark = pytest.mark.ros

WRIST = ("overview", "left_wrist", "right_wrist")


@pytest.fixture
def wrist_store(tmp_path):
    """A store with two scripted pick_place demos recorded with the three cameras and a small v0 that sees them
    (briefly pretrained: not a good policy)."""
    from lwd.rl.pretrain import PretrainConfig, pretrain

    root = tmp_path / "store"
    pretrain(root, PretrainConfig(tasks=("pick_place",), demos_per_task=2, steps=20, batch_size=8, threads=1,
                                  cameras=WRIST, vision_channels=4, cond_dim=32, hidden=32), progress=False)
    return root


def test_wrist_camera_robot_records_and_acts_on_three_views(wrist_store, tmp_path):
    from rclpy.node import Node
    from sensor_msgs.msg import Image

    from lwd.data.bag import read_episode
    from lwd.nodes.common import SENSOR_QOS

    store = wrist_store
    assert json.loads((store / "policies" / "v0" / "config.json").read_text())["cameras"] == list(WRIST)

    env = ros_env(tmp_path)
    env["ROS_DOMAIN_ID"] = os.environ["ROS_DOMAIN_ID"]
    args = ["robots:=1", "learner:=false", f"store:={store}", f"cameras:={','.join(WRIST)}", "tasks:=pick_place",
            "episodes_per_round:=1", "rounds:=1", "time_limit_scale:=0.3", "intervene:=false", "respawn:=false"]
    children: set[int] = set()
    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=[])
    node = Node("wrist_camera_test", context=ctx)
    ex = rclpy.executors.SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    wrist_frames: list[tuple[int, int, str, str]] = []  # (height, width, encoding, frame_id)
    node.create_subscription(
        Image, "/robot0/left_wrist/image_raw",
        lambda m: wrist_frames.append((m.height, m.width, m.encoding, m.header.frame_id)), SENSOR_QOS)
    log_path = tmp_path / "fleet.log"
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "lwd.app.launch_runner", "fleet_sim.launch.py", *args],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    done: list = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not done and proc.poll() is None:
            ex.spin_once(timeout_sec=0.2)
            try:
                children.update(c.pid for c in psutil.Process(proc.pid).children(recursive=True))
            except psutil.NoSuchProcess:
                pass
            # complete = the sidecar (written last, temp + rename) and the rosbag2 metadata are both there
            done = [p.parent for p in (store / "episodes" / "robot0").glob("*/episode.json")
                    if (p.parent / "metadata.yaml").exists()]
        assert done, f"no episode of robot0 finished; log:\n{log_path.read_text()[-4000:]}"
        assert proc.poll() is None, "launch exited early"
        end = time.monotonic() + 5
        while time.monotonic() < end and not wrist_frames:
            ex.spin_once(timeout_sec=0.2)
        # no node died while the robot worked (respawn is off: one that had would have stayed dead)
        assert "process has died" not in log_path.read_text(), log_path.read_text()[-4000:]
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        stopped = interrupt(proc, 40)
        log.close()

    # The wrist camera has its own topic of 64x64 rgb8 images, framed by the camera's name.
    assert wrist_frames, "nothing seen on /robot0/left_wrist/image_raw"
    assert set(wrist_frames) == {(64, 64, "rgb8", "left_wrist")}, set(wrist_frames)

    # The bag holds the three views side by side, and the policy drove the arm: it acts only once each camera its
    # v0 sees has sent an image, and its observation (64, 192, 3) is what v0 accepts.
    (bag,) = done
    steps = read_episode(bag)
    assert steps.cameras == WRIST
    assert len(steps) > 5 and steps.images.shape[1:] == (64, 64 * len(WRIST), 3), steps.images.shape
    views = [steps.images[:, :, 64 * k:64 * (k + 1)] for k in range(len(WRIST))]
    assert all(v.any() for v in views), "a blank view"
    assert not np.array_equal(views[0], views[1]) and not np.array_equal(views[1], views[2])
    assert (steps.source == SOURCE_POLICY).any(), np.unique(steps.source)
    assert 0 in steps.meta.policy_versions, steps.meta

    # Clean shutdown: Ctrl-C ends every node without a traceback, and nothing is left behind.
    assert stopped, "launch did not shut down on SIGINT"
    text = log_path.read_text()
    assert "Traceback" not in text and "RCLError" not in text, text[-4000:]
    died = re.findall(r"\[([\w-]+)\]: process has died \[pid \d+, exit code (-?\d+)", text)
    assert not [d for d in died if int(d[1]) >= 0], text[-4000:]  # a Python-level death on Ctrl-C
    assert_none_left(children)
