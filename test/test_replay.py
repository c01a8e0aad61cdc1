"""`lwd replay`: recorded messages come back on ROS topics; a policy re-run reports action differences."""

from __future__ import annotations

import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy")

pytestmark = pytest.mark.ros


def test_replay_republishes_recorded_topics(tiny_store):
    from rclpy.node import Node
    from sensor_msgs.msg import Image, JointState

    from lwd.app.replay import replay_bag
    from lwd.nodes.common import RELIABLE_QOS

    bag = sorted((tiny_store / "episodes" / "demo").iterdir())[0]
    ctx = rclpy.Context()
    rclpy.init(context=ctx, args=[])
    node = Node("replay_listener", context=ctx)
    got = {"joint_states": 0, "image": 0}
    node.create_subscription(JointState, "/replay_test/joint_states",
                             lambda m: got.__setitem__("joint_states", got["joint_states"] + 1), RELIABLE_QOS)
    node.create_subscription(Image, "/replay_test/camera/image_raw",
                             lambda m: got.__setitem__("image", got["image"] + 1), RELIABLE_QOS)
    ex = rclpy.executors.SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    stop = threading.Event()
    spinner = threading.Thread(target=lambda: [ex.spin_once(timeout_sec=0.05) for _ in iter(stop.is_set, True)])
    spinner.start()
    try:
        sent = replay_bag(bag, namespace="/replay_test", rate=20.0, wait_s=20.0)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and got["joint_states"] == 0:
            time.sleep(0.1)
    finally:
        stop.set()
        spinner.join()
        ex.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
    assert sent > 0
    assert got["joint_states"] > 0 and got["image"] > 0


def test_compare_policy_reports_errors(tiny_store):
    from lwd.app.replay import compare_policy

    bag = sorted((tiny_store / "episodes" / "demo").iterdir())[0]
    report = compare_policy(bag, tiny_store / "policies" / "v0", samples=1)
    assert report["chunks_compared"] > 0 and report["mean_abs_error"] > 0
    assert len(report["mean_abs_error_per_joint"]) == 14 and "2" in report["mean_abs_error_by_source"]
