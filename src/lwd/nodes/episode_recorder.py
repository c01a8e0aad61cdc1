"""episode_recorder: one rosbag2 (MCAP) bag per episode in the experience store, from raw subscriptions.

Messages are written as received (CDR bytes, no re-serialization) between the ``start`` and ``end`` events on
``episode/event``; the bag's metadata (robot, task, instruction, policy versions, outcome, intervention segments)
goes into its custom data and a sidecar ``episode.json`` written last. A recorder stopped mid-episode closes the
bag as ``aborted``; a recorder killed mid-episode leaves a bag the store recovers or quarantines.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from rclpy.node import Node
from rclpy.serialization import deserialize_message
from rosidl_runtime_py.utilities import get_message
from std_msgs.msg import String

from lwd.data.bag import EpisodeBagWriter
from lwd.data.errors import BagError
from lwd.data.schema import TOPICS, EpisodeMeta
from lwd.data.store import ExperienceStore
from lwd.nodes.common import LATCHED_QOS, RELIABLE_QOS, SENSOR_QOS, run_node

# Sensor streams are best-effort publishers; everything else is reliable (latched where the publisher latches).
_QOS = {"joint_states": SENSOR_QOS, "camera/image_raw": SENSOR_QOS, "task/instruction": LATCHED_QOS,
        "teleop/engaged": LATCHED_QOS, "cmd/source": LATCHED_QOS, "policy/status": LATCHED_QOS}


class EpisodeRecorder(Node):
    def __init__(self) -> None:
        super().__init__("episode_recorder")
        self.robot = self.declare_parameter("robot", self.get_namespace().strip("/") or "robot0").value
        self.store = ExperienceStore(Path(self.declare_parameter("store", "lwd_store").value).expanduser())
        self.lock = threading.Lock()
        self.writer: EpisodeBagWriter | None = None
        self.episodes = 0
        self.latched: dict[str, bytes] = {}
        for topic, msgtype in TOPICS.items():
            self.create_subscription(
                get_message(msgtype), topic, lambda data, t=topic: self._on_raw(t, data),
                _QOS.get(topic, RELIABLE_QOS), raw=True)
        self.get_logger().info(f"episode_recorder up: robot={self.robot} store={self.store.root}")

    def _on_raw(self, topic: str, data: bytes) -> None:
        t_ns = self.get_clock().now().nanoseconds
        event = None
        if topic == "episode/event":
            try:
                event = json.loads(deserialize_message(data, String).data)
            except Exception as e:  # noqa: BLE001 - malformed input is logged and dropped, never fatal
                self.get_logger().warning(f"dropped malformed episode/event: {e}")
                return
        with self.lock:
            if _QOS.get(topic) is LATCHED_QOS:
                self.latched[topic] = bytes(data)
            if isinstance(event, dict) and event.get("event") == "start":
                self._open(event, t_ns)
            if self.writer is None:
                return
            try:
                self.writer.write_raw(topic, t_ns, data)
            except BagError as e:
                self.get_logger().warning(f"dropped a message: {e}", throttle_duration_sec=5.0)
            if isinstance(event, dict) and event.get("event") == "end":
                self._close()

    def _open(self, event: dict, t_ns: int) -> None:
        if self.writer is not None:
            self.get_logger().warning("start without end: closing the previous episode as aborted")
            self._close(outcome="aborted")
        episode_id = str(event.get("episode_id") or f"{self.robot}-{self.get_clock().now().nanoseconds}")
        path = self.store.episode_path(self.robot, episode_id)
        try:
            self.writer = EpisodeBagWriter(path, EpisodeMeta(episode_id=episode_id, robot=self.robot, source="fleet"))
            self.writer.open()
            # Like rosbag2 with transient-local topics: each bag starts with the latest latched state
            # (instruction, engaged flag, command source, policy status), even if it was sent before the start.
            for topic, data in self.latched.items():
                self.writer.write_raw(topic, t_ns, data)
        except BagError as e:
            self.get_logger().error(f"cannot record episode {episode_id}: {e}")
            self.writer = None

    def _close(self, outcome: str | None = None) -> None:
        writer, self.writer = self.writer, None
        try:
            meta = writer.tracked_meta()
            if outcome is not None:
                meta.outcome = outcome
            meta = writer.finish(meta)
            self.episodes += 1
            self.get_logger().info(
                f"recorded {meta.episode_id}: {meta.outcome}, {writer.message_count} msgs, "
                f"{meta.num_interventions} interventions -> {writer.path}")
        except BagError as e:
            self.get_logger().error(f"could not finish {writer.path}: {e}")

    def close(self) -> None:
        with self.lock:
            if self.writer is not None:
                self._close(outcome="aborted")


def main(args=None) -> int:
    return run_node(EpisodeRecorder, args, threads=1)


if __name__ == "__main__":
    raise SystemExit(main())
