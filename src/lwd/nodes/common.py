"""Shared plumbing for lwd nodes: QoS profiles, message <-> numpy conversions, a quiet main()."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence

import numpy as np
import rclpy
from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from lwd.control.health import Health, Rejected, joint_order

__all__ = [
    "SENSOR_QOS", "RELIABLE_QOS", "LATCHED_QOS", "FLEET_POLICY_TOPIC", "LEARNER_STATUS_TOPIC", "DIAGNOSTICS_TOPIC",
    "RECORDER_STATUS_TOPIC", "trajectory_to_numpy", "numpy_to_trajectory", "image_to_numpy", "numpy_to_image",
    "joint_state", "json_msg", "parse_json", "HealthPublisher", "run_node", "exit_process",
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
DIAGNOSTICS_TOPIC = "/diagnostics"  # the ROS convention: diagnostic_msgs/DiagnosticArray, ~1 Hz per node
RECORDER_STATUS_TOPIC = "recorder/status"  # episode_recorder heartbeat (JSON, ~1 Hz), relative to the robot


def trajectory_to_numpy(msg: JointTrajectory, joint_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Positions [P, J] reordered to ``joint_names`` and times [P] (s).

    ``msg.joint_names`` must name exactly the arm's joints, in any order (:func:`lwd.control.health.joint_order`
    with ``extra="reject"``). Raises :class:`lwd.control.health.Rejected` (a ValueError) with the reason:
    ``bad_joint_names``, ``empty``, ``bad_shape``, ``nan_command`` (NaN/inf position or time) or ``bad_timing``
    (times not positive, increasing).
    """
    order = joint_order(msg.joint_names, joint_names, extra="reject")  # exactly the arm's joints, any order
    if not msg.points:
        raise Rejected("empty", "trajectory has no points")
    pos = []
    for p in msg.points:
        if len(p.positions) != len(order):
            raise Rejected("bad_shape", f"point has {len(p.positions)} positions, expected {len(order)}")
        pos.append(np.asarray(p.positions, dtype=np.float64)[order])
    times = np.array([p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in msg.points])
    positions = np.stack(pos)
    if not np.isfinite(positions).all():
        raise Rejected("nan_command", "non-finite position in trajectory")
    if (times <= 0).any() or (np.diff(times) <= 0).any():
        raise Rejected("bad_timing", "time_from_start must be positive and strictly increasing")
    return positions, times


def numpy_to_trajectory(positions: np.ndarray, dt: float, joint_names: Sequence[str], tag: str,
                        stamp) -> JointTrajectory:
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


class HealthPublisher:
    """Publishes a node's :class:`Health` on ``/diagnostics`` (one DiagnosticStatus, about once a second).

    The status is named ``<namespace>/<node>`` (e.g. ``robot0/arm_driver``) with ``hardware_id`` = the robot, so
    ``ros2 topic echo /diagnostics`` shows every node of the fleet; rejections are logged per reason, rate-limited.
    :meth:`reject` and :meth:`publish` may be called from different threads (e.g. a node's worker thread counts
    rejections while the executor publishes); set values on ``health`` from the executor thread only.
    """

    def __init__(self, node: Node, hardware_id: str = "", period_s: float = 1.0, log_every_s: float = 5.0) -> None:
        self.node = node
        self.health = Health(log_every_s=log_every_s)
        self._lock = threading.Lock()
        self.name = node.get_fully_qualified_name().lstrip("/")
        self.hardware_id = hardware_id or node.get_namespace().strip("/")
        self.pub = node.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self.timer = node.create_timer(period_s, self.publish)

    def reject(self, reason: str, detail: str = "") -> None:
        """Count a rejected input under ``reason``; log it unless this reason was logged moments ago."""
        with self._lock:
            log_now = self.health.reject(reason)
            n = self.health.rejected[reason]
        if log_now:
            self.node.get_logger().warning(f"rejected ({reason}, {n} so far): {detail or reason}")

    def rejected_counts(self) -> dict[str, int]:
        """A copy of the per-reason rejection counters (thread-safe)."""
        with self._lock:
            return dict(self.health.rejected)

    def publish(self) -> None:
        with self._lock:
            r = self.health.report()
        status = DiagnosticStatus(level=bytes([r.level]), name=self.name, message=r.message,
                                  hardware_id=self.hardware_id,
                                  values=[KeyValue(key=k, value=v) for k, v in r.values])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.pub.publish(msg)


def run_node(factory: Callable[[], Node], args: list[str] | None = None, threads: int = 2) -> int:
    """rclpy init -> spin -> quiet shutdown on Ctrl-C / SIGTERM from launch. Returns an exit code.

    rclpy's own signal handler shuts the context down from inside whatever callback is running, which then fails in
    its next publish (``RCLError: publisher's context is invalid``). Here SIGINT/SIGTERM only ask the spin loop to
    stop: the running callback completes, then the node is closed and destroyed before the context shuts down.
    A second signal interrupts at once.
    """
    stop = threading.Event()

    def _on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    rclpy.init(args=args if args is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO)
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    node = executor = None
    try:
        node = factory()
        # One thread keeps every callback on the thread that built the node (an EGL context is thread-bound).
        executor = SingleThreadedExecutor() if threads <= 1 else MultiThreadedExecutor(num_threads=threads)
        executor.add_node(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        try:
            if executor is not None:
                executor.shutdown(timeout_sec=5.0)
            if node is not None:
                close = getattr(node, "close", None)
                if close is not None:
                    close()
                node.destroy_node()
        except KeyboardInterrupt:
            pass
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            if rclpy.ok():
                rclpy.try_shutdown()
    return 0


def exit_process(code: int) -> None:
    """End a node process with ``code`` once :func:`run_node` returned, skipping the interpreter's finalization.

    A node has closed and destroyed everything it writes by then; what is left is garbage-collecting torch, MuJoCo
    and tensorboard objects, which took 1.5-3 s for the learner on a loaded 2-core box and sometimes more than
    launch's 5 s SIGINT grace: launch then escalated to SIGTERM, and with the default handlers back in place the
    learner "died" with exit code -15. Only for the node executables (``scripts/nodes/*``), never in-process.
    """
    try:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(int(code or 0))
