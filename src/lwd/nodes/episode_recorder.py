"""episode_recorder: one rosbag2 (MCAP) bag per episode in the experience store, from raw subscriptions.

Messages are written as received (CDR bytes, no re-serialization) between the ``start`` and ``end`` events on
``episode/event``; the bag's metadata (robot, task, instruction, policy versions, outcome, intervention segments)
goes into its custom data and a sidecar ``episode.json`` written last. A recorder stopped mid-episode closes the
bag as ``aborted``; a recorder killed mid-episode leaves a bag the store recovers or quarantines.

About once a second it publishes a heartbeat on ``recorder/status`` (JSON: ready, recording, episodes, error) —
teleop's episode scheduler starts no episode without a fresh, ready heartbeat and aborts one the recorder does not
confirm — and its health on ``/diagnostics``.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from rclpy.node import Node
from rclpy.serialization import deserialize_message
from rosidl_runtime_py.utilities import get_message
from std_msgs.msg import String

from lwd.control.health import ERROR, OK
from lwd.data.bag import EpisodeBagWriter
from lwd.data.errors import BagError
from lwd.data.schema import CAMERAS, TOPICS, EpisodeMeta, camera_topic
from lwd.data.store import ExperienceStore
from lwd.nodes.common import (
    LATCHED_QOS,
    RECORDER_STATUS_TOPIC,
    RELIABLE_QOS,
    SENSOR_QOS,
    HealthPublisher,
    json_msg,
    run_node,
)

# Sensor streams are best-effort publishers; everything else is reliable (latched where the publisher latches).
_QOS = {"joint_states": SENSOR_QOS, **{camera_topic(c): SENSOR_QOS for c in CAMERAS},
        "task/instruction": LATCHED_QOS, "teleop/engaged": LATCHED_QOS, "cmd/source": LATCHED_QOS,
        "policy/status": LATCHED_QOS}


class EpisodeRecorder(Node):
    def __init__(self) -> None:
        super().__init__("episode_recorder")
        self.robot = self.declare_parameter("robot", self.get_namespace().strip("/") or "robot0").value
        self.store = ExperienceStore(Path(self.declare_parameter("store", "lwd_store").value).expanduser())
        self.lock = threading.Lock()
        self.writer: EpisodeBagWriter | None = None
        self.episodes = 0
        self.latched: dict[str, bytes] = {}
        self.error = ""
        self.diag = HealthPublisher(self)
        self.status_pub = self.create_publisher(String, RECORDER_STATUS_TOPIC, RELIABLE_QOS)
        for topic, msgtype in TOPICS.items():
            self.create_subscription(
                get_message(msgtype), topic, lambda data, t=topic: self._on_raw(t, data),
                _QOS.get(topic, RELIABLE_QOS), raw=True)
        self.create_timer(1.0, self._heartbeat)
        self._heartbeat()
        self.get_logger().info(f"episode_recorder up: robot={self.robot} store={self.store.root}")

    def _writable(self) -> str:
        """'' if this robot's episode directory is writable, else why not."""
        d = self.store.root / "episodes" / self.robot
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            return f"cannot create {d}: {e}"
        return "" if os.access(d, os.W_OK | os.X_OK) else f"{d} is not writable"

    def _heartbeat(self) -> None:
        """recorder/status: the episode scheduler's proof that episodes can be, and are being, recorded."""
        problem = self._writable()
        with self.lock:
            recording = self.writer.meta.episode_id if self.writer is not None else ""
            error = problem or self.error
        self.status_pub.publish(json_msg(ready=not problem, recording=recording, episodes=self.episodes,
                                         error=error))
        h = self.diag.health
        h.set_status(ERROR if problem else OK, problem or (f"recording {recording}" if recording else "idle"))
        h.set_value("recording", recording)
        h.set_value("episodes", self.episodes)
        if self.error:
            h.set_value("last_error", self.error)

    def _on_raw(self, topic: str, data: bytes) -> None:
        t_ns = self.get_clock().now().nanoseconds
        event = None
        if topic == "episode/event":
            try:
                event = json.loads(deserialize_message(data, String).data)
            except Exception as e:  # noqa: BLE001 - malformed input is counted and dropped, never fatal
                self.diag.reject("bad_event", f"malformed episode/event: {e}")
                return
            if not isinstance(event, dict):
                self.diag.reject("bad_event", f"episode/event is not a JSON object: {event!r:.80}")
                return
        with self.lock:
            if _QOS.get(topic) is LATCHED_QOS:
                self.latched[topic] = bytes(data)
            if event is not None and event.get("event") == "start":
                self._open(event, t_ns)
                opened = self.writer is not None
            else:
                opened = False
            if self.writer is None:
                return
            try:
                self.writer.write_raw(topic, t_ns, data)
            except BagError as e:
                self.diag.reject("write_error", f"dropped a {topic} message: {e}")
            if event is not None and event.get("event") == "end":
                self._close()
        if opened:
            self._heartbeat()  # confirm at once that this episode is being recorded

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
            self.error = f"cannot record episode {episode_id}: {e}"
            self.writer = None
            return
        self.error = ""

    def _close(self, outcome: str | None = None) -> None:
        writer, self.writer = self.writer, None
        try:
            meta = writer.tracked_meta()
            if outcome is not None:
                meta.outcome = outcome
            meta = writer.finish(meta)
            self.episodes += 1
            self.diag.health.count(f"episodes_{meta.outcome}")
            self.get_logger().info(
                f"recorded {meta.episode_id}: {meta.outcome}, {writer.message_count} msgs, "
                f"{meta.num_interventions} interventions -> {writer.path}")
        except BagError as e:
            self.get_logger().error(f"could not finish {writer.path}: {e}")
            self.error = f"could not finish {writer.path.name}: {e}"

    def close(self) -> None:
        with self.lock:
            if self.writer is not None:
                self._close(outcome="aborted")


def main(args=None) -> int:
    return run_node(EpisodeRecorder, args, threads=1)


if __name__ == "__main__":
    raise SystemExit(main())
