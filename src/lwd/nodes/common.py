"""Shared plumbing for lwd nodes: QoS profiles, message <-> numpy conversions, a quiet main()."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence

import numpy as np
import rclpy
from builtin_interfaces.msg import Duration
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

__all__ = [
    "SENSOR_QOS", "RELIABLE_QOS", "LATCHED_QOS", "FLEET_POLICY_TOPIC", "LEARNER_STATUS_TOPIC",
    "trajectory_to_numpy", "numpy_to_trajectory", "image_to_numpy", "numpy_to_image",
    "joint_state", "json_msg", "parse_json", "run_node",
]

SENSOR_QOS = qos_profile_sensor_data
RELIABLE_QOS = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
# Late joiners (a robot started after the learner, the recorder after the operator) get the last value.
LATCHED_QOS = QoSProfile(
    depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL,
    history=HistoryPolicy.KEEP_LAST,
)
FLEET_POLICY_TOPIC = "/fleet/policy"
LEARNER_STATUS_TOPIC = "/fleet/learner/status"


def trajectory_to_numpy(msg: JointTrajectory, joint_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Positions [P, J] reordered to ``joint_names`` and times [P] (s). Raises ValueError on a mismatch."""
    names = list(msg.joint_names)
    if names and sorted(names) != sorted(joint_names):
        raise ValueError(f"joint_names {names} do not match the arm's {list(joint_names)}")
    order = [names.index(n) for n in joint_names] if names else list(range(len(joint_names)))
    if not msg.points:
        raise ValueError("trajectory has no points")
    pos = []
    for p in msg.points:
        if len(p.positions) != len(joint_names):
            raise ValueError(f"point has {len(p.positions)} positions, expected {len(joint_names)}")
        pos.append(np.asarray(p.positions, dtype=np.float64)[order])
    times = np.array([p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in msg.points])
    return np.stack(pos), times


def numpy_to_trajectory(positions: np.ndarray, dt: float, joint_names: Sequence[str], tag: str, stamp) -> JointTrajectory:
    msg = JointTrajectory()
    msg.header.stamp = stamp
    msg.header.frame_id = tag
    msg.joint_names = list(joint_names)
    for j, q in enumerate(np.asarray(positions, dtype=np.float64)):
        t = (j + 1) * dt
        sec = int(t)
        msg.points.append(JointTrajectoryPoint(
            positions=q.tolist(), time_from_start=Duration(sec=sec, nanosec=int(round((t - sec) * 1e9)))))
    return msg


def image_to_numpy(msg: Image) -> np.ndarray:
    if msg.encoding not in ("rgb8", "bgr8"):
        raise ValueError(f"unsupported image encoding {msg.encoding!r} (need rgb8/bgr8)")
    if msg.step < msg.width * 3 or len(msg.data) < msg.step * msg.height:
        raise ValueError("image data shorter than height * step")
    arr = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)[:, : msg.width * 3]
    arr = arr.reshape(msg.height, msg.width, 3)
    return arr[:, :, ::-1].copy() if msg.encoding == "bgr8" else arr.copy()


def numpy_to_image(img: np.ndarray, stamp, frame_id: str) -> Image:
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(img.shape[0]), int(img.shape[1])
    msg.encoding = "rgb8"
    msg.step = msg.width * 3
    msg.data = np.ascontiguousarray(img, dtype=np.uint8).tobytes()
    return msg


def joint_state(names: Sequence[str], pos: np.ndarray, vel: np.ndarray, stamp) -> JointState:
    msg = JointState()
    msg.header.stamp = stamp
    msg.name = list(names)
    msg.position = np.asarray(pos, dtype=np.float64).tolist()
    msg.velocity = np.asarray(vel, dtype=np.float64).tolist()
    return msg


def json_msg(**fields) -> String:
    return String(data=json.dumps(fields, sort_keys=True))


def parse_json(msg: String) -> dict:
    """Parse a std_msgs/String JSON payload; raises ValueError on garbage (callers log and drop)."""
    d = json.loads(msg.data)
    if not isinstance(d, dict):
        raise ValueError("expected a JSON object")
    return d


def run_node(factory: Callable[[], Node], args: list[str] | None = None, threads: int = 2) -> int:
    """rclpy init -> spin -> quiet shutdown on Ctrl-C / SIGTERM from launch. Returns an exit code."""
    rclpy.init(args=args if args is not None else sys.argv)
    node = None
    try:
        node = factory()
        # One thread keeps every callback on the thread that built the node (an EGL context is thread-bound).
        executor = SingleThreadedExecutor() if threads <= 1 else MultiThreadedExecutor(num_threads=threads)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return 0
